"""Grade a whole class, using every core, with a progress bar and an ETA.

    python -m autograder.grade [--jobs N]                  # nbgrader autograde, one learner per job
    python -m autograder.grade --scores-only [--csv F]     # trusted scores only, no notebook runs

The full mode runs the standard `nbgrader autograde` (trusted scores, sandbox, repair: see
nbgrader_config.py) for several learners at once, in worker processes that each load nbgrader,
torch and the course's configuration once, not once per learner; the gradebook, feedback and
export work as usual afterwards. The scores-only mode skips executing the notebooks: it repairs each
submission, replays all of one learner's answers in one sandboxed process and writes the
scores to a CSV, for instructors who need the numbers first.
"""
import argparse
import csv
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from . import course
from .exercises import course_setting
from .trusted import learner_answers, preflight, trusted_verdicts_many


def students(root, assignment=course.ASSIGNMENT):
    return sorted(p.parent.name for p in (Path(root) / "submitted").glob(f"*/{assignment}"))


_api = None


def _start_worker(root, one_thread):
    """In each worker process, once: nbgrader's API on the course's configuration."""
    global _api
    from nbgrader.apps import NbGraderAPI
    from sqlalchemy.exc import SAWarning
    from traitlets.config.loader import PyFileConfigLoader
    # nbgrader's gradebook code warns this way for each notebook a learner did not submit
    warnings.simplefilter("ignore", SAWarning)
    os.chdir(root)
    # the kernels this worker starts inherit its stdout and print their banners there; what
    # goes wrong in grading comes back through the API's captured log instead
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    # nbgrader runs `alembic` from PATH when it creates a gradebook: this Python's bin first
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if one_thread:  # the kernels this worker starts: one thread each, two workers share two cores
        os.environ["OMP_NUM_THREADS"] = "1"
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    _api = NbGraderAPI(config=config)


def autograde_one(student, assignment=course.ASSIGNMENT):
    """`nbgrader autograde --student STUDENT --force`, in this worker: (0 or 1, what went wrong)."""
    result = _api.autograde(assignment, student, force=True, create=True)
    return (0, "") if result["success"] else (1, (result.get("error") or result.get("log") or "")[-2000:])


def scores_one(root, student, assignment=course.ASSIGNMENT, setting=None):
    """[(student, exercise, item, points, max_points, verdict)] for one learner, without nbgrader.
    A submission that cannot be read at all scores 0 with the reason; the class goes on."""
    setting = setting or course_setting(root)
    try:
        answers = learner_answers(Path(root) / "submitted" / student / assignment, Path(root) / "release" / assignment)
        verdicts = trusted_verdicts_many(answers, setting)
    except Exception as e:  # one learner's bad submission never stops the class
        return [(student, "*", "*", 0.0, 0.0, f"could not be graded: {type(e).__name__}: {str(e)[:200]}")]
    return [(student, ex, v.name, v.points, v.max_points, v.summary())
            for ex, vs in verdicts.items() for v in vs.values()]


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade every submission of the class.")
    p.add_argument("--course", default=".", help="the course folder (default: here)")
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="learners graded at once (default: %(default)s)")
    p.add_argument("--scores-only", action="store_true", help="trusted scores to a CSV, no notebook execution")
    p.add_argument("--csv", default="scores.csv", help="with --scores-only: where to write (default: %(default)s)")
    args = p.parse_args(argv)
    todo = students(args.course)
    if not todo:
        p.error(f"no submissions in {Path(args.course) / 'submitted'}")
    setting = course_setting(args.course)
    broken = preflight(setting)
    if broken:  # the grader's own failure: no learner may be scored for it
        print(f"error: the trusted grader cannot run, so nothing was graded: {broken}", file=sys.stderr)
        return 2
    if not args.scores_only:  # make sure the assignment and students exist before parallel runs
        course.nbgrader(args.course, "db", "assignment", "add", course.ASSIGNMENT, check=False)
    if args.scores_only:  # the work is in sandboxed child processes: threads are enough here
        pool, submit = ThreadPoolExecutor(args.jobs), lambda s: pool.submit(scores_one, args.course, s, setting=setting)
    else:
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(Path(args.course).resolve(), args.jobs > 1))
        submit = lambda s: pool.submit(autograde_one, s)  # noqa: E731
    results, failed = {}, []
    with pool, tqdm(total=len(todo), unit="learner", file=sys.stdout) as bar:
        futures = {submit(s): s for s in todo}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            if not args.scores_only and results[futures[f]][0] != 0:
                failed.append(futures[f])
            bar.update()
    if args.scores_only:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["student", "exercise", "item", "score", "points", "verdict"])
            for s in todo:
                w.writerows(results[s])
        print(f"wrote {args.csv}: {len(todo)} learners")
    else:
        for s in failed:
            print(f"--- nbgrader could not grade {s}:\n{results[s][1].strip()}")
        print(f"graded {len(todo) - len(failed)} of {len(todo)} learners" +
              (f"; nbgrader reported errors for: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
