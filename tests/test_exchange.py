"""The hub workflow of docs/instructors.md, end to end with nbgrader's own commands: an exchange folder,
the instructor's and the learners' commands in order, and zip_collect for an LMS download."""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.grader import course, examples
from autograder.grader.course import ASSIGNMENT
from autograder.exercises import EXERCISES

EX2 = EXERCISES["ex2"].notebook
# docs/instructors.md's pattern for a Canvas "Download Submissions" zip: lastfirst[_LATE]_userid_submissionid_file[-n].ipynb
CANVAS, = re.findall(r"--FileNameCollectorPlugin\.named_regexp='([^']+)'",
                     (Path(__file__).resolve().parent.parent / "docs" / "instructors.md").read_text())


def nbgrader(cwd, *args, home=None):
    """nbgrader ARGS in cwd, as a learner with their own HOME when home is given."""
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    if home is not None:
        env.update(HOME=str(home), JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"))
    proc = subprocess.run([*course.NBGRADER, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def released(tmp_path_factory, generated_course):
    """A course whose assignment is generated, with an exchange folder named in its configuration."""
    tmp = tmp_path_factory.mktemp("hub")
    exchange = tmp / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)  # every learner writes their submissions into it
    c = generated_course(tmp / "course")
    with open(c / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.Exchange.root = {str(exchange)!r}\n")
    return c, exchange


def test_the_exchange_round_trip(released, tmp_path):
    """Do release_assignment, the learners' fetch_assignment and submit, collect, autograde,
    generate_feedback, release_feedback and the learners' fetch_feedback take two learners'
    work to the gradebook and their feedback back to them?"""
    c, exchange = released
    learner_flags = ["--course", "backprop_ninja", f"--Exchange.root={exchange}"]  # learners have no course config
    nbgrader(c, "release_assignment", ASSIGNMENT)
    source = nbformat.read(c / "source" / ASSIGNMENT / EX2, as_version=4)
    for student, solve in [("alice", True), ("bob", False)]:
        home = tmp_path / student
        home.mkdir()
        nbgrader(home, "fetch_assignment", ASSIGNMENT, *learner_flags, home=home)
        work = home / ASSIGNMENT
        assert sorted(p.name for p in work.glob("*.ipynb")) == sorted(ex.notebook for ex in EXERCISES.values())
        for ex in EXERCISES.values():  # each works on Exercise 2 only (quicker to grade)
            if ex.notebook != EX2:
                (work / ex.notebook).unlink()
        if solve:
            nbformat.write(examples.solved(nbformat.read(work / EX2, as_version=4), source), work / EX2)
        nbgrader(home, "submit", ASSIGNMENT, "--student", student, *learner_flags, home=home)
    nbgrader(c, "collect", ASSIGNMENT)
    assert (c / "submitted" / "alice" / ASSIGNMENT / "timestamp.txt").exists()
    nbgrader(c, "autograde", ASSIGNMENT)
    assert {s: nbs["ex2_cross_entropy"] for s, nbs in course.scores(c).items()} == {"alice": (4, 4), "bob": (0, 4)}
    nbgrader(c, "generate_feedback", ASSIGNMENT)
    nbgrader(c, "release_feedback", ASSIGNMENT)
    home = tmp_path / "alice"
    nbgrader(home, "fetch_feedback", ASSIGNMENT, "--student", "alice", *learner_flags, home=home)
    feedback = list((home / ASSIGNMENT / "feedback").glob(f"*/{EX2.replace('.ipynb', '.html')}"))
    assert len(feedback) == 1 and "dlogits: ok" in feedback[0].read_text()


def test_zip_collect_with_the_readmes_pattern_for_a_canvas_download(released):
    """Does `nbgrader zip_collect` with the docs' filename pattern put each learner's
    notebooks from an LMS download (late and renamed files too) in submitted/?"""
    c, _ = released
    archive = c / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    release = (c / "release" / ASSIGNMENT / EX2).read_text()
    names = {"doejane_12345_6789012_ex2_cross_entropy.ipynb": "doejane",
             "roebob_LATE_23456_7890123_ex2_cross_entropy-1.ipynb": "roebob",
             "roebob_LATE_23456_7890123_ex1_atomic_graph.ipynb": "roebob"}
    with zipfile.ZipFile(archive / "submissions.zip", "w") as z:
        for name in names:
            z.writestr(name, release if EX2[:-6] in name else (c / "release" / ASSIGNMENT / "ex1_atomic_graph.ipynb").read_text())
    nbgrader(c, "zip_collect", ASSIGNMENT, f"--FileNameCollectorPlugin.named_regexp={CANVAS}")
    got = sorted(str(p.relative_to(c / "submitted")) for p in (c / "submitted").glob(f"*/{ASSIGNMENT}/*.ipynb")
                 if p.parts[-3] in {"doejane", "roebob"})
    assert got == [f"doejane/{ASSIGNMENT}/{EX2}", f"roebob/{ASSIGNMENT}/ex1_atomic_graph.ipynb", f"roebob/{ASSIGNMENT}/{EX2}"]
