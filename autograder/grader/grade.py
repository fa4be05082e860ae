"""Grade a whole class, using every core, with a progress bar and an ETA.

    python -m autograder.grade [--assignment A] [--jobs N] [--force]  # nbgrader autograde, new or changed submissions
    python -m autograder.grade --scores-only [--csv F]                # trusted scores only, no notebook runs

The full mode runs the standard `nbgrader autograde` (trusted scores, sandbox, repair: see
nbgrader_config.py) for several learners at once, in worker processes that each load nbgrader,
torch and the course's configuration once, not once per learner; the gradebook, feedback and
export work as usual afterwards. It grades the learners whose submission (or the assignment's
source) changed since this command last graded them, or all with --force. Ctrl-C stops it,
its workers and their kernels within seconds; a learner whose grading did not finish loses
its partial results, so that this command and `nbgrader autograde` grade it again.

The scores-only mode skips executing the notebooks: it repairs each submission, replays all of
one learner's answers in one sandboxed process and writes every learner's scores to a CSV, for
instructors who need the numbers first. Both take the points from the assignment's nbgrader
metadata, so they agree.
"""
import argparse
import csv
import hashlib
import math
import multiprocessing
import os
import re
import shutil
import signal
import stat
import sys
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from . import course
from ..exercises import EXERCISES

# Seconds one worker takes for one learner (benchmarks/bench.py, README), and to start: the
# ETA until enough learners have finished to measure the class's own pace.
SECONDS_PER_LEARNER = {"full": 24.0, "scores": 3.5}
SECONDS_TO_START = 5.0
GRADING = "grading"  # what a learner's marker says while its grading runs


def students(root, assignment=course.ASSIGNMENT):
    return sorted(p.parent.name for p in (Path(root) / "submitted").glob(f"*/{assignment}"))


def exercises_in(root, assignment):
    """The course's exercises whose notebooks the assignment has (in its release or source)."""
    return [key for key, ex in EXERCISES.items()
            if any((Path(root) / step / assignment / ex.notebook).exists() for step in ("release", "source"))]


# --- what needs grading ---------------------------------------------------------------------

def marker(root, student, assignment):
    """Beside the learner's autograded folder (nbgrader copies nothing from here into feedback):
    GRADING while this command grades the learner, then the fingerprint of what it graded."""
    return Path(root) / "autograded" / student / f".{assignment}.graded"


def fingerprint(root, student, assignment):
    """A digest of the learner's submitted files and the assignment's source notebooks. Links
    are hashed as links (their target's name), never followed, and anything but a regular file
    (a FIFO, a device, a socket) by its name and kind only: nothing of the learner's is opened
    that could block, or read what is not theirs."""
    h = hashlib.sha256()
    for folder in (Path(root) / "submitted" / student / assignment, Path(root) / "source" / assignment):
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints")
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                path = os.path.join(dirpath, name)
                h.update(f"{os.path.relpath(path, root)}\0".encode(errors="surrogateescape"))
                try:
                    st = os.lstat(path)
                    if stat.S_ISLNK(st.st_mode):
                        h.update(b"link\0" + os.fsencode(os.readlink(path)))
                    elif stat.S_ISREG(st.st_mode):
                        _hash_regular(h, path)
                    else:
                        h.update(f"special {stat.S_IFMT(st.st_mode)}\0".encode())
                except OSError as e:  # gone meanwhile, or unreadable: its name and the error
                    h.update(f"error {type(e).__name__}\0".encode())
    return h.hexdigest()


def _hash_regular(h, path):
    """Hash a regular file's bytes, opened without following a link or blocking (it was a regular
    file when looked at; O_NOFOLLOW and O_NONBLOCK hold if it is swapped meanwhile)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            h.update(b"special\0")
            return
        while chunk := os.read(fd, 2**20):
            h.update(chunk)
    finally:
        os.close(fd)


def in_gradebook(root, assignment):
    """The learners with a submission of the assignment in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    if not (Path(root) / "gradebook.db").exists():
        return set()
    with Gradebook(f"sqlite:///{Path(root) / 'gradebook.db'}") as gb:
        try:
            return {s.student_id for s in gb.assignment_submissions(assignment)}
        except MissingEntry:
            return set()


def up_to_date(root, student, assignment, graded):
    """Whether this command graded the learner, completely, on what is submitted now."""
    m = marker(root, student, assignment)
    return (student in graded and (Path(root) / "autograded" / student / assignment).is_dir()
            and m.exists() and m.read_text() == fingerprint(root, student, assignment))


