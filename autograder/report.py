"""Per-gradient results for the whole class, after `nbgrader autograde`:

    python -m autograder.report [--course .] [--csv gradients.csv] [--plot missed.png]

The CSV has one row per learner and graded item (score, points, the verdict shown in the
feedback); the plot shows which gradients learners miss most.
"""
import argparse
import csv
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from .course import ASSIGNMENT
from .exercises import EXERCISES

FIELDS = ["student", "exercise", "item", "test_id", "score", "points", "verdict"]


def verdict_texts(path):
    """{grade_id: the text the graded cell printed} from an autograded notebook."""
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: "".join(o.get("text", "") for o in c.get("outputs", [])).strip()
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def rows(course, assignment=ASSIGNMENT):
    course = Path(course)
    items = {ex.test_id(k): (key, k) for key, ex in EXERCISES.items() for k in {**ex.grads, **ex.extra_tests}}
    out = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                texts = verdict_texts(course / "autograded" / sub.student_id / assignment / f"{nb.name}.ipynb")
                for g in nb.grades:
                    if g.name in items:
                        ex, item = items[g.name]
                        out.append(dict(student=sub.student_id, exercise=ex, item=item, test_id=g.name,
                                        score=g.score, points=g.max_score, verdict=texts.get(g.name, "")))
    return sorted(out, key=lambda r: (r["student"], r["test_id"]))


def plot_missed(table, path):
    """A bar per graded item: the share of learners who did not get its points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    missed = {}
    for r in table:
        key = f"{r['exercise']} {r['item']}"
        n, m = missed.get(key, (0, 0))
        missed[key] = (n + 1, m + (r["score"] < r["points"]))
    keys = sorted(missed, key=lambda k: -missed[k][1] / missed[k][0])
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(keys))))
    ax.barh(keys[::-1], [100 * missed[k][1] / missed[k][0] for k in keys[::-1]], color="firebrick")
    ax.set_xlabel("% of learners who missed it")
    ax.set_xlim(0, 100)
    ax.set_title(f"Gradients missed most ({len({r['student'] for r in table})} learners)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Per-gradient class report from the gradebook.")
    p.add_argument("--course", default=".", help="the course folder (with gradebook.db)")
    p.add_argument("--csv", default="gradients.csv", help="where to write the CSV (default: %(default)s)")
    p.add_argument("--plot", default="missed.png", help="where to write the plot (default: %(default)s)")
    args = p.parse_args(argv)
    if not (Path(args.course) / "gradebook.db").exists():
        p.error(f"no gradebook.db in {args.course}: run nbgrader autograde first")
    table = rows(args.course)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(table)
    plot_missed(table, args.plot)
    print(f"wrote {args.csv} ({len(table)} rows) and {args.plot}")


if __name__ == "__main__":
    main()
