"""Per-gradient results for the whole class, after `nbgrader autograde`:

    python -m autograder.report [--course .] [--assignment backprop_ninja] [--csv gradients.csv]
        [--plot missed.png] [--mistakes-csv mistakes.csv] [--mistakes-plot mistakes.png]

The CSV has one row per learner and graded item (score, points, status, the named mistake,
the verdict shown in the feedback), every text cell inert (neutral.cell: no formula, no control
character). Status and mistake are read as data from the verdict the trusted grader stored
with each graded cell (verdict.verdict_of), never from its words: right, wrong (a gradient
that does not match), error (the answer raised, did not parse, gave no tensor, or has a typo
in its name: the learner tried), refused (not run: it reads the grader's internals or
autograd, or differentiates numerically), not attempted (no notebook, the answer cell as
released, or no line assigning the gradient) or grader error (not judged; grade again). The plot shows, exercise by exercise, which gradients learners get
wrong, which raise, and which they leave blank. The mistakes CSV and plot are the
misconception view: for each mistake the course names (diagnose.MISCONCEPTIONS), how many
learners made it and on which gradients.
"""
import argparse
import csv
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from . import neutral
from .course import ASSIGNMENT, gradebook_file, gradebook_url, has_gradebook, submitted
from ..diagnose import MISCONCEPTIONS
from ..exercises import EXERCISES
from ..verdict import ERROR, GRADER_ERROR, NOT_ATTEMPTED, REFUSED, RIGHT, STATUSES, WRONG, verdict_of

FIELDS = ["student", "exercise", "item", "test_id", "score", "points", "status", "mistake", "verdict"]
MISTAKE_FIELDS = ["mistake", "description", "learners", "times", "gradients"]
NO_VERDICT = "no verdict recorded: grade this notebook again with the course's configuration"


def graded_cells(path):
    """{grade_id: cell} of a notebook's graded and answer cells ({} if there is no notebook)."""
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")}


def output_text(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])).strip() if cell is not None else ""


def status(ex, item, score, points, learner, release, verdict):
    """The item's status: right if it earned its points; not attempted where there is no
    notebook or the answer cell is as released; else the status of its verdict's data
    (`verdict`, verdict.verdict_of), and a grader error where there is none."""
    if score >= points:
        return RIGHT
    if not learner:
        return NOT_ATTEMPTED
    for cell, names in ex.answer_cells.items():
        if (item in names or not names) and cell in learner and cell in release \
                and learner[cell].source.strip() == release[cell].source.strip():
            return NOT_ATTEMPTED
    return verdict["status"] if verdict else GRADER_ERROR


def rows(course, assignment=ASSIGNMENT):
    """One dict per learner and graded item of the course's exercises in the assignment,
    which are found by their notebooks' names."""
    course = Path(course)
    by_notebook = {ex.notebook[:-len(".ipynb")]: ex for ex in EXERCISES.values()}
    out = []
    with Gradebook(gradebook_url(course)) as gb:
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
                        out.append(row(sub.student_id, ex, items[g.name], g.score, g.max_score, learner, release))
    return sorted(out, key=lambda r: (r["student"], r["test_id"]))


def row(student, ex, item, score, points, learner, release):
    """The report's row of one learner's graded item: its score from the gradebook, its status,
    mistake and message from the verdict data of its graded cell in `learner` ({grade id: cell}
    of the autograded notebook; release: the released one's)."""
    cell = learner.get(ex.test_id(item))
    verdict = verdict_of(cell)
    st = status(ex, item, score, points, learner, release, verdict)
    return dict(student=student, exercise=ex.key, item=item, test_id=ex.test_id(item), score=score, points=points,
                status=st, mistake=verdict["mistake"] if verdict and st in (WRONG, ERROR, REFUSED) else "",
                verdict=output_text(cell), message=verdict["message"] if verdict else (NO_VERDICT if learner else ""))


def _label(r):
    return f"d{r['item']}" if r["item"] in EXERCISES[r["exercise"]].grads else r["item"]


