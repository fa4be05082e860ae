"""Run nbgrader on a copy of the course: generate the release, autograde, read the scores."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbgrader.api import Gradebook

from . import data

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
    out = {}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = {nb.name: (nb.score, nb.max_score) for nb in sub.notebooks}
    return out


def score_table(table):
    """A text table: one row per student, one column per notebook, and the total."""
    notebooks = sorted({nb for row in table.values() for nb in row})
    head = f"{'student':30s}" + "".join(f"{nb[:18]:>20s}" for nb in notebooks) + f"{'total':>12s}"
    lines = [head, "-" * len(head)]
    for student in sorted(table):
        row = table[student]
        cells = "".join(f"{row[nb][0]:>13g} / {row[nb][1]:<4g}" for nb in notebooks)
        total, most = sum(s for s, _ in row.values()), sum(m for _, m in row.values())
        lines.append(f"{student:30s}{cells}{total:>6g} / {most:<4g}")
    return "\n".join(lines)
