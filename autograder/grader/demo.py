"""The course in one command: the learner's side, then the instructor's.

    python -m autograder.demo [--skip-reference] [--skip-grading] [--repo PATH]

1. Runs the reference notebook (the worked lecture, 200,000 training steps) headless and prints
   its figures next to the lecture's, and the names the trained model samples.
2. Generates the learner's release in build/course with nbgrader, autogrades example
   submissions (the instructor solutions, the untouched release, typical mistakes) and prints
   the score table, with the verdict behind every lost point.
3. Generates nbgrader's feedback pages and prints where they are.
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from . import course  # nbgrader, nbclient and the grading modules: imported where used

REFERENCE = Path("notebooks") / "backprop_ninja.ipynb"
PROGRESS_CELLS = {"ex4_train"}  # cells whose printed progress is shown as they run
FIGURES, NAMES = "ex4_evaluate", "ex4_sample"  # cells whose outputs are the key figures


def course_root(given=None):
    """The course's repository (notebooks/, source/, nbgrader_config.py): `given`, else the
    checkout this package was installed from (pip install -e), else the working folder."""
    for root in ([Path(given)] if given else [course.ROOT, Path.cwd()]):
        if all((root / p).exists() for p in [REFERENCE, Path("source") / course.ASSIGNMENT, "nbgrader_config.py"]):
            return root.resolve()
    return None


class StageFailed(RuntimeError):
    """A stage of the demo failed: the demo stops there, with this message."""


def stage(number, text):
    print(f"\n[{number}/4] {text}", flush=True)


def stdout_of(nb, cell_id):
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def run_reference(root, build):
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    class ShowProgress(NotebookClient):
        """nbclient, printing the stream output of PROGRESS_CELLS as it arrives."""

        def output(self, outs, msg, display_id, cell_index):
            if self.nb.cells[cell_index].get("id") in PROGRESS_CELLS and msg["msg_type"] == "stream":
                for line in msg["content"]["text"].splitlines():
                    print(f"      {line.strip()}", flush=True)
            return super().output(outs, msg, display_id, cell_index)

    path = root / REFERENCE
    nb = nbformat.read(path, as_version=4)
    stage(1, f"Running the reference notebook {REFERENCE} headless: every gradient of the lecture "
             "checked against autograd, then 200,000 training steps with the manual backward pass "
             "(a few minutes) ...")
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="ninja-demo-") as sockets:
        # Unix sockets, not TCP: no "running over TCP without encryption" warning on stderr
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
        # The kernel's own stderr (not its cells': those come as messages) goes to a log, shown
        # only if the run fails: libzmq may abort a kernel on its way out after a clean shutdown
        # ("Assertion failed: pfd.revents & POLLIN"), which is noise once every cell has run.
        with open(os.path.join(sockets, "kernel.log"), "w+") as log:
            try:
                ShowProgress(nb, config=ipc, timeout=None,
                             resources={"metadata": {"path": str(path.parent)}}).execute(stderr=log)
            except Exception as e:
                log.seek(0)
                said = log.read()[-1500:].strip()
                raise StageFailed(f"the reference notebook did not run: {type(e).__name__}: {str(e)[-1500:]}"
                                  + (f"\nthe kernel's stderr:\n{said}" if said else "")) from None
    build.mkdir(exist_ok=True)
    nbformat.write(nb, build / path.name)
    print(f"      done in {time.time() - start:.0f} s; the executed notebook: {build / path.name}")
    print("\nThe reference figures after 200,000 steps, next to the lecture's:")
    for line in stdout_of(nb, FIGURES).splitlines():
        print(f"  {line}")
    names = stdout_of(nb, NAMES).split()
    print(f"\n{len(names)} names sampled from the trained model:")
    for i in range(0, len(names), 5):
        print("  " + "".join(f"{name:16s}" for name in names[i:i + 5]).rstrip())


def run_grading(root, build):
    from . import examples, grade, report
    c = build / "course"
    stage(2, f"Generating the learner's release with nbgrader, in {c} ...")
    course.copy_course(c, root)
    course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
    course.nbgrader(c, "db", "assignment", "add", course.ASSIGNMENT, "--duedate", examples.DUE)
    students = examples.write_submissions(c)
    stage(3, f"Autograding {len(students)} example submissions: the instructor solutions, the "
             "untouched release, and typical mistakes (each alone, in the one notebook it is in) ...")
    os.environ.update(course.grading_env())  # for the kernels of the grading workers
    start = time.time()
    failed = grade.main(["--course", str(c)])
    if failed:
        raise StageFailed(f"grading the examples failed (python -m autograder.grade exited {failed}): see above")
    print(f"      done in {time.time() - start:.0f} s\n")
    print(f"Due {examples.DUE}: " + "; ".join(
        f"{s} handed in at {when}, {late_line(c, s)}" for s, when in examples.LATE.items()))
    print("\nEvery lost point, with the verdict the learner's feedback gives:")
    print(report.lost_points_table(c))
    stage(4, "Generating the feedback pages (nbgrader generate_feedback) ...")
    course.nbgrader(c, "generate_feedback", course.ASSIGNMENT, "--force")
    pages = sorted((c / "feedback").glob(f"*/{course.ASSIGNMENT}/*.html"))
    print(f"      {len(pages)} pages, one per submitted notebook, in {c / 'feedback'}/STUDENT/{course.ASSIGNMENT}/")
    for student in ["solutions", next(iter(examples.MISTAKES))]:
        for page in pages:
            if page.parts[-3] == student:
                print(f"      for example {page}")
                break


def late_line(c, student):
    """What the gradebook says of a late learner: the penalty and the total after it."""
    from nbgrader.api import Gradebook

    from .export import standing
    from .late import days_late
    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        st = standing(gb, course.ASSIGNMENT, student)
    return (f"{days_late(st['seconds_late'])} days late: {st['penalty']:g} points off "
            f"(10% of the notebook's score a day), {st['score']:g} of {st['max']:g} in all")


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m autograder.demo",
        description="The course in one command. Runs the reference notebook (the worked lecture, "
                    "200,000 training steps) headless and prints its figures next to the "
                    "lecture's and the names it samples; then generates the learner's release "
                    "with nbgrader, autogrades example submissions (the instructor solutions, the "
                    "untouched release, typical mistakes), prints the score table with the "
                    "verdict behind every lost point, and generates the feedback pages. Output "
                    "goes to build/ in the course's repository.",
        epilog="It needs the course's repository (notebooks/, source/, nbgrader_config.py) and "
               "the instructor extra: pip install -e '.[instructor]' in a clone, or make demo.")
    p.add_argument("--skip-reference", action="store_true", help="do not run the reference notebook")
    p.add_argument("--skip-grading", action="store_true",
                   help="do not generate the release, grade the examples and make their feedback")
    p.add_argument("--repo", metavar="PATH",
                   help="the course's repository (default: the clone this package is installed "
                        "from, else the working folder)")
    args = p.parse_args(argv)
    root = course_root(args.repo)
    if root is None:
        p.error(f"no course repository at {args.repo or f'{course.ROOT} or {Path.cwd()}'}: the demo "
                "runs the repository's notebooks and nbgrader configuration, which `pip install` "
                "does not include. Run it in a clone of the course (make demo), or pass --repo PATH.")
    missing = [m for m in ["nbgrader", "nbclient"] if importlib.util.find_spec(m) is None]
    if missing:
        p.error(f"{' and '.join(missing)} not installed: the demo needs the course's instructor "
                "extra, pip install -e '.[instructor]' in a clone of the course (or make demo).")
    if not args.skip_grading:
        from .sandbox import bwrap_missing
        missing = bwrap_missing()
        if missing:  # before the long first stage, not after it
            print(f"error: the demo cannot grade: {missing}", file=sys.stderr)
            return 2
    build = root / "build"
    print(f"The course's repository: {root}; output in {build}")
    try:
        if not args.skip_reference:
            run_reference(root, build)
        if not args.skip_grading:
            run_grading(root, build)
    except (StageFailed, RuntimeError) as e:  # course.nbgrader's failures are RuntimeErrors
        print(f"error: the demo stopped: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # nbclient's CellExecutionError and the like: which stage, and why
        print(f"error: the demo stopped: {type(e).__name__}: {str(e)[-1500:]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