def plot_missed(table, path):
    """A panel per exercise, a bar per graded item: the share of learners whose answer is
    wrong, raised (error) and who did not attempt it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [(WRONG, "firebrick"), (ERROR, "darkorange"), (REFUSED, "mediumpurple"), (NOT_ATTEMPTED, "silver"),
             (GRADER_ERROR, "black")]
    counts = {}  # exercise -> item -> {status: learners}
    for r in table:
        c = counts.setdefault(r["exercise"], {}).setdefault(r["item"], dict.fromkeys(STATUSES, 0))
        c[r["status"]] += 1
    exercises = sorted(counts)
    fig, axes = plt.subplots(len(exercises), 1, sharex=True, squeeze=False,
                             figsize=(8, 1.2 + 0.26 * sum(len(counts[e]) + 2 for e in exercises)),
                             gridspec_kw={"height_ratios": [len(counts[e]) + 1 for e in exercises]})
    for ax, key in zip(axes[:, 0], exercises):
        order = [*EXERCISES[key].grads, *EXERCISES[key].extra_tests]
        items = [k for k in order if k in counts[key]][::-1]  # the lecture's order, top to bottom
        labels = [f"d{k}" if k in EXERCISES[key].grads else k for k in items]
        left = [0.0] * len(items)
        for st, colour in shown:
            share = [100 * counts[key][k][st] / sum(counts[key][k].values()) for k in items]
            ax.barh(labels, share, left=left, color=colour, label=st)
            left = [a + b for a, b in zip(left, share)]
        ax.set_title(EXERCISES[key].notebook[:-len(".ipynb")], loc="left", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
    axes[0, 0].legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("% of learners who did not get its points")
    axes[-1, 0].set_xlim(0, 100)
    fig.suptitle(f"Gradients missed ({len({r['student'] for r in table})} learners)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mistakes(table):
    """The misconception view: one dict per mistake the course names (in the order of
    diagnose.MISCONCEPTIONS), with the learners who made it, how many times, and on which
    gradients ("ex1 dW2 (3), ..."), most learners first; mistakes nobody made are left out."""
    out = []
    for code, description in MISCONCEPTIONS:
        hits = [r for r in table if r.get("mistake") == code]
        if not hits:
            continue
        where = {}
        for r in hits:
            where.setdefault(f"{r['exercise']} {_label(r)}", set()).add(r["student"])
        ranked = sorted(where.items(), key=lambda kv: -len(kv[1]))
        out.append(dict(mistake=code, description=description, learners=len({r["student"] for r in hits}),
                        times=len(hits), gradients=", ".join(f"{g} ({len(s)})" for g, s in ranked)))
    return sorted(out, key=lambda m: -m["learners"])


def plot_mistakes(table, path, learners=None):
    """One bar per named mistake: how many learners made it, with the gradients (and how
    many learners each) written beside the bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = mistakes(table)[::-1]
    learners = learners or len({r["student"] for r in table})
    most = max([m["learners"] for m in rows] or [1])
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.42 * max(len(rows), 1)))
    if rows:
        ax.barh([m["description"] for m in rows], [m["learners"] for m in rows], color="steelblue", height=0.6)
        for i, m in enumerate(rows):
            where = m["gradients"] if len(m["gradients"]) <= 70 else m["gradients"][:67].rsplit(",", 1)[0] + ", ..."
            ax.text(m["learners"] + 0.03 * most, i, where, va="center", fontsize=8.5)
    else:
        ax.text(0.5, 0.5, "no named mistake in the class", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlim(0, most * 2.4)  # the right part holds the gradients' names
    step = max(1, -(-most // 6))
    ax.set_xticks(range(0, most + 1, step))
    ax.tick_params(axis="y", labelsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines["bottom"].set_bounds(0, most)
    ax.set_xlabel(f"learners who made it (of {learners})", loc="left")
    fig.suptitle("Mistakes the class makes: how many learners made each, and on which gradients "
                 "(with how many learners each)", x=0.01, ha="left", fontsize=10)
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
        why = (r.get("message") or NO_VERDICT).splitlines()[0]
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
        lines.append(f"{neutral.text(student)}:")
        for exercise, items, points, why in rows:
            names = ", ".join(items) if len(items) <= 4 else f"{len(items)} gradients ({', '.join(items[:3])}, ...)"
            lines.append(f"  {exercise} {names}: -{points:g}: {neutral.text(why)}")
    return "\n".join(lines) if lines else "(none)"


def main(argv=None):
    p = argparse.ArgumentParser(description="Per-gradient class report from the gradebook.")
    p.add_argument("--course", default=".",
                   help="the course folder (its gradebook: the one its nbgrader_config.py names, else gradebook.db)")
    p.add_argument("--assignment", default=ASSIGNMENT, help="the assignment (default: %(default)s)")
    p.add_argument("--csv", default="gradients.csv", help="where to write the CSV (default: %(default)s)")
    p.add_argument("--plot", default="missed.png", help="where to write the plot (default: %(default)s)")
    p.add_argument("--mistakes-csv", default="mistakes.csv",
                   help="where to write the misconception table (default: %(default)s)")
    p.add_argument("--mistakes-plot", default="mistakes.png",
                   help="where to write the misconception plot (default: %(default)s)")
    args = p.parse_args(argv)
    if not has_gradebook(args.course):
        p.error(f"no gradebook in {args.course} (its {gradebook_file(args.course)}): run nbgrader autograde first")
    table = rows(args.course, args.assignment)
    if not table:
        p.error(f"nothing to report: the gradebook has no graded submission of {args.assignment} "
                "with the course's exercise notebooks (run nbgrader autograde, or check --assignment)")
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(neutral.row(r) for r in table)
    plot_missed(table, args.plot)
    named = mistakes(table)
    with open(args.mistakes_csv, "w", newline="") as f:
        w = csv.DictWriter(f, MISTAKE_FIELDS)
        w.writeheader()
        w.writerows(neutral.row(m) for m in named)
    plot_mistakes(table, args.mistakes_plot)
    tally = {st: sum(r["status"] == st for r in table) for st in STATUSES}
    print(f"wrote {args.csv} ({len(table)} rows: " + ", ".join(f"{n} {st}" for st, n in tally.items())
          + f"), {args.plot}, {args.mistakes_csv} ({len(named)} named mistakes) and {args.mistakes_plot}")
    for m in named:
        print(f"  {m['learners']} learner(s): {m['description']}: {neutral.text(m['gradients'])}")


if __name__ == "__main__":
    main()
