"""The instructor's term: due dates and late penalties through nbgrader's own plug-ins, and an
LMS's late marker kept through `nbgrader zip_collect`."""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.exercises import EXERCISES
from autograder.grader import course, late
from autograder.grader.course import ASSIGNMENT

EX2 = EXERCISES["ex2"].notebook
DUE = "2026-12-01 17:00:00 UTC"
ROOT = Path(__file__).resolve().parent.parent
# the Canvas pattern as docs/instructors.md gives it: lastfirst[_LATE]_userid_submissionid_file[-n].ipynb
CANVAS, = re.findall(r"--FileNameCollectorPlugin\.named_regexp='([^']+)'", (ROOT / "docs" / "instructors.md").read_text())


def nbgrader(cwd, *args):
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    proc = subprocess.run([*course.NBGRADER, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("seconds, share", [(1, 0.1), (86400, 0.1), (86401, 0.2), (10 * 86400, 1.0)])
def test_a_late_notebook_loses_a_share_of_its_score_per_day(seconds, share):
    """Does PerDayPenalty take 10% of the notebook's score for every day or part of a day late,
    never more than the score?"""
    assert late.PerDayPenalty().late_submission_penalty("s", 4.0, seconds) == pytest.approx(4.0 * share)


def test_an_on_time_or_empty_notebook_loses_nothing_and_zero_after_days_takes_all():
    """Is nothing taken from an on-time or zero-score notebook, and everything from one at least
    zero_after_days late?"""
    p = late.PerDayPenalty(zero_after_days=3)
    assert p.late_submission_penalty("s", 4.0, 0) is None
    assert p.late_submission_penalty("s", 0.0, 5 * 86400) is None
    assert p.late_submission_penalty("s", 4.0, 2 * 86400) == pytest.approx(0.8)
    assert p.late_submission_penalty("s", 4.0, 2 * 86400 + 1) == 4.0


def test_zip_collect_keeps_canvas_late_marker(generated_course, tmp_path):
    """Does `nbgrader zip_collect` with the course's config and the Canvas pattern give a file
    marked LATE_ a timestamp after the due date, and leave an on-time file without one?"""
    c = generated_course(tmp_path / "course")
    nbgrader(c, "db", "assignment", "add", ASSIGNMENT, "--duedate", DUE)
    archive = c / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    release = (c / "release" / ASSIGNMENT / EX2).read_bytes()
    with zipfile.ZipFile(archive / "submissions.zip", "w") as z:
        z.writestr(f"doejane_12345_6789012_{EX2}", release)
        z.writestr(f"roebob_LATE_23456_7890123_{EX2[:-6]}-1.ipynb", release)
    nbgrader(c, "zip_collect", ASSIGNMENT, f"--FileNameCollectorPlugin.named_regexp={CANVAS}")
    sub = c / "submitted"
    assert (sub / "doejane" / ASSIGNMENT / EX2).is_file() and (sub / "roebob" / ASSIGNMENT / EX2).is_file()
    assert not (sub / "doejane" / ASSIGNMENT / "timestamp.txt").exists()
    stamp = (sub / "roebob" / ASSIGNMENT / "timestamp.txt").read_text()
    assert stamp.startswith("2026-12-01 17:00:01"), stamp


def test_plain_autograde_penalises_a_late_learner_and_prints_no_warning_of_nbgraders(generated_course, tmp_path):
    """With a due date set, does plain `nbgrader autograde` of a learner 25 hours late record
    two days' penalty (20% of each notebook's score) in the gradebook, nothing for a learner on
    time, and print none of SQLAlchemy's warnings about nbgrader's own rows?"""
    from nbgrader.api import Gradebook

    from conftest import solution_cells
    c = generated_course(tmp_path / "course")
    nbgrader(c, "db", "assignment", "add", ASSIGNMENT, "--duedate", DUE)
    nb = nbformat.read(c / "release" / ASSIGNMENT / EX2, as_version=4)
    for cell in nb.cells:
        cell.source = solution_cells("ex2").get(cell.get("id"), cell.source)
    for student, stamp in [("ontime", "2026-12-01 16:59:00 UTC"), ("late", "2026-12-02 18:00:00 UTC")]:
        dest = c / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / EX2)
        (dest / "timestamp.txt").write_text(stamp)
    proc = nbgrader(c, "autograde", ASSIGNMENT)
    assert "Warning:" not in proc.stderr, proc.stderr  # e.g. "SAWarning: Object of type <SubmittedAssignment> ..."
    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        def ex2(student):
            n, = [n for n in gb.find_submission(ASSIGNMENT, student).notebooks if n.name == EX2[:-6]]
            return n.score, n.late_submission_penalty
        assert ex2("ontime") == (4.0, None)
        assert ex2("late") == (4.0, pytest.approx(0.8))


def readme_commands():
    """The instructor's first grading as README.md gives it: its commands, in order."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Instructors: a first grading"):]
    block = block[block.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_a_class_through_its_term_with_the_readmes_commands(generated_course, tmp_path):
    """Do the README's commands, with a due date set and one learner late, take a class from the
    release to the feedback: the class runner's table, `nbgrader export`, Canvas's and Moodle's
    imports all giving each learner the same total (the late one less 10% a day), and a feedback
    page for each notebook handed in?"""
    import csv as csvmod

    from conftest import solution_cells
    commands = readme_commands()
    assert commands[0].startswith(". .venv/bin/activate") and commands[1].startswith("export BACKPROP_NINJA_NAMES=")
    assert commands[2:] == ["nbgrader generate_assignment backprop_ninja --force", "python -m autograder.grade",
                            "nbgrader generate_feedback backprop_ninja", "nbgrader export"]
    c = generated_course(tmp_path / "course")
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}

    def run(command):
        argv = command.split()
        argv = [sys.executable, "-m", "nbgrader", *argv[1:]] if argv[0] == "nbgrader" else [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=c, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout}\n{proc.stderr}"
        return proc
    run(commands[2])
    nbgrader(c, "db", "assignment", "add", ASSIGNMENT, "--duedate", DUE)
    nb = nbformat.read(c / "release" / ASSIGNMENT / EX2, as_version=4)
    for cell in nb.cells:
        cell.source = solution_cells("ex2").get(cell.get("id"), cell.source)
    for student, stamp in [("ontime", "2026-12-01 16:00:00 UTC"), ("late", "2026-12-02 18:00:00 UTC"),
                           ("nodate", "when I felt like it")]:
        dest = c / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / EX2)
        (dest / "timestamp.txt").write_text(stamp)
    table = run(commands[3]).stdout
    nodate, = [line for line in table.splitlines() if line.startswith("nodate ")]
    assert nodate.split()[1] == "4" and nodate.endswith("timestamp.txt is not a date: ignored (the submission "
                                                        "counts as on time)"), table
    rows = {line.split()[0]: line for line in table.splitlines() if line.split()[:1] in (["ontime"], ["late"])}
    assert rows["ontime"].split()[1:3] == ["4", "/"] and "late:" not in rows["ontime"], table
    assert rows["late"].split()[1:3] == ["3.2", "/"] and rows["late"].endswith("late: -0.8"), table
    run(commands[4])
    assert sorted(p.parts[-3] for p in (c / "feedback").glob(f"*/{ASSIGNMENT}/{EX2[:-6]}.html")) == ["late", "nodate", "ontime"]
    run(commands[5])
    nbgrader(c, "export", "--exporter=autograder.grader.export.CanvasExport")
    nbgrader(c, "export", "--exporter=autograder.grader.export.MoodleExport")
    read = lambda name: list(csvmod.reader(open(c / name, newline="")))
    grades, canvas, moodle = read("grades.csv"), read("canvas.csv"), read("moodle.csv")
    g = {r[1]: dict(zip(grades[0], r)) for r in grades[1:]}
    assert {s: (float(g[s]["total"]), float(g[s]["late_penalty"]), g[s]["days_late"]) for s in g} == {
        "ontime": (4.0, 0.0, "0"), "late": (3.2, 0.8, "2"), "nodate": (4.0, 0.0, "0")}
    assert float(g["late"][EX2[:-6]]) == 4.0 and float(g["late"]["max_score"]) == 44.0
    # Canvas: Student, ID, SIS User ID, SIS Login ID, Section, then the assignment; Points Possible first
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", ASSIGNMENT]
    assert canvas[1] == ["Points Possible", "", "", "", "", "44.0"]
    assert {r[3]: float(r[5]) for r in canvas[2:]} == {"ontime": 4.0, "late": 3.2, "nodate": 4.0}
    # Moodle: names, the identifier Moodle maps to a user field, a column per grade item
    assert moodle[0] == ["First name", "Last name", "Email address", "Username", ASSIGNMENT]
    assert {r[3]: float(r[4]) for r in moodle[1:]} == {"ontime": 4.0, "late": 3.2, "nodate": 4.0}
