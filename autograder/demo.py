"""The main job: run the reference notebook headless and print its key figures, then the
instructor demo (generate the release, autograde example submissions, print the scores).

    python -m autograder.demo [--skip-reference] [--skip-grading]
"""
import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from . import course, examples, grade

ROOT = course.ROOT
BUILD = ROOT / "build"
REFERENCE = ROOT / "notebooks" / "backprop_ninja.ipynb"
FIGURE_CELLS = ["ex4_evaluate", "ex4_sample"]  # cells whose output are the key figures


def run_reference():
    nb = nbformat.read(REFERENCE, as_version=4)
    start = time.time()
    NotebookClient(nb, timeout=None, resources={"metadata": {"path": str(REFERENCE.parent)}}).execute()
    BUILD.mkdir(exist_ok=True)
    nbformat.write(nb, BUILD / REFERENCE.name)
    print(f"executed {REFERENCE.relative_to(ROOT)} in {time.time() - start:.0f} s "
          f"(executed copy: {(BUILD / REFERENCE.name).relative_to(ROOT)})")
    for cell in nb.cells:
        if cell.get("id") in FIGURE_CELLS:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stdout":
                    print(out["text"].rstrip())


def run_grading():
    c = course.copy_course(BUILD / "course")
    course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
    students = examples.write_submissions(c)
    print(f"\nautograding {len(students)} example submissions in {c.relative_to(ROOT)} "
          "(each typical mistake comes alone, in the one notebook it is in) ...")
    start = time.time()
    grade.main(["--course", str(c)])
    print(f"done in {time.time() - start:.0f} s\n")
    print(course.score_table(course.scores(c)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-reference", action="store_true", help="do not run the reference notebook")
    p.add_argument("--skip-grading", action="store_true", help="do not run the grading demo")
    args = p.parse_args(argv)
    if not args.skip_reference:
        run_reference()
    if not args.skip_grading:
        run_grading()


if __name__ == "__main__":
    main()
