"""Self-contained grading jobs: what one learner needs, in bytes, and what grading returns.

The class runner (grade.py) packs, once per run, what every learner of an assignment shares
(`pack`: the course's nbgrader_config.py, the assignment's source and release files, a small
gradebook holding the assignment only, the hidden setting derived from the course secret, never
the secret itself, and the points), and per learner their submitted files (`learner`: regular
files only, no links). `run_job(pack, learner)` grades in a private temporary course folder
(source/, release/, submitted/<student>/, gradebook.db) and returns a result that the
coordinator alone records (`record`): the gradebook rows nbgrader autograde wrote and the
autograded files, or the scores-only rows. A local process pool and a Dask cluster call the same
function, so a worker needs the installed course package and bubblewrap, and no shared disk; the
learner's code runs in the same sandbox there as here (the worker process is never the sandbox).
"""
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path

from . import tree

IGNORED = (".ipynb_checkpoints", "__pycache__")

# jsonschema's optional check of the "iri" format compiles a grammar when jsonschema is imported
# (rfc3987_syntax: about 1 s of each grading process, coordinator and workers, via nbformat).
# No schema a grading process validates (nbformat's, nbgrader's) uses that format: without the
# module jsonschema simply has no such check (it imports it under suppress(ImportError)).
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)


class JobFailed(RuntimeError):
    """The grader could not grade (not the learner's fault): nothing may be recorded for them."""


# --- packing (on the coordinator) ------------------------------------------------------------

LINK = None  # what collect gives for a link: that there is one, never what it points at
SPECIAL = "special"  # ... and for a FIFO, device or socket: that there is one, never read


def collect(folder, left=None):
    """{relative path: bytes} of the regular files under folder, and LINK for each symbolic link
    (to a file or a folder: never followed, never read; the worker puts a link to an empty file
    in its place, so that nbgrader sees the file and the repair refuses it, as here), SPECIAL
    for a FIFO, device or socket. nbgrader's ignored folders are passed over; what is beyond
    tree.BOUNDS (depth, entries, bytes) or cannot be read is left out. Everything but the
    regular files is appended to `left` as (relative path, why)."""
    files, left = {}, [] if left is None else left
    for rel, kind, data in tree.walk(folder, ignore=IGNORED):
        if kind == tree.FILE:
            files[rel] = data
        elif kind != tree.FOLDER:
            if kind in (tree.LINK, tree.SPECIAL):  # a placeholder in the worker's copy
                files[rel] = LINK if kind == tree.LINK else SPECIAL
            left.append((rel, tree.why_left_out(kind, data)))
    return files


def alembic_on_path():
    """nbgrader runs `alembic` from PATH when it creates a gradebook: this Python's bin first."""
    bin_dir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def template_gradebook(root, assignment):
    """The bytes of a gradebook holding the course and the assignment only (its notebooks and
    cells as generate_assignment recorded them in the course's gradebook), no learner."""
    from contextlib import nullcontext
    from unittest import mock

    from nbgrader import api
    from sqlalchemy import text
    alembic_on_path()
    from .course import gradebook_url
    src_url = gradebook_url(root)
    with tempfile.TemporaryDirectory(prefix="bpn-template-") as tmp:
        dest = Path(tmp) / "gradebook.db"
        with api.Gradebook(src_url) as src:
            a = src.find_assignment(assignment)
            # a new gradebook is stamped with alembic's head, which nbgrader asks a subprocess
            # for (`alembic heads`, 3 s): the course's gradebook has it already
            version = src.db.execute(text("SELECT version_num FROM alembic_version")).scalar()
            stamp = mock.patch.object(api, "get_alembic_version", lambda: version) if version else nullcontext()
            with stamp, api.Gradebook(f"sqlite:///{dest}", course_id=a.course_id) as gb:
                gb.update_or_create_assignment(assignment, duedate=a.duedate)
                for nb in a.notebooks:
                    gb.update_or_create_notebook(nb.name, assignment, kernelspec=nb.kernelspec)
                    for c in nb.grade_cells:
                        gb.update_or_create_grade_cell(c.name, nb.name, assignment, max_score=c.max_score,
                                                       cell_type=c.cell_type)
                    for c in nb.solution_cells:
                        gb.update_or_create_solution_cell(c.name, nb.name, assignment)
                    for c in nb.task_cells:
                        gb.update_or_create_task_cell(c.name, nb.name, assignment, max_score=c.max_score,
                                                      cell_type=c.cell_type)
                    for c in nb.source_cells:
                        gb.update_or_create_source_cell(c.name, nb.name, assignment, cell_type=c.cell_type,
                                                        locked=c.locked, source=c.source, checksum=c.checksum)
        return dest.read_bytes()


