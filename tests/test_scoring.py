"""Replay and score answers directly (no nbgrader): the lecture's solutions and single mistakes."""
import pytest

from autograder import score
from autograder.grader.examples import MISTAKES
from autograder.exercises import EXERCISES
from conftest import solution_cells


def grade(exercise, cells):
    return score.grade(exercise, list(cells.items()))


@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_the_lectures_solutions_score_full_marks(exercise):
    verdicts = grade(exercise, solution_cells(exercise))
    assert [v.name for v in verdicts.values() if not v.ok] == []
    assert sum(v.points for v in verdicts.values()) == sum(v.max_points for v in verdicts.values())


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_single_mistake_costs_only_its_own_step(mistake):
    """Does each typical mistake lose exactly the points of the gradient where it is made?"""
    ex, cell_id, old, new, broken = MISTAKES[mistake]
    cells = dict(solution_cells(ex))
    cells[cell_id] = cells[cell_id].replace(old, new)
    verdicts = grade(ex, cells)
    assert sorted(v.name for v in verdicts.values() if not v.ok) == sorted(broken)


def test_a_hard_coded_batch_size_is_caught():
    """Is `1/32` written for `1/n` caught by the hidden batch sizes?"""
    cells = dict(solution_cells('ex1'), ex1_loss_chain=solution_cells('ex1')["ex1_loss_chain"].replace("-1.0 / n", "-1.0 / 32"))
    verdicts = grade("ex1", cells)
    assert [v.name for v in verdicts.values() if not v.ok] == ["logprobs"]
    notebook_rows = [r for case, kind, r in verdicts["logprobs"].rows if case == "notebook"]
    assert all(r.approximate for r in notebook_rows), "right on the notebook's own batch"


def test_an_answer_that_raises_loses_only_what_it_did_not_define():
    cells = dict(solution_cells('ex1'), ex1_second_layer="dh = dlogits @ W2.T\nraise ValueError('oops')")
    verdicts = grade("ex1", cells)
    wrong = {v.name: v.message for v in verdicts.values() if not v.ok}
    assert sorted(wrong) == ["W2", "b2", "hpreact"]
    assert wrong["W2"] == "not defined: no line of yours assigns dW2"


def test_a_wrong_ex4_backward_fails_the_training_run():
    """Bessel's correction forgotten in BatchNorm's backward: dW1 is wrong, so is training."""
    source = solution_cells('ex4')["ex4_backward"]
    assert "value=-1 / (n - 1)" in source
    cells = {"ex4_backward": source.replace("value=-1 / (n - 1)", "value=-1 / n")}
    verdicts = grade("ex4", cells)
    assert not verdicts["training"].ok and not verdicts["W1"].ok and verdicts["W2"].ok


def test_no_code_outside_the_definitions_branches_on_an_exercises_name():
    """Does any comparison in the package (`==`, `!=`, `in`) test an exercise's key, outside
    exercises.py (the definitions)? Behaviour comes from the definitions' fields."""
    import ast
    import re
    from pathlib import Path
    import autograder
    found = []
    for path in Path(autograder.__file__).parent.rglob("*.py"):
        if path.name == "exercises.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    for leaf in ast.walk(side):
                        if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str) and re.fullmatch(r"ex\d+", leaf.value):
                            found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_a_new_exercise_is_graded_from_its_definition_alone(monkeypatch):
    """Does an exercise the course never had (tanh's backward step alone, dh given) get graded
    end to end, right and wrong answers with their reasons, from one definition and nothing
    else of the grader's code?"""
    from autograder.exercises import Exercise
    tanh = Exercise("ex9", "ex9_tanh.ipynb", {"ex9_dhpreact": ["hpreact"]}, {"hpreact": 2}, given={"dh": "h"})
    monkeypatch.setitem(EXERCISES, "ex9", tanh)
    right = score.grade("ex9", [("ex9_dhpreact", "dhpreact = (1.0 - h**2) * dh")])["hpreact"]
    assert right.ok and right.points == 2 and right.status == "right"
    slip = score.grade("ex9", [("ex9_dhpreact", "dhpreact = -(1.0 - h**2) * dh")])["hpreact"]
    assert (slip.points, slip.status, slip.mistake) == (0, "wrong", "sign")
    raised = score.grade("ex9", [("ex9_dhpreact", "dhpreact = (1.0 - h**2) * dhh")])["hpreact"]
    assert raised.status == "error" and "dhh" in raised.message
    assert raised.data(points=2)["points"] == 2.0 and right.data()["score"] == 2.0
