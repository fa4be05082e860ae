"""The class report's statuses (right / wrong / error / not attempted) and its misconception
view, on verdicts the grader gives to learner-style answers."""
import csv
import subprocess
import sys

import pytest
from nbformat.v4 import new_code_cell

from autograder import score
from autograder.diagnose import CODES
from autograder.exercises import EXERCISES
from autograder.grader import report
from conftest import solution_cells

RELEASED = "# YOUR CODE HERE\n"


def edit(old, new, exercise="ex1"):
    cells = dict(solution_cells(exercise))
    cell = next(c for c, s in cells.items() if old in s)
    cells[cell] = cells[cell].replace(old, new, 1)
    return cells


# learner -> (exercise, answer cells): a small class, each with a mistake of its own
CLASS = {
    "ada": ("ex1", solution_cells("ex1")),
    "bo": ("ex1", edit("dlogprobs[range(n), Yb] = -1.0 / n", "dlogprobs[range(n), Yb] = -1.0")),
    "cy": ("ex1", edit("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)", "dcounts_sum_inv = (counts * dprobs).sum(1)")),
    "di": ("ex1", edit("dW2 = h.T @ dlogits", "dW2 = dlogits.T @ h")),
    "ed": ("ex1", edit("dbndiff2 = (1.0 / (n - 1))", "dbndiff2 = (1.0 / n)")),
    "fay": ("ex1", edit("dlogprobs[range(n), Yb] = -1.0 / n", "dlogprobs[range(n), Yb] = -1.0 / 32")),
    "gus": ("ex1", edit("dbnbias = dhpreact.sum(0, keepdim=True)", "dbn_bias = dhpreact.sum(0, keepdim=True)")),
    "hal": ("ex1", edit("dW2 = h.T @ dlogits", "dW2 = h.T @@ dlogits")),
    "ivy": ("ex1", edit("dlogits = dnorm_logits.clone()", "dlogits = ref['logits']")),
    "jo": ("ex1", {**solution_cells("ex1"), "ex1_first_layer": RELEASED}),
    "kim": ("ex1", edit("dW2 = h.T @ dlogits", "dW2 = dlogits.T @ h")),
    "lu": ("ex1", edit("dh = dlogits @ W2.T", "dh = -(dlogits @ W2.T)")),
}


@pytest.fixture(scope="module")
def table():
    """Report rows as report.rows makes them, from the verdicts the graded test cells show."""
    out = []
    for student, (key, cells) in CLASS.items():
        ex = EXERCISES[key]
        verdicts = score.grade(key, list(cells.items()))
        learner = {c: new_code_cell(s) for c, s in cells.items()}
        release = {c: new_code_cell(RELEASED) for c in cells}
        for v in verdicts.values():  # as the trusted grader writes them
            learner[v.test_id] = graded_cell(v)
        out += [report.row(student, ex, v.name, v.points, v.max_points, learner, release) for v in verdicts.values()]
    return out


def graded_cell(v):
    """A graded test cell as the trusted grader leaves it (trusted.graded_outputs)."""
    from autograder.grader.trusted import graded_outputs
    return new_code_cell("", outputs=graded_outputs(v, v.max_points))


def statuses(table, student):
    return {r["item"]: r["status"] for r in table if r["student"] == student and r["status"] != "right"}


def test_errors_are_apart_from_blanks_and_wrong_answers(table):
    assert statuses(table, "ada") == {}
    assert statuses(table, "bo") == {"logprobs": "wrong"}
    assert statuses(table, "fay") == {"logprobs": "wrong"}            # hard-coded: a value, wrong
    assert statuses(table, "gus") == {"bnbias": "error"}               # a typo in the name
    assert statuses(table, "hal") == {"W2": "error"}                   # a syntax error
    assert statuses(table, "ivy") == {"logits": "refused"}             # reads ref: not run
    assert statuses(table, "jo") == dict.fromkeys(EXERCISES["ex1"].answer_cells["ex1_first_layer"], "not attempted")


def test_each_named_mistake_is_counted_with_its_learners_and_gradients(table):
    named = {m["mistake"]: m for m in report.mistakes(table)}
    assert named["transposed"]["learners"] == 2 and named["transposed"]["gradients"] == "ex1 dW2 (2)"
    assert named["factor_n"]["gradients"] == "ex1 dlogprobs (1)"
    assert named["keepdim"]["gradients"] == "ex1 dcounts_sum_inv (1)"
    assert named["bessel"]["gradients"] == "ex1 dbndiff2 (1)"
    assert named["hard_coded"]["gradients"] == "ex1 dlogprobs (1)"
    assert named["sign"]["gradients"] == "ex1 dh (1)"
    assert named["typo"]["gradients"] == "ex1 dbnbias (1)"
    assert named["reference"]["gradients"] == "ex1 dlogits (1)"
    assert list(named)[0] == "transposed"  # most learners first
    assert {m["mistake"] for m in report.mistakes(table)} <= CODES


