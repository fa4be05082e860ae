"""End to end, with real nbgrader runs on a temporary copy of the course."""
import csv

import pytest
from nbgrader.api import Gradebook

from autograder import course, examples
from autograder.exercises import EXERCISES


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    c = course.copy_course(tmp_path_factory.mktemp("course") / "course")
    course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
    examples.write_submissions(c)
    course.nbgrader(c, "autograde", course.ASSIGNMENT, "--force")
    return c


def total(scores):
    return sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())


def test_the_instructor_solutions_score_full_marks(graded):
    got, most = total(course.scores(graded)["solutions"])
    assert most == sum(sum(ex.grads.values()) + sum(ex.extra_tests.values()) for ex in EXERCISES.values())
    assert got == most


def test_the_untouched_release_scores_zero(graded):
    assert total(course.scores(graded)["blank"])[0] == 0


@pytest.mark.parametrize("mistake", list(examples.MISTAKES))
def test_a_typical_mistake_loses_the_points_of_its_gradient(graded, mistake):
    """Is the mistaken gradient's test cell scored 0, and is nothing else in that notebook lost?"""
    ex_key, _, _, _, broken = examples.MISTAKES[mistake]
    ex = EXERCISES[ex_key]
    notebook = ex.notebook[:-len(".ipynb")]
    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(notebook, course.ASSIGNMENT, mistake)
        scores = {g.name: g.score for g in sub.grades}
        assert sub.score == sub.max_score - sum(ex.grads[k] for k in broken)
    for k in broken:
        assert scores[ex.test_id(k)] == 0


def test_feedback_and_export(graded):
    """Do generate_feedback and export run, and does the CSV hold the expected totals?"""
    course.nbgrader(graded, "generate_feedback", course.ASSIGNMENT, "--force")
    html = (graded / "feedback" / "solutions" / course.ASSIGNMENT / "ex1_atomic_graph.html").read_text()
    assert "dlogprobs: ok" in html
    course.nbgrader(graded, "export", "--to", "grades.csv")
    rows = {r["student_id"]: r for r in csv.DictReader(open(graded / "grades.csv"))}
    most = float(rows["solutions"]["max_score"])
    assert float(rows["solutions"]["score"]) == most and float(rows["blank"]["score"]) == 0
    assert float(rows["bessel_n"]["score"]) == sum(EXERCISES["ex1"].grads.values()) - 1
