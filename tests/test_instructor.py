"""The instructor's side, with real nbgrader runs: a course with a second assignment beside the
course's own, the class grader (incremental, interruptible, points from nbgrader's metadata),
its reports, and quiet, tidy output and feedback."""
import copy
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from types import SimpleNamespace

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.grader import course, examples, grade, report, sandbox
from autograder.grader.course import ASSIGNMENT
from autograder.exercises import EXERCISES
from conftest import is_kernel

EX1, EX2, EX3 = (EXERCISES[k].notebook for k in ("ex1", "ex2", "ex3"))


def meta(grade_id, **flags):
    return {"nbgrader": {"grade_id": grade_id, "schema_version": 3, "grade": False, "solution": False,
                         "locked": False, "task": False, **flags}}


def intro_notebook(data_file):
    """A plain nbgrader assignment whose right answer reads a data file outside the course, with
    nbgrader's own stub (`raise NotImplementedError()`) and no hidden tests."""
    return new_notebook(cells=[
        new_markdown_cell("## Part A (2 points)\nReturn the number in the data file.", id="intro_task",
                          metadata=meta("intro_task", locked=True)),
        new_code_cell(f"def read_number():\n    ### BEGIN SOLUTION\n    return int(open({str(data_file)!r}).read())\n"
                      "    ### END SOLUTION", id="intro_answer", metadata=meta("intro_answer", solution=True)),
        new_code_cell('"""Is the number read right?"""\nassert read_number() == 42', id="intro_test",
                      metadata=meta("intro_test", grade=True, locked=True, points=2)),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def read(path):
    return nbformat.read(path, as_version=4)


def submit(c, student, assignment, notebooks):
    """Write {file name: notebook} as the learner's submission."""
    dest = c / "submitted" / student / assignment
    dest.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, dest / name)


def add_intro(c, data_file, stock=False):
    """source/intro/intro.ipynb in course c, generated; with stock=True c gets a configuration
    with nothing of the course's (stock nbgrader), for comparison."""
    (c / "source" / "intro").mkdir(parents=True)
    nbformat.write(intro_notebook(data_file), c / "source" / "intro" / "intro.ipynb")
    if stock:
        (c / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.CourseDirectory.root = {str(c)!r}\nc.CourseDirectory.course_id = 'backprop_ninja'\n")
    course.nbgrader(c, "generate_assignment", "intro", "--force")
    release, source = read(c / "release" / "intro" / "intro.ipynb"), read(c / "source" / "intro" / "intro.ipynb")
    submit(c, "solutions", "intro", {"intro.ipynb": examples.solved(copy.deepcopy(release), source)})
    submit(c, "blank", "intro", {"intro.ipynb": release})
    return course.nbgrader(c, "autograde", "intro")


@pytest.fixture(scope="module")
def graded(tmp_path_factory, generated_course):
    """A course with two learners of backprop_ninja (one right; one with a mistake in Exercise 1,
    which is all they submitted), graded by `python -m autograder.grade`, and an `intro`
    assignment beside it, graded by plain `nbgrader autograde`; and the same intro in a course
    configured as stock nbgrader."""
    tmp = tmp_path_factory.mktemp("instructor")
    data_file = tmp / "outside" / "number.txt"
    data_file.parent.mkdir()
    data_file.write_text("42\n")
    c = generated_course(tmp / "course")
    examples.write_submissions(c, mistakes={"missing_keepdim": examples.MISTAKES["missing_keepdim"]})
    shutil.rmtree(c / "submitted" / "blank")  # two learners are enough here
    assert grade.main(["--course", str(c), "--jobs", "1"]) == 0  # (one worker: two learners start faster so)
    log = add_intro(c, data_file)
    (tmp / "stock").mkdir()
    stock_log = add_intro(tmp / "stock", data_file, stock=True)
    return SimpleNamespace(root=c, intro_log=log, stock=tmp / "stock", stock_log=stock_log)


# --- another assignment in the same course ----------------------------------------------------

def test_another_assignment_is_released_exactly_as_stock_nbgrader_releases_it(graded):
    """Does `intro` get nbgrader's own stub, and is its release byte-identical to what a course
    configured as stock nbgrader generates, while backprop_ninja keeps the course's stub?"""
    ours = (graded.root / "release" / "intro" / "intro.ipynb").read_text()
    assert "raise NotImplementedError()" in ours
    assert ours == (graded.stock / "release" / "intro" / "intro.ipynb").read_text()
    assert "NotImplementedError" not in (graded.root / "release" / ASSIGNMENT / EX2).read_text()


def test_another_assignment_is_graded_as_stock_nbgrader_grades_it(graded):
    """Is the right answer to `intro`, which reads a file outside the course (the course's
    sandbox would hide it), given full marks, with no warning, as stock nbgrader gives it?"""
    assert course.scores(graded.root, "intro") == course.scores(graded.stock, "intro") == {
        "solutions": {"intro": (2, 2)}, "blank": {"intro": (0, 2)}}
    log = graded.intro_log.stdout + graded.intro_log.stderr
    assert "| WARNING]" not in log and "| ERROR]" not in log, log
    ours, stock = (read(c / "autograded" / "solutions" / "intro" / "intro.ipynb") for c in (graded.root, graded.stock))
    assert [c.get("outputs") for c in ours.cells] == [c.get("outputs") for c in stock.cells]


def test_the_course_kernel_and_timeout_apply_to_its_own_assignment_only(graded):
    """Does nbgrader's Execute, as the course configures it, run the course's notebooks in the
    sandboxed kernel with the course's 120 s timeout, and another assignment's in nbgrader's own
    kernel with nbgrader's default timeout?"""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.grader.scoped import ScopedExecute, ScopedRepairingExporter, ScopedTrustedScores
    from autograder.grader.trusted import SandboxedExecute, TrustedScores
    config = PyFileConfigLoader("nbgrader_config.py", path=str(graded.root)).load_config()
    converter = Autograde(coursedir=CourseDirectory(config=config), config=config)
    exporter = ScopedRepairingExporter(parent=converter, config=config)
    ours, theirs = ({"nbgrader": {"assignment": a}} for a in (ASSIGNMENT, "intro"))
    kernel = ScopedExecute(parent=exporter).delegate(ours)
    assert isinstance(kernel, SandboxedExecute) and kernel.timeout == 120
    kernel = ScopedExecute(parent=exporter).delegate(theirs)
    assert type(kernel) is Execute and kernel.timeout == Execute.class_traits()["timeout"].default()
    assert isinstance(ScopedTrustedScores(parent=exporter).delegate(ours), TrustedScores)
    assert ScopedTrustedScores(parent=exporter).delegate(theirs) is None


# --- quiet, tidy output ---------------------------------------------------------------------

def test_plain_nbgrader_autograde_of_the_course_is_quiet_and_tidy(graded):
    """Does `nbgrader autograde` of a learner print no checksum warning for the course's hidden
    tests and no kernel banner, and leave no kernel caches beside the notebooks?"""
    before = course.scores(graded.root)["missing_keepdim"]
    proc = course.nbgrader(graded.root, "autograde", ASSIGNMENT, "--student", "missing_keepdim", "--force")
    out = proc.stdout + proc.stderr
    assert "checksum" not in out and "To connect another client" not in out and "Ctrl-C will not work" not in out
    assert proc.stdout.strip() == ""
    assert course.scores(graded.root)["missing_keepdim"] == before
    assert sorted(p.name for p in (graded.root / "autograded" / "missing_keepdim" / ASSIGNMENT).iterdir()) == [EX1]


def test_the_feedback_names_each_gradient_and_draws_its_math_offline(graded):
    """Does each learner's feedback list its gradients by name (not "Test cell"), draw its math in
    the page without loading MathJax from the web, and sit alone in its folder?"""
    course.nbgrader(graded.root, "generate_feedback", ASSIGNMENT, "--force")
    folder = graded.root / "feedback" / "solutions" / ASSIGNMENT
    assert sorted(p.name for p in folder.iterdir()) == sorted(ex.notebook.replace(".ipynb", ".html") for ex in EXERCISES.values())
    ex1 = (folder / EX1.replace(".ipynb", ".html")).read_text()
    toc = re.findall(r'<li><a href="#(test_\w+)">([^<]*)</a>', ex1)
    assert len(toc) == 26 and ("test_ex1_dlogprobs", "dlogprobs") in toc and ("test_ex1_dC", "dC") in toc
    ex3 = (folder / EX3.replace(".ipynb", ".html")).read_text()
    assert len(re.findall(r'<img [^>]*class="math"', ex3)) >= 10 and "$$" not in ex3
    assert not re.search(r"<script[^>]*src=[^>]*mathjax", ex3, re.I) and "cdnjs" not in ex3
    # another assignment's feedback stays nbgrader's own
    course.nbgrader(graded.root, "generate_feedback", "intro", "--force")
    intro = (graded.root / "feedback" / "solutions" / "intro" / "intro.html").read_text()
    assert ">Test cell</a>" in intro and "mathjax" in intro.lower()


# --- the class grader ---------------------------------------------------------------------------

def test_a_rerun_grades_only_new_or_changed_submissions(graded, capsys):
    """Does a second run grade nobody, and a run after one learner resubmitted grade that
    learner only, with the new submission's score?"""
    assert grade.main(["--course", str(graded.root), "--jobs", "1"]) == 0
    assert "2 of 2 learners graded already" in capsys.readouterr().out
    fixed = read(graded.root / "submitted" / "solutions" / ASSIGNMENT / EX1)
    nbformat.write(fixed, graded.root / "submitted" / "missing_keepdim" / ASSIGNMENT / EX1)
    assert grade.main(["--course", str(graded.root), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 learners graded already" in out and "graded 1 of 1 learners" in out
    assert course.scores(graded.root)["missing_keepdim"][EX1[:-6]] == (26, 26)


def test_scores_only_gives_a_total_per_learner(graded, tmp_path):
    """Does scores.csv end each learner's rows with their total, equal to the gradebook's?"""
    assert grade.main(["--course", str(graded.root), "--scores-only", "--jobs", "1", "--csv", str(tmp_path / "s.csv")]) == 0
    totals = {r["student"]: float(r["score"]) for r in csv.DictReader(open(tmp_path / "s.csv")) if r["item"] == "total"}
    assert totals == {s: sum(v for v, _ in nbs.values()) for s, nbs in course.scores(graded.root).items()}


def test_the_report_separates_wrong_from_not_attempted_and_names_gradients(graded, tmp_path, monkeypatch):
    """Does the per-gradient report mark a blank exercise "not attempted" and a wrong answer
    "wrong", and label the plot's bars as gradients (`dC`), exercise by exercise?"""
    table = {(r["student"], r["exercise"], r["item"]): r["status"] for r in report.rows(graded.root)}
    assert table[("solutions", "ex1", "C")] == "right"
    figures = []
    from matplotlib.figure import Figure
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    report.main(["--course", str(graded.root), "--csv", str(tmp_path / "g.csv"), "--plot", str(tmp_path / "m.png"),
                 "--mistakes-csv", str(tmp_path / "k.csv"), "--mistakes-plot", str(tmp_path / "k.png")])
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert {r["status"] for r in rows} <= {"right", "wrong", "error", "not attempted"}
    labels = [t.get_text() for ax in figures[0].axes for t in ax.get_yticklabels()]
    assert "dC" in labels and "dcounts_sum_inv" in labels and not any(" " in label for label in labels)
    assert [ax.get_title(loc="left") for ax in figures[0].axes] == [ex.notebook[:-6] for ex in EXERCISES.values()]


def test_the_report_says_when_there_is_nothing_to_report(graded, tmp_path, capsys):
    """Does the report stop with an error, and write no file, for an assignment with nothing of the
    course's to report?"""
    for assignment in ("hw4", "intro"):
        with pytest.raises(SystemExit) as stopped:
            report.main(["--course", str(graded.root), "--assignment", assignment, "--csv", str(tmp_path / "g.csv")])
        assert stopped.value.code == 2 and "nothing to report" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


def test_a_misspelled_assignment_is_an_error(graded, capsys):
    with pytest.raises(SystemExit):
        grade.main(["--course", str(graded.root), "--assignment", "hw4", "--scores-only"])
    assert "no submissions of hw4" in capsys.readouterr().err


def test_a_gradebook_without_the_assignments_notebooks_stops_the_run_with_what_to_do(tmp_path, generated_course,
                                                                                    monkeypatch, capsys):
    """A course whose gradebook is gone (or generate_assignment never ran), graded with the
    course's Python but its bin not on PATH: does the run stop before anyone is graded, say
    what to run, and leave no learner a grade or a failure?"""
    c = generated_course(tmp_path / "course")
    (c / "gradebook.db").unlink()
    ex2 = "ex2_cross_entropy.ipynb"
    submit(c, "ana", ASSIGNMENT, {ex2: read(c / "release" / ASSIGNMENT / ex2)})
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # nbgrader runs `alembic` to make a new gradebook
    assert grade.main(["--course", str(c)]) == 2
    out, err = capsys.readouterr()
    assert f"records no notebook of {ASSIGNMENT}" in err and f"nbgrader generate_assignment {ASSIGNMENT}" in err, err
    assert "ana" not in out + err and not (c / "autograded").exists()


def test_points_come_from_the_assignments_metadata_in_both_modes(tmp_path):
    """In a course that calls the assignment hw4 and gives Exercise 3's test cell 6 points in its
    source, do `--scores-only` and the gradebook agree on every learner's score? Its
    configuration names the course's folder by its absolute path and keeps its gradebook in
    another folder, as a JupyterHub's often does: each job still grades in the folder of its
    own it is given, and the class runner records in the gradebook the configuration names,
    as nbgrader does, never in a gradebook.db of its own in the course folder."""
    c = tmp_path / "course"
    c.mkdir()
    db = tmp_path / "hub" / "gradebook.db"
    db.parent.mkdir()
    (c / "source").mkdir()
    shutil.copytree(course.ROOT / "source" / ASSIGNMENT, c / "source" / "hw4")
    config = (course.ROOT / "nbgrader_config.py").read_text()
    assert "\nc.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n" in config
    (c / "nbgrader_config.py").write_text(config.replace(
        "\nc.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n",
        f"\nc.CourseDirectory.root = {str(c)!r}\nc.CourseDirectory.db_url = {'sqlite:///' + str(db)!r}\n"))
    nb = read(c / "source" / "hw4" / EX3)
    next(x for x in nb.cells if x.metadata.get("nbgrader", {}).get("grade_id") == "test_ex3_dhprebn").metadata.nbgrader["points"] = 6
    nbformat.write(nb, c / "source" / "hw4" / EX3)
    course.nbgrader(c, "generate_assignment", "hw4", "--force")
    release = read(c / "release" / "hw4" / EX3)
    submit(c, "right", "hw4", {EX3: examples.solved(copy.deepcopy(release), nb)})
    submit(c, "blank", "hw4", {EX3: release})
    from nbgrader.api import Gradebook
    assert course.gradebook_url(c) == f"sqlite:///{db}"
    with Gradebook(f"sqlite:///{db}") as gb:  # read with sqlite3 as nbgrader's API reads it
        cells = {x.name: x.max_score for n in gb.find_assignment("hw4").notebooks for x in n.grade_cells}
    assert course.points(c, "hw4") == cells and cells["test_ex3_dhprebn"] == 6 and len(cells) == 36
    assert course.gradebook_points(db, "hw5") == {}
    assert grade.main(["--course", str(c), "--assignment", "hw4", "--jobs", "1"]) == 0
    assert grade.main(["--course", str(c), "--assignment", "hw4", "--scores-only", "--jobs", "1", "--csv", str(c / "s.csv")]) == 0
    gradebook = course.scores(c, "hw4")
    assert gradebook["right"][EX3[:-6]] == (6, 6) and gradebook["blank"][EX3[:-6]] == (0, 6)
    assert not (c / "gradebook.db").exists()
    course.nbgrader(c, "export", "--to", str(tmp_path / "grades.csv"))  # nbgrader reads the same gradebook
    exported = {r["student_id"]: float(r["total"]) for r in csv.DictReader(open(tmp_path / "grades.csv"))}
    assert exported == {s: sum(v for v, _ in nbs.values()) for s, nbs in gradebook.items()} and exported["right"] == 6
    rows = list(csv.DictReader(open(c / "s.csv")))
    ex3 = {r["student"]: (float(r["score"]), float(r["points"])) for r in rows if r["item"] == "hprebn"}
    total = {r["student"]: (float(r["score"]), float(r["points"])) for r in rows if r["item"] == "total"}
    assert ex3 == {"right": (6, 6), "blank": (0, 6)}
    assert total == {s: (sum(v for v, _ in nbs.values()), sum(m for _, m in nbs.values())) for s, nbs in gradebook.items()}


# --- Ctrl-C ---------------------------------------------------------------------------------

SLOW = 'import os, time\nif os.path.exists("slow.flag"):  # copied beside the notebook while grading\n    time.sleep(600)\n'


def test_ctrl_c_stops_the_class_run_and_its_unfinished_learners_are_graded_again(tmp_path, generated_course):
    """Does a real Ctrl-C (SIGINT to the command's process group) stop the run with its workers
    and their kernels within seconds, say who was graded and who was not, and leave the
    learners it stopped to be graded by plain `nbgrader autograde` next time?"""
    c = generated_course(tmp_path / "course")
    right = examples.solved(read(c / "release" / ASSIGNMENT / EX2), read(c / "source" / ASSIGNMENT / EX2))
    slow = copy.deepcopy(right)
    answer = next(x for x in slow.cells if x.metadata.get("nbgrader", {}).get("grade_id") == "ex2_dlogits")
    answer.source = SLOW + answer.source
    for student, nb in [("a_quick", right), ("b_slow", slow), ("c_slow", slow)]:
        submit(c, student, ASSIGNMENT, {EX2: nb})
        if nb is slow:
            (c / "submitted" / student / ASSIGNMENT / "slow.flag").write_text("")
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    proc = subprocess.Popen([sys.executable, "-m", "autograder.grader.grade", "--course", str(c), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group, as a terminal's job
    state = lambda s: (grade.marker(c, s, ASSIGNMENT).read_text()  # noqa: E731
                       if grade.marker(c, s, ASSIGNMENT).exists() else "")
    kernels = []
    deadline = time.time() + 240
    # a_quick recorded, and both slow learners' kernels running (the workers record nothing)
    while not (len(state("a_quick")) == 64 and len(kernels) == 2):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "timed out"
        time.sleep(0.5)
        kernels = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if is_kernel(p)]
    time.sleep(2)  # both slow learners' kernels are asleep in their answer cell
    tree = psutil.Process(proc.pid).children(recursive=True)
    start = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    print(out.replace("\r", "\n"))  # shown with -s, or when the test fails
    assert time.time() - start < 10, out
    assert proc.returncode == 130, out
    assert "interrupted: graded 1 of 3 learners (a_quick); not graded: b_slow, c_slow." in out
    assert "<?" not in out, "the progress bar shows an ETA from the start"
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == [], "workers or kernels outlived the run"
    assert not (c / "autograded" / "b_slow" / ASSIGNMENT).exists() and set(course.scores(c)) == {"a_quick"}
    graded = grade.in_gradebook(c, ASSIGNMENT)
    assert [s for s in ("a_quick", "b_slow", "c_slow") if grade.up_to_date(c, s, ASSIGNMENT, graded)] == ["a_quick"]
    for student in ("b_slow", "c_slow"):
        (c / "submitted" / student / ASSIGNMENT / "slow.flag").unlink()
    log = course.nbgrader(c, "autograde", ASSIGNMENT)
    assert not re.search(r"Skipping existing assignment: \S*(b_slow|c_slow)", log.stderr)
    scores = course.scores(c)
    assert {s: scores[s][EX2[:-6]] for s in scores} == {"a_quick": (4, 4), "b_slow": (4, 4), "c_slow": (4, 4)}


# `python -m autograder.grade ARGS` in a process where importing torch fails
WITHOUT_TORCH = 'import runpy, sys; sys.modules["torch"] = None; runpy.run_module("autograder.grade", run_name="__main__")'


def test_the_class_command_leaves_no_process_and_no_file_behind_in_either_mode(tmp_path, generated_course):
    """Does `python -m autograder.grade`, in full and in scores-only mode, exit 0 with everything
    written, and leave no process of its own running and nothing in its temporary folder (the
    sandboxes' and kernel servers' folders, the jobs' courses), though it ends without tearing
    its modules down? Its TMPDIR is deeper than a Unix socket's path may be long: the kernels'
    sockets then go in /tmp, and nothing of theirs is left there (their names carry the pid of
    the process that made them: another run's, on the same machine, are not this one's). The
    command's own process computes nothing, so it does its work with torch unimportable there
    (its start is a second shorter without it); its workers import torch as they need."""
    c = generated_course(tmp_path / "course")
    right = examples.solved(read(c / "release" / ASSIGNMENT / EX2), read(c / "source" / ASSIGNMENT / EX2))
    submit(c, "right", ASSIGNMENT, {EX2: right})
    submit(c, "blank", ASSIGNMENT, {EX2: read(c / "release" / ASSIGNMENT / EX2)})
    for mode in ([], ["--scores-only", "--csv", str(tmp_path / "s.csv")]):
        tmp = tmp_path / f"tmp{len(mode)}" / ("deep-" * 12)
        tmp.mkdir(parents=True)
        env = {**os.environ, "TMPDIR": str(tmp),
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
        proc = subprocess.Popen([sys.executable, "-c", WITHOUT_TORCH, "--course", str(c), "--jobs", "2", *mode],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        seen, kernels = set(), False
        while proc.poll() is None:  # every process of the run, to look for after it
            try:
                now = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                now = []
            seen.update(now)
            kernels = kernels or any(is_kernel(p) for p in now)
            time.sleep(0.2)
        out = proc.stdout.read()
        assert proc.returncode == 0, out
        assert "graded 2 of 2 learners" in out or "wrote " in out, out
        assert kernels == (not mode), "full mode runs kernels, scores-only none"
        _, alive = psutil.wait_procs(list(seen), timeout=5)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == [], "processes outlived the run"
        assert sorted(os.listdir(tmp)) == [], f"left behind in the temporary folder ({mode or 'full'})"
        pids = {p.pid for p in seen} | {proc.pid}  # the run's own sockets' folders, named by their makers' pids
        maker = [re.match(r"ninja-kernels?-(\d+)-", f) for base in sandbox.grading_folders() for f in os.listdir(base)]
        assert [m.string for m in maker if m and int(m[1]) in pids] == [], "sockets' folders left behind"
    scores = course.scores(c)
    assert {s: scores[s][EX2[:-6]] for s in scores} == {"right": (4, 4), "blank": (0, 4)}
    rows = {r["student"]: float(r["score"]) for r in csv.DictReader(open(tmp_path / "s.csv")) if r["item"] == "total"}
    assert rows == {"right": 4.0, "blank": 0.0}
