"""Run nbgrader on a copy of the course: generate the release, autograde, read the scores."""
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import data
from . import tree

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "backprop_ninja"


def copy_course(dest, root=ROOT):
    """A fresh course at dest: source/, nbgrader_config.py; no gradebook, no submissions."""
    dest = Path(dest)
    tree.remove(dest)  # an earlier course, learners' folders included, however deep
    shutil.copytree(root / "source", dest / "source")
    shutil.copy(root / "nbgrader_config.py", dest)
    return dest


# `python -m nbgrader`, without what no command of it uses and costs 1.1 s to import (nbgrader_cli.py)
NBGRADER = [sys.executable, "-m", "autograder.grader.nbgrader_cli"]


def nbgrader(course, *args, check=True):
    """Run `nbgrader ARGS` in the course folder; return the completed process."""
    # nbgrader runs `alembic` from PATH when it creates a gradebook: the venv's bin first
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
           **grading_env()}
    proc = subprocess.run([*NBGRADER, *args], cwd=course, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def grading_env():
    """The environment the grader's kernels need: the sandbox shows them names.txt only at its
    per-user cache path (data.DEFAULT_PATH), so keep a verified copy there and name it."""
    return {data.ENV_VAR: str(data.ensure_names())}


def gradebook_url(course):
    """The course's gradebook, as nbgrader finds it from the course folder: the database URL its
    nbgrader_config.py sets as `CourseDirectory.db_url` (a JupyterHub's often names one of its
    own), else the folder's gradebook.db. A relative SQLite path is taken from the course
    folder, where nbgrader runs."""
    course = Path(course).resolve()
    try:
        text = (course / "nbgrader_config.py").read_text(errors="replace")
    except OSError:
        text = ""
    url = _configured_url(str(course), text) if "db_url" in text else None  # else it cannot set it
    if not url:
        return f"sqlite:///{course / 'gradebook.db'}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        return f"sqlite:///{course / path}" if path and not path.startswith(":") else url
    return url


@functools.lru_cache(maxsize=16)
def _configured_url(course, text):
    """CourseDirectory.db_url of the configuration `text` at course/nbgrader_config.py, loaded as
    nbgrader loads it (once per process and text), or None."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader
    loaded = PyFileConfigLoader("nbgrader_config.py", path=course).load_config()
    section = loaded.get("CourseDirectory")
    url = section.get("db_url") if isinstance(section, Config) else None
    return url if isinstance(url, str) else None


def gradebook_file(course):
    """The path of the course's gradebook where it is an SQLite file (gradebook_url), else None."""
    url = gradebook_url(course)
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def has_gradebook(course):
    """Whether the course's gradebook exists (a database server's is taken to)."""
    path = gradebook_file(course)
    return path is None or path.exists()


def scores(course, assignment=ASSIGNMENT):
    """{student: {notebook: (score, max_score)}} from the course's gradebook."""
    from nbgrader.api import Gradebook  # the instructor extra
    out = {}
    with Gradebook(gradebook_url(course)) as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = {nb.name: (nb.score, nb.max_score) for nb in sub.notebooks}
    return out


def points(course, assignment=ASSIGNMENT):
    """{grade id: points} of the assignment's graded cells, from its nbgrader metadata: the
    gradebook's record of the source notebooks (what nbgrader grades with), or where there is
    none yet, the grade cells of the source notebooks (else the release's)."""
    db = gradebook_file(course)
    if db is not None and db.exists():
        cells = gradebook_points(db, assignment)
        if cells:
            return cells
    for step in ("source", "release"):
        notebooks = sorted((Path(course) / step / assignment).glob("*.ipynb"))
        if notebooks:
            import nbformat
            return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
                    for path in notebooks for c in nbformat.read(path, as_version=4).cells
                    if c.metadata.get("nbgrader", {}).get("grade")}
    return {}


# nbgrader's tables (nbgrader.api: GradeCell is a BaseCell of a Notebook of an Assignment)
GRADE_CELLS = """SELECT b.name, g.max_score FROM grade_cells g JOIN base_cell b ON b.id = g.id
                 JOIN notebook n ON n.id = b.notebook_id JOIN assignment a ON a.id = n.assignment_id
                 WHERE a.name = ?"""


def gradebook_points(db, assignment):
    """{grade id: max score} of the assignment's grade cells in nbgrader's gradebook at db ({}
    if it has none). Read with sqlite3, read-only: nbgrader's own API would load its Jupyter
    server extensions (1 s) in a process that needs nothing else of nbgrader (--scores-only);
    a gradebook that query cannot read is read through that API after all."""
    import sqlite3
    from contextlib import closing
    try:  # (a connection's own `with` ends a transaction, it does not close the file)
        with closing(sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True)) as con:
            return {name: float(most) for name, most in con.execute(GRADE_CELLS, (assignment,))}
    except sqlite3.Error:
        from nbgrader.api import Gradebook, MissingEntry  # the instructor extra
        with Gradebook(f"sqlite:///{db}") as gb:
            try:
                return {c.name: c.max_score for nb in gb.find_assignment(assignment).notebooks for c in nb.grade_cells}
            except MissingEntry:
                return {}


def submitted(course, assignment=ASSIGNMENT):
    """{student: {notebook name}} of the notebooks each learner handed in."""
    return {p.name: {nb.stem for nb in (p / assignment).glob("*.ipynb")}
            for p in (Path(course) / "submitted").iterdir() if (p / assignment).is_dir()}
