"""Run nbgrader on a copy of the course: generate the release, autograde, read the scores."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import data
from .exercises import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "backprop_ninja"


def copy_course(dest, root=ROOT):
    """A fresh course at dest: source/, nbgrader_config.py; no gradebook, no submissions."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(root / "source", dest / "source")
    shutil.copy(root / "nbgrader_config.py", dest)
    return dest


def nbgrader(course, *args, check=True):
    """Run `nbgrader ARGS` in the course folder; return the completed process."""
    # nbgrader runs `alembic` from PATH when it creates a gradebook: the venv's bin first
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
           **grading_env()}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def grading_env():
    """The environment the grader's kernels need: the sandbox shows them names.txt only at its
    per-user cache path (data.DEFAULT_PATH), so keep a verified copy there and name it."""
    return {data.ENV_VAR: str(data.ensure_names())}


def scores(course, assignment=ASSIGNMENT):
    """{student: {notebook: (score, max_score)}} from the course's gradebook."""
    from nbgrader.api import Gradebook  # the instructor extra
    out = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = {nb.name: (nb.score, nb.max_score) for nb in sub.notebooks}
    return out


def points(course, assignment=ASSIGNMENT):
    """{grade id: points} of the assignment's graded cells, from its nbgrader metadata: the
    gradebook's record of the source notebooks (what nbgrader grades with), or where there is
    none yet, the grade cells of the source notebooks (else the release's)."""
    import nbformat
    from nbgrader.api import Gradebook, MissingEntry  # the instructor extra
    db = Path(course) / "gradebook.db"
    if db.exists():
        with Gradebook(f"sqlite:///{db}") as gb:
            try:
                cells = {c.name: c.max_score for nb in gb.find_assignment(assignment).notebooks for c in nb.grade_cells}
            except MissingEntry:
                cells = {}
        if cells:
            return cells
    for step in ("source", "release"):
        notebooks = sorted((Path(course) / step / assignment).glob("*.ipynb"))
        if notebooks:
            return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
                    for path in notebooks for c in nbformat.read(path, as_version=4).cells
                    if c.metadata.get("nbgrader", {}).get("grade")}
    return {}


def submitted(course, assignment=ASSIGNMENT):
    """{student: {notebook name}} of the notebooks each learner handed in."""
    return {p.name: {nb.stem for nb in (p / assignment).glob("*.ipynb")}
            for p in (Path(course) / "submitted").iterdir() if (p / assignment).is_dir()}


def score_table(table, handed_in=None):
    """A text table: one row per student, one column per notebook (`-` where the student did
    not submit it), and the total."""
    notebooks = sorted({nb for row in table.values() for nb in row})
    head = f"{'student':28s}" + "".join(f"{nb[:17]:>18s}" for nb in notebooks) + f"{'total':>12s}"
    lines = [head, "-" * len(head)]
    for student in sorted(table):
        row, mine = table[student], (handed_in or {}).get(student, set(table[student]))
        cells = "".join(f"{row[nb][0]:>11g} / {row[nb][1]:<4g}" if nb in mine else f"{'-':>13s}{'':5s}"
                        for nb in notebooks)
        total, most = sum(s for s, _ in row.values()), sum(m for _, m in row.values())
        lines.append(f"{student:28s}{cells}{total:>6g} / {most:<4g}")
    return "\n".join(lines)


def lost_points(course, assignment=ASSIGNMENT):
    """{student: [(exercise, items, points lost, verdict)]}: every graded item of a submitted
    notebook that did not earn its points, with the verdict its feedback shows; items of one
    exercise with the same verdict together."""
    from . import report
    handed_in = submitted(course, assignment)
    def order(r):  # the exercises and their gradients in the lecture's order
        ex = EXERCISES[r["exercise"]]
        return list(EXERCISES).index(r["exercise"]), [*ex.grads, *ex.extra_tests].index(r["item"])
    out = {}
    for r in sorted(report.rows(course, assignment), key=order):
        notebook = EXERCISES[r["exercise"]].notebook[:-len(".ipynb")]
        if r["score"] >= r["points"] or notebook not in handed_in.get(r["student"], ()):
            continue
        label = f"d{r['item']}" if r["item"] in EXERCISES[r["exercise"]].grads else r["item"]
        why = r["verdict"].splitlines()[0] if r["verdict"] else "no verdict recorded"
        why = why.split(": ", 2)[-1] if why.startswith(f"{label}: ") else why  # "dX: WRONG (0/1): why"
        rows = out.setdefault(r["student"], [])
        same = [x for x in rows if x[0] == r["exercise"] and x[3] == why]
        if same:
            same[0][1].append(label)
            same[0][2] += r["points"] - r["score"]
        else:
            rows.append([r["exercise"], [label], r["points"] - r["score"], why])
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