def forget(root, learners, assignment):
    """Remove what unfinished gradings left (the autograded folders and gradebook submissions),
    so that this command and `nbgrader autograde` grade those learners again."""
    from nbgrader.api import Gradebook, MissingEntry
    if not learners:
        return
    with Gradebook(f"sqlite:///{Path(root) / 'gradebook.db'}") as gb:
        for s in learners:
            shutil.rmtree(Path(root) / "autograded" / s / assignment, ignore_errors=True)
            marker(root, s, assignment).unlink(missing_ok=True)
            try:
                gb.remove_submission(assignment, s)
            except MissingEntry:
                pass


# --- the workers ----------------------------------------------------------------------------

_api = None


def _start_worker(root, one_thread, nbgrader_api):
    """In each worker process, once: its own session, so that Ctrl-C in the terminal reaches only
    the main process, which stops the workers itself; nbgrader's API on the course's configuration."""
    global _api
    os.setsid()
    os.chdir(root)
    # nbgrader runs `alembic` from PATH when it creates a gradebook: this Python's bin first
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if one_thread:  # the kernels this worker starts: one thread each, two workers share two cores
        os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)  # the grader's own tensors are tiny; spinning threads would take
    # the cores the sandboxed children need
    if not nbgrader_api:
        return
    from nbgrader.apps import NbGraderAPI
    from sqlalchemy.exc import SAWarning
    from traitlets.config.loader import PyFileConfigLoader
    # nbgrader's gradebook code warns this way for each notebook a learner did not submit
    warnings.simplefilter("ignore", SAWarning)
    # what the kernels print on the stdout they inherit is nobody's business here; what goes
    # wrong in grading comes back through the API's captured log instead
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    _api = NbGraderAPI(config=config)


def autograde_one(student, assignment=course.ASSIGNMENT):
    """`nbgrader autograde --student STUDENT --force`, in this worker: (0 or 1, what went wrong)."""
    m = marker(".", student, assignment)
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(GRADING)
    result = _api.autograde(assignment, student, force=True, create=True)
    return (0, "") if result["success"] else (1, (result.get("error") or result.get("log") or "")[-2000:])


def scores_one(root, student, assignment=course.ASSIGNMENT, points=None):
    """[(student, exercise, item, score, points, verdict)] for one learner, without nbgrader;
    points {grade id: points} from the assignment's metadata (default: autograder/exercises.py).
    The hidden cases come from the course's secret (see exercises.course_setting)."""
    from ..exercises import course_setting
    from .trusted import learner_answers, trusted_verdicts_many
    answers = learner_answers(Path(root) / "submitted" / student / assignment, Path(root) / "release" / assignment)
    rows = []
    for ex, verdicts in trusted_verdicts_many(answers, course_setting(root)).items():
        for v in verdicts.values():
            most = v.max_points if points is None else points.get(v.test_id)
            if most is not None:  # an item without a graded cell is not graded
                verdict = re.sub(r" \([\d.]+/[\d.]+\)", "", v.summary(), count=1)  # the points are beside it
                rows.append((student, ex, v.name, most * v.points / v.max_points, most, verdict))
    return rows


def stop(pool):
    """Kill the pool's workers and everything they started (kernels, sandboxes), at once."""
    import psutil
    workers = []
    for p in multiprocessing.active_children():
        try:
            workers.append(psutil.Process(p.pid))
            workers[-1].suspend()  # so that it starts nothing new while its children are found
        except psutil.NoSuchProcess:
            pass
    procs = []
    for w in workers:
        try:
            procs += w.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for proc in procs + workers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs + workers, timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