def make_pack(root, assignment, mode, setting, points=None, trusted=True):
    """What every job of this run shares (see the module's docstring); trusted: whether the
    assignment is the course's own (graded by the trusted replay on the setting's cases)."""
    root = Path(root)
    pack = {"assignment": assignment, "mode": mode, "setting": setting, "points": points, "trusted": trusted,
            "release": collect(root / "release" / assignment)}
    if mode == "full":
        pack.update(config=(root / "nbgrader_config.py").read_bytes(), source=collect(root / "source" / assignment),
                    gradebook=template_gradebook(root, assignment))
    return pack


def make_learner(root, assignment, student, extension=None):
    """One learner's part of a job: their id, submitted files, what was left out of their folder
    (collect's [(relative path, why)]) and any extension of the due date."""
    left = []
    submitted = collect(Path(root) / "submitted" / student / assignment, left)
    return {"student": student, "extension": extension, "submitted": submitted, "left": left}


# --- grading (on a worker) -------------------------------------------------------------------

_one_at_a_time = threading.Lock()  # nbgrader and the trusted grader keep per-process state
_prepared = False
_preflights = {}  # Setting -> '' or why the sandbox cannot run, once per worker process


def prepare_process():
    """Once per worker process: the environment nbgrader's pieces and the kernels need."""
    global _prepared
    if _prepared:
        return
    from .. import data
    alembic_on_path()
    os.environ[data.ENV_VAR] = str(data.ensure_names())  # the sandbox shows the kernels this copy
    import torch
    torch.set_num_threads(1)  # the grader's own tensors are tiny
    _prepared = True


def write_tree(folder, files, link_target=None):
    """Write collect's {relative path: bytes, LINK or SPECIAL} under folder (SPECIAL: an empty FIFO); a LINK becomes a link to
    link_target (an empty file outside the course), or is left out without one."""
    for rel, content in files.items():
        path = Path(folder) / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise JobFailed(f"a job names a file outside its folder: {rel!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is LINK:
            if link_target is not None:
                Path(link_target).touch()
                path.symlink_to(link_target)
        elif isinstance(content, str) and content == SPECIAL:
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)


def preflight_once(setting):
    from .verdicts import preflight
    if setting not in _preflights:
        _preflights[setting] = preflight(setting)
    return _preflights[setting]


def run_job(pack, learner):
    """Grade one learner from a self-contained job; return what the coordinator records:
    {"student", "mode", "worker", and in full mode "ok" (nbgrader succeeded), "error",
    "submission" (gradebook rows), "files" (autograded/<student>/<assignment>/), or in
    scores-only mode "rows"}. Raises JobFailed when the grader itself cannot work."""
    with _one_at_a_time:
        prepare_process()
        tmp = tempfile.mkdtemp(prefix=f"bpn-job-{os.getpid()}-")  # named by its maker (grade.sweep_left)
        try:
            result = (_full if pack["mode"] == "full" else _scores)(pack, learner, Path(tmp))
        finally:
            tree.remove(tmp)
        result.update(student=learner["student"], mode=pack["mode"], worker=f"{socket.gethostname()}:{os.getpid()}")
        return result


def _scores(pack, learner, tmp):
    from .verdicts import score_rows
    broken = preflight_once(pack["setting"])
    if broken:
        raise JobFailed(f"the trusted grader cannot run on this worker: {broken}")
    write_tree(tmp / "submitted", learner["submitted"], tmp / "link-target")
    write_tree(tmp / "release", pack["release"])
    return {"ok": True, "rows": score_rows(learner["student"], tmp / "submitted", tmp / "release",
                                           pack["setting"], pack["points"])}


