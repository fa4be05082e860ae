"""Grade a whole class, using every core, with a progress bar and an ETA.

    python -m autograder.grade [--jobs N]                  # nbgrader autograde, one learner per job
    python -m autograder.grade --scores-only [--csv F]     # trusted scores only, no notebook runs

The full mode runs the standard `nbgrader autograde` (trusted scores, sandbox, repair: see
nbgrader_config.py) for several learners at once; the gradebook, feedback and export work as
usual afterwards. The scores-only mode skips executing the notebooks: it repairs each
submission, replays all of one learner's answers in one sandboxed process and writes the
scores to a CSV, for instructors who need the numbers first.
"""
import argparse
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat
from tqdm import tqdm

from . import course
from .exercises import EXERCISES
from .hidden import answer_sources
from .repair import read_any, rebuild
from .trusted import trusted_verdicts_many


def students(root, assignment=course.ASSIGNMENT):
    return sorted(p.parent.name for p in (Path(root) / "submitted").glob(f"*/{assignment}"))


def autograde_one(root, student, assignment=course.ASSIGNMENT):
    proc = course.nbgrader(root, "autograde", assignment, "--student", student, "--force", check=False)
    return proc.returncode, proc.stderr[-2000:]


def scores_one(root, student, assignment=course.ASSIGNMENT):
    """[(student, exercise, item, points, max_points, verdict)] for one learner, without nbgrader."""
    answers = {}
    for key, ex in EXERCISES.items():
        path = Path(root) / "submitted" / student / assignment / ex.notebook
        release = Path(root) / "release" / assignment / ex.notebook
        if not release.exists():
            continue
        template = nbformat.read(release, as_version=4)
        learner, _ = read_any(path) if path.exists() else (None, "")
        nb, _ = rebuild(learner, template)
        answers[key] = answer_sources(nb, ex.answer_cells) if learner is not None else []
    verdicts = trusted_verdicts_many(answers)
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
    if not args.scores_only:  # make sure the assignment and students exist before parallel runs
        course.nbgrader(args.course, "db", "assignment", "add", course.ASSIGNMENT, check=False)
    work = scores_one if args.scores_only else autograde_one
    results, failed = {}, []
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(todo), unit="learner", file=sys.stdout) as bar:
        futures = {pool.submit(work, args.course, s): s for s in todo}
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
        print(f"graded {len(todo) - len(failed)} of {len(todo)} learners" +
              (f"; nbgrader reported errors for: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
