"""Per-gradient results for the whole class, after `nbgrader autograde`:

    python -m autograder.report [--course .] [--assignment backprop_ninja] [--csv gradients.csv] [--plot missed.png]

The CSV has one row per learner and graded item (score, points, right / wrong / not attempted,
the verdict shown in the feedback); the plot shows, exercise by exercise, which gradients
learners get wrong and which they leave blank.
"""
import argparse
import csv
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from .course import ASSIGNMENT, submitted
from ..exercises import EXERCISES

FIELDS = ["student", "exercise", "item", "test_id", "score", "points", "status", "verdict"]
NOT_ATTEMPTED, WRONG, RIGHT = "not attempted", "wrong", "right"


def graded_cells(path):
    """{grade_id: cell} of a notebook's graded and answer cells ({} if there is no notebook)."""
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")}


def output_text(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])).strip() if cell is not None else ""


def status(ex, item, score, points, learner, release):
    """right, wrong or not attempted: no notebook, the answer cell as released, or not defined."""
    if score >= points:
        return RIGHT
    if not learner or ": not defined" in output_text(learner.get(ex.test_id(item))):
        return NOT_ATTEMPTED
    for cell, names in ex.answer_cells.items():
        if (item in names or not names) and cell in learner and cell in release \
                and learner[cell].source.strip() == release[cell].source.strip():
            return NOT_ATTEMPTED
    return WRONG


def rows(course, assignment=ASSIGNMENT):
    """One dict per learner and graded item of the course's exercises in the assignment,
    which are found by their notebooks' names."""
    course = Path(course)
    by_notebook = {ex.notebook[:-len(".ipynb")]: ex for ex in EXERCISES.values()}
    out = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submissions = gb.assignment_submissions(assignment)
        except MissingEntry:
            return []
        for sub in submissions:
            for nb in sub.notebooks:
                ex = by_notebook.get(nb.name)
                if ex is None:
                    continue
                items = {ex.test_id(k): k for k in {**ex.grads, **ex.extra_tests}}
                learner = graded_cells(course / "autograded" / sub.student_id / assignment / f"{nb.name}.ipynb")
                release = graded_cells(course / "release" / assignment / f"{nb.name}.ipynb")
                for g in nb.grades:
                    if g.name in items:
                        score, points = g.score, g.max_score
                        out.append(dict(student=sub.student_id, exercise=ex.key, item=items[g.name], test_id=g.name,
                                        score=score, points=points,
                                        status=status(ex, items[g.name], score, points, learner, release),
                                        verdict=output_text(learner.get(g.name))))
    return sorted(out, key=lambda r: (r["student"], r["test_id"]))


def plot_missed(table, path):
    """A panel per exercise, a bar per graded item: the share of learners who got it wrong and
    who did not attempt it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = {}  # exercise -> item -> [learners, wrong, not attempted]
    for r in table:
        c = counts.setdefault(r["exercise"], {}).setdefault(r["item"], [0, 0, 0])
        c[0] += 1
        c[1] += r["status"] == WRONG
        c[2] += r["status"] == NOT_ATTEMPTED
    exercises = sorted(counts)
    fig, axes = plt.subplots(len(exercises), 1, sharex=True, squeeze=False,
                             figsize=(8, 1.2 + 0.26 * sum(len(counts[e]) + 2 for e in exercises)),
                             gridspec_kw={"height_ratios": [len(counts[e]) + 1 for e in exercises]})
    for ax, key in zip(axes[:, 0], exercises):
        items = sorted(counts[key], key=lambda k: (counts[key][k][1] + counts[key][k][2]) / counts[key][k][0])
        share = lambda i: [100 * counts[key][k][i] / counts[key][k][0] for k in items]  # noqa: E731
        labels = [f"d{k}" if k in EXERCISES[key].grads else k for k in items]
        ax.barh(labels, share(1), color="firebrick", label=WRONG)
        ax.barh(labels, share(2), left=share(1), color="silver", label=NOT_ATTEMPTED)
        ax.set_title(EXERCISES[key].notebook[:-len(".ipynb")], loc="left", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    axes[0, 0].legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("% of learners who did not get its points")
    axes[-1, 0].set_xlim(0, 100)
    fig.suptitle(f"Gradients missed ({len({r['student'] for r in table})} learners)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lost_points(course, assignment=ASSIGNMENT):
    """{student: [(exercise, items, points lost, verdict)]}: every graded item of a submitted
    notebook that did not earn its points, with the verdict its feedback shows; items of one
    exercise with the same verdict together."""
    handed_in = submitted(course, assignment)
    def order(r):  # the exercises and their gradients in the lecture's order
        ex = EXERCISES[r["exercise"]]
        return list(EXERCISES).index(r["exercise"]), [*ex.grads, *ex.extra_tests].index(r["item"])
    out = {}
    for r in sorted(rows(course, assignment), key=order):
        notebook = EXERCISES[r["exercise"]].notebook[:-len(".ipynb")]
        if r["score"] >= r["points"] or notebook not in handed_in.get(r["student"], ()):
            continue
        label = f"d{r['item']}" if r["item"] in EXERCISES[r["exercise"]].grads else r["item"]
        why = r["verdict"].splitlines()[0] if r["verdict"] else "no verdict recorded"
        why = why.split(": ", 2)[-1] if why.startswith(f"{label}: ") else why  # "dX: WRONG (0/1): why"
        mine = out.setdefault(r["student"], [])
        same = [x for x in mine if x[0] == r["exercise"] and x[3] == why]
        if same:
            same[0][1].append(label)
            same[0][2] += r["points"] - r["score"]
        else:
            mine.append([r["exercise"], [label], r["points"] - r["score"], why])
    return out


def lost_points_table(course, assignment=ASSIGNMENT):
    """lost_points as text: per student, one line per exercise and verdict."""
    lines = []
    for student, rows in sorted(lost_points(course, assignment).items()):
        lines.append(f"{student}:")
        for exercise, items, points, why in rows:
            names = ", ".join(items) if len(items) <= 4 else f"{len(items)} gradients ({', '.join(items[:3])}, ...)"
            lines.append(f"  {exercise} {names}: -{points:g}: {why}")
    return "\n".join(lines) if lines else "(none)"


def main(argv=None):
    p = argparse.ArgumentParser(description="Per-gradient class report from the gradebook.")
    p.add_argument("--course", default=".", help="the course folder (with gradebook.db)")
    p.add_argument("--assignment", default=ASSIGNMENT, help="the assignment (default: %(default)s)")
    p.add_argument("--csv", default="gradients.csv", help="where to write the CSV (default: %(default)s)")
    p.add_argument("--plot", default="missed.png", help="where to write the plot (default: %(default)s)")
    args = p.parse_args(argv)
    if not (Path(args.course) / "gradebook.db").exists():
        p.error(f"no gradebook.db in {args.course}: run nbgrader autograde first")
    table = rows(args.course, args.assignment)
    if not table:
        p.error(f"nothing to report: the gradebook has no graded submission of {args.assignment} "
                "with the course's exercise notebooks (run nbgrader autograde, or check --assignment)")
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(table)
    plot_missed(table, args.plot)
    print(f"wrote {args.csv} ({len(table)} rows) and {args.plot}")


if __name__ == "__main__":
    main()