class Progress(tqdm):
    """tqdm whose ETA, until as many learners have finished as run at once, comes from an
    estimate of the whole run; then from the class's own pace."""

    def __init__(self, *args, estimate, trust_after, **kw):
        self.estimate, self.trust_after = estimate, trust_after
        super().__init__(*args, smoothing=0, **kw)

    @property
    def format_dict(self):
        d = super().format_dict
        if d["total"] and d["n"] < min(self.trust_after, d["total"]):
            d["rate"] = (d["total"] - d["n"]) / max(self.estimate - d["elapsed"], 1.0)
        return d


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade every submission of the class.")
    p.add_argument("--course", default=".", help="the course folder (default: here)")
    p.add_argument("--assignment", default=course.ASSIGNMENT, help="the assignment (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=os.cpu_count(), help="learners graded at once (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="grade every learner, not only new or changed submissions")
    p.add_argument("--scores-only", action="store_true", help="trusted scores to a CSV, no notebook execution")
    p.add_argument("--csv", default="scores.csv", help="with --scores-only: where to write (default: %(default)s)")
    args = p.parse_args(argv)
    root, assignment = Path(args.course).resolve(), args.assignment
    everyone = students(root, assignment)
    if not everyone:
        p.error(f"no submissions of {assignment} in {root / 'submitted'} (submitted/<student>/{assignment}/)")
    if exercises_in(root, assignment):
        from ..exercises import course_setting
        from .trusted import preflight
        broken = preflight(course_setting(root))
        if broken:  # the grader's own failure: no learner may be scored for it
            print(f"error: the trusted grader cannot run, so nothing was graded: {broken}", file=sys.stderr)
            return 2
    if args.scores_only:
        if not exercises_in(root, assignment):
            p.error(f"{assignment} has none of the course's exercise notebooks: --scores-only cannot score it")
        points = course.points(root, assignment)
        todo, submit_args = everyone, lambda s: (scores_one, str(root), s, assignment, points)
    else:  # make sure the assignment exists before parallel runs
        course.nbgrader(root, "db", "assignment", "add", assignment, check=False)
        graded = in_gradebook(root, assignment)
        # a run stopped without its clean-up (killed) left markers saying GRADING
        forget(root, [s for s in everyone if marker(root, s, assignment).exists()
                      and marker(root, s, assignment).read_text() == GRADING], assignment)
        todo = everyone if args.force else [s for s in everyone if not up_to_date(root, s, assignment, graded)]
        if len(todo) < len(everyone):
            print(f"{len(everyone) - len(todo)} of {len(everyone)} learners graded already, their submissions "
                  "unchanged (--force grades them again)")
        if not todo:
            return 0
        prints = {s: fingerprint(root, s, assignment) for s in todo}  # what is graded: as it is now
        submit_args = lambda s: (autograde_one, s, assignment)  # noqa: E731
    mode = "scores" if args.scores_only else "full"
    running = max(1, min(args.jobs, os.cpu_count() or 1))
    estimate = SECONDS_TO_START + math.ceil(len(todo) / running) * SECONDS_PER_LEARNER[mode]
    sigterm = signal.signal(signal.SIGTERM, _interrupt)  # stopped by `kill`: as by Ctrl-C
    pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(root, args.jobs > 1, not args.scores_only))
    results, failed = {}, {}
    try:
        with Progress(total=len(todo), unit="learner", file=sys.stdout, estimate=estimate, trust_after=running) as bar:
            futures = {pool.submit(*submit_args(s)): s for s in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=1, return_when=FIRST_COMPLETED)
                for f in finished:
                    s = futures[f]
                    try:
                        results[s] = f.result()
                    except Exception as e:  # the worker itself failed
                        failed[s] = f"{type(e).__name__}: {e}"
                    else:
                        if not args.scores_only and results[s][0] == 0:
                            marker(root, s, assignment).write_text(prints[s])
                        elif not args.scores_only:
                            failed[s] = results[s][1].strip()
                    bar.update()
                bar.refresh()  # the elapsed time and the ETA move between learners too
        pool.shutdown()
    except KeyboardInterrupt:
        stop(pool)
        done = [s for s in todo if s in results and s not in failed]
        unfinished = [s for s in todo if s not in done]
        if not args.scores_only:
            forget(root, [s for s in unfinished if marker(root, s, assignment).exists()
                          and marker(root, s, assignment).read_text() == GRADING], assignment)
        print(f"\ninterrupted: graded {len(done)} of {len(todo)} learners" + (f" ({', '.join(done)})" if done else "")
              + f"; not graded: {', '.join(unfinished)}."
              + (" No CSV written." if args.scores_only else
                 " Their partial results were removed: run the same command again to grade them."))
        return 130
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    if not args.scores_only:
        forget(root, list(failed), assignment)
        for s in failed:
            print(f"--- nbgrader could not grade {s}:\n{failed[s]}")
        print(f"graded {len(todo) - len(failed)} of {len(todo)} learners" +
              (f"; nbgrader reported errors for: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0
    write_scores(args.csv, [results[s] for s in todo if s in results])
    for s in failed:
        print(f"--- could not score {s}: {failed[s]}")
    print(f"wrote {args.csv}: {len(todo) - len(failed)} learners, one row per graded item and a total per learner")
    return 1 if failed else 0


def write_scores(path, per_learner):
    """The scores CSV: one row per learner and graded item, then the learner's total."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "exercise", "item", "score", "points", "verdict"])
        for rows in per_learner:
            w.writerows(rows)
            if rows:
                w.writerow([rows[0][0], "all", "total", sum(r[3] for r in rows), sum(r[4] for r in rows), ""])


if __name__ == "__main__":
    sys.exit(main())