def test_every_diagnosis_the_course_writes_has_a_kind():
    from autograder.diagnose import _shape, diagnose
    import torch
    t = torch.randn(32, 1)
    texts = [diagnose(-t, t, 32), diagnose(t * 32, t, 32), diagnose(t * 31 / 32, t, 32), diagnose(t.view(32), t, 32),
             _shape(torch.zeros(32, 64), torch.zeros(1, 64)), _shape(torch.zeros(1, 64), torch.zeros(64))]
    assert [x.code for x in texts] == ["sign", "factor_n", "bessel", "keepdim", "broadcast", "keepdim"]


def test_the_report_writes_the_misconception_csv_and_plot(table, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "rows", lambda *a: table)
    (tmp_path / "gradebook.db").write_text("")
    report.main(["--course", str(tmp_path), "--csv", str(tmp_path / "g.csv"), "--plot", str(tmp_path / "m.png"),
                 "--mistakes-csv", str(tmp_path / "k.csv"), "--mistakes-plot", str(tmp_path / "k.png")])
    rows = list(csv.DictReader(open(tmp_path / "k.csv")))
    assert rows[0]["mistake"] == "transposed" and rows[0]["learners"] == "2"
    assert {r["status"] for r in csv.DictReader(open(tmp_path / "g.csv"))} == {"right", "wrong", "error", "refused",
                                                                              "not attempted"}
    assert (tmp_path / "k.png").stat().st_size > 5000 and (tmp_path / "m.png").stat().st_size > 5000
    out = capsys.readouterr().out
    assert "1 error" not in out and "error" in out and "learner(s): transposed: ex1 dW2 (2)" in out


def test_the_feedback_index_lists_each_gradients_score_and_verdict():
    from nbformat.v4 import new_notebook
    from autograder.grader.feedback import index_with_verdicts
    meta = lambda gid: {"nbgrader": {"grade": True, "grade_id": gid, "points": 1}}  # noqa: E731
    wrong, right = score.Verdict("ex1", "W2", 1), score.Verdict("ex1", "C", 1)
    wrong.judged(score.WRONG, "does not match on the notebook's batch: transposed: x")
    right.judged(score.RIGHT, "", ok=True)
    nb = new_notebook(cells=[graded_cell(wrong), graded_cell(right)])
    for cell, gid in zip(nb.cells, ["test_ex1_dW2", "test_ex1_dC"]):
        cell.metadata = meta(gid)
    page = ('<li><a href="#test_ex1_dW2">Test cell</a> (Score: 0.0 / 1.0)</li>\n'
            '<li><a href="#test_ex1_dC">Test cell</a> (Score: 1.0 / 1.0)</li>')
    assert index_with_verdicts(page, nb).splitlines() == [
        '<li><a href="#test_ex1_dW2">dW2</a> (Score: 0.0 / 1.0): does not match on the notebook&#x27;s batch: transposed: x</li>',
        '<li><a href="#test_ex1_dC">dC</a> (Score: 1.0 / 1.0)</li>']


def test_the_report_reads_the_verdicts_data_not_their_words():
    """Do status, mistake and message come from the verdict's data, whatever its text says (a
    reworded message changes nothing), and does a graded cell without verdict data say so?"""
    ex = EXERCISES["ex1"]
    v = score.Verdict("ex1", "W2", 1)
    v.judged(score.WRONG, "transposed: the values are right, the shape is swapped", mistake="transposed")
    cell = graded_cell(v)
    cell.outputs[0].text = "dW2: raised NameError: a typo? Bessel's correction\n"  # words that once classified
    learner, release = {ex.test_id("W2"): cell, "ex1_x": new_code_cell("mine")}, {"ex1_x": new_code_cell(RELEASED)}
    r = report.row("ann", ex, "W2", 0.0, 1.0, learner, release)
    assert (r["status"], r["mistake"], r["message"]) == ("wrong", "transposed", v.message)
    del cell.outputs[1]
    r = report.row("ann", ex, "W2", 0.0, 1.0, learner, release)
    assert (r["status"], r["mistake"], r["message"]) == ("grader error", "", report.NO_VERDICT)


def test_the_verdicts_data_and_the_feedback_pages_import_no_torch():
    """A verdict as data (verdict.py) and the feedback's page exporter, which reads it, load no
    torch: `nbgrader generate_feedback` does not spend a second importing it."""
    probe = "import sys, autograder.verdict, autograder.grader.feedback; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stdout + run.stderr