def _full(pack, learner, tmp):
    import warnings
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from sqlalchemy.exc import SAWarning
    from traitlets.config.loader import PyFileConfigLoader
    from ..exercises import SECRET_FILE
    from .folder import CARRIED
    from .trusted import SandboxedExecute, TrustedScores
    warnings.simplefilter("ignore", SAWarning)  # nbgrader warns so for each notebook not submitted
    a, s = pack["assignment"], learner["student"]
    root = tmp / "course"
    root.mkdir()
    (root / "nbgrader_config.py").write_bytes(pack["config"])
    (root / "gradebook.db").write_bytes(pack["gradebook"])
    write_tree(root / "source" / a, pack["source"])
    write_tree(root / "release" / a, pack["release"])
    write_tree(root / "submitted" / s / a, learner["submitted"], tmp / "link-target")
    if learner.get("extension") is not None:
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            gb.update_or_create_student(s)
            gb.update_or_create_submission(a, s, extension=learner["extension"])
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    # the job's folder is the course here: a configuration that names the course's own folder
    # or gradebook (as a JupyterHub's often does) must not send nbgrader back to them, or to a
    # path this worker does not have; the coordinator alone records in the course's gradebook
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    api = NbGraderAPI(config=config)
    key = str(api.coursedir.root)
    # the hidden cases come with the job: the worker never sees the course's secret
    if pack["trusted"]:
        TrustedScores._settings[key] = (pack["setting"], preflight_once(pack["setting"]))
    TrustedScores._verdicts, TrustedScores._ahead = {}, (None, None)
    # the learner's time budget is per grading (kept on nbgrader's converter, which each
    # autograde call makes anew; the class's own fallback store is cleared here too)
    vars(SandboxedExecute).get("_ninja_spent", {}).pop(s, None)
    submitted = os.path.normpath(api.coursedir.format_path(api.coursedir.submitted_directory, s, a))
    # what the coordinator left out and the job does not carry (links and special files it
    # does, as placeholders), noted as if this process had found it
    CARRIED[submitted] = [(rel, why) for rel, why in learner.get("left", []) if rel not in learner["submitted"]]
    try:
        out = api.autograde(a, s, force=True, create=True)
    finally:
        CARRIED.pop(submitted, None)
        TrustedScores._settings.pop(key, None)
        TrustedScores._verdicts, TrustedScores._ahead = {}, (None, None)
    if (root / SECRET_FILE).exists():
        raise JobFailed("the job's grading looked for the course secret instead of the cases it carries")
    if not out["success"]:
        return {"ok": False, "error": (out.get("error") or out.get("log") or "")[-2000:]}
    return {"ok": True, "submission": submission_rows(root / "gradebook.db", a, s),
            "files": collect(root / "autograded" / s / a)}


def submission_rows(db, assignment, student):
    """What nbgrader autograde wrote about one submission: its timestamp, and per notebook
    whether it was submitted, its late penalty and flag, its grades and comments by cell name."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{db}") as gb:
        sub = gb.find_submission(assignment, student)
        return {"timestamp": sub.timestamp, "notebooks": {
            nb.name: {"submitted": (Path(db).parent / "submitted" / student / assignment / f"{nb.name}.ipynb").exists(),
                      "late_submission_penalty": nb.late_submission_penalty, "flagged": nb.flagged,
                      "grades": {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
                      "comments": {c.name: c.auto_comment for c in nb.comments}}
            for nb in sub.notebooks}}


# --- recording (on the coordinator: the one writer) -------------------------------------------

def record(gb, root, assignment, result):
    """Write one learner's full-mode result into the open gradebook gb and autograded/, as
    nbgrader autograde does: the student, the submission with its timestamp, each grade's
    auto_score (needing manual grading where a grader had scored it by hand, or the autograder
    could not), each comment's auto_comment, each notebook's late penalty."""
    s, rows = result["student"], result["submission"]
    gb.update_or_create_student(s)
    kw = {"timestamp": rows["timestamp"]} if rows["timestamp"] else {}
    sub = gb.update_or_create_submission(assignment, s, **kw)
    for nb in sub.notebooks:
        mine = rows["notebooks"].get(nb.name)
        if mine is None:
            continue
        for g in nb.grades:
            if g.name in mine["grades"]:
                g.auto_score, needed = mine["grades"][g.name]
                # a notebook not submitted: zero, nothing to review (so nbgrader sets it); else the
                # worker's fresh gradebook had no manual score, and ours may have one to review
                g.needs_manual_grade = needed or (mine["submitted"] and g.manual_score is not None)
        for c in nb.comments:
            if c.name in mine["comments"]:
                c.auto_comment = mine["comments"][c.name]
        nb.late_submission_penalty = mine["late_submission_penalty"]
        nb.flagged = nb.flagged or mine["flagged"]
    gb.db.commit()
    dest = Path(root) / "autograded" / s / assignment
    tree.remove(dest)
    dest.mkdir(parents=True)
    write_tree(dest, result["files"])
