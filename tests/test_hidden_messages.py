"""What a hidden case says (issue 27): only the grader's words. An error on a hidden case is
reported as one of the grader's fixed outcomes, decided by the exception's real type; nothing
the learner's code chose on a hidden case (an exception's name or text, the line it raised
at, a warning, a class's name, a process's exit code or last line) reaches the verdict, the
scores CSV or the feedback. The notebook's own batch keeps its line and message."""
import csv
import io
import re

import nbformat
import pytest
import torch

from autograder import score
from autograder.diagnose import diagnose
from autograder.grader import replay_server, sandbox
from autograder.grader.course import ROOT as COURSE
from autograder.grader.trusted import score_rows
from conftest import judged_in_batches

RIGHT = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"
HIDDEN_SIZES = sorted({c.n for c in score.make_cases("ex2") if c.name != "notebook"})  # [19, 48]
NUMERICAL = "a numerical gradient (the loss evaluated on perturbed inputs) is not a hand-derived one"


def classes_named_after_sizes():
    """A class for every batch size a hidden case could have, raised by the size it is named after."""
    sizes = range(2, 130)
    return ("".join(f"class K{s}(RuntimeError):\n    pass\n" for s in sizes)
            + "KS = {" + ", ".join(f"{s}: K{s}" for s in sizes) + "}\n")


def raise_at_the_line_of_the_size():
    """`if n == s: raise` at line s of the cell, for every s a hidden case could have (not 32)."""
    lines = ["def probs():"] + [""] * 128
    for s in range(2, 129):
        if s != 32:
            lines[s - 1] = f"    if n == {s}: raise ValueError()"
    return "\n".join(lines) + "\n    return F.softmax(logits, 1)\ndlogits = probs()\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"


def raising(condition_and_raise):
    """Exercise 2's right answer, whose one statement raises where the given lines raise."""
    return ("def probs():\n" + "".join("    " + line + "\n" for line in condition_and_raise.splitlines())
            + "    return F.softmax(logits, 1)\ndlogits = probs()\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n")


# Each raises on the hidden cases only, in a way that could carry their size.
HOSTILE = {
    "exception_class_named_after_the_size": classes_named_after_sizes() + raising(
        "if n != 32:\n    raise KS[n]('')"),
    "exception_text_with_the_shape": raising(
        "if n != 32:\n    raise ValueError('shape ' + str(tuple(logits.shape)) + ' ' + str(Yb.tolist()))"),
    "raise_at_a_line_chosen_by_the_size": raise_at_the_line_of_the_size(),
    "warning_carrying_the_size": raising(  # torch warns: 'Using a target size (torch.Size([48, 1]))'
        "w = F.mse_loss(torch.zeros(n), torch.zeros(n, 1))\nif n != 32:\n    z = torch.zeros(n) + torch.zeros(n + 1)"),
    "subclass_of_a_grader_category_by_name": (  # a learner's StatementTimeout is just an error
        "class StatementTimeout(RuntimeError):\n    pass\n" + raising("if n != 32:\n    raise StatementTimeout('K48')")),
}


@pytest.fixture(scope="module")
def judged():
    return judged_in_batches({name: ("ex2", [("ex2_dlogits", src)]) for name, src in HOSTILE.items()})


def hidden_figures(text):
    """The hidden batch sizes found in text as numbers of their own."""
    return [n for n in HIDDEN_SIZES if re.search(rf"(?<![\d.]){n}(?![\d.])", text)]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_is_a_hidden_cases_error_said_only_in_the_graders_words(name, judged):
    """Is the verdict (and the feedback's summary) the grader's sentence for "an error on a
    hidden case", with no exception name, text, line or hidden figure of the learner's?"""
    v = judged[name]["logits"]
    assert not v.ok and v.points == 0
    assert v.message == ("right on the notebook's batch of 32 but not on other batch sizes: is the batch "
                         "size hard-coded? (raised an error on a hidden case)"), v.message
    for text in (v.message, v.summary()):
        assert hidden_figures(text) == [] and "line" not in text and "Error" not in text and "K" not in text


def test_does_the_notebooks_own_batch_keep_its_line_and_message_and_a_hidden_case_neither():
    """Is an error on the notebook's own (public) batch quoted with its class, text and line,
    while the same error on each hidden case leaves the sandbox as the grader's sentence only?"""
    src = "def f():\n    raise ValueError('mine ' + str(n))\ndlogits = f()"
    cases = score.make_cases("ex2")
    collector = score.Collector("ex2", cases)
    errors = replay_server.run_many({"ex2": score.build_job("ex2", score.statements([("ex2_dlogits", src)]), cases)},
                              {"ex2": collector})["ex2"]
    assert errors["notebook/true/dlogits"] == "ValueError: mine 32 (line 2)"
    assert {k: v for k, v in errors.items() if not k.startswith("notebook/")} == {
        f"{c.name}/true/dlogits": "raised an error on a hidden case" for c in cases if c.name != "notebook"}
    v = score.score("ex2", collector, errors)["logits"]
    assert v.message == "not defined: ValueError: mine 32 (line 2)", v.message


def test_is_a_timeout_on_a_hidden_case_said_as_running_out_of_time(monkeypatch):
    """Is a statement stopped by the time limit on a hidden case "ran out of time", decided by
    the grader's own timeout (not by a name), with nothing else?"""
    monkeypatch.setitem(sandbox.LIMITS, "statement_seconds", 1)
    src = raising("while n != 32:\n    pass")
    v = judged_in_batches({"slow": ("ex2", [("ex2_dlogits", src)])})["slow"]["logits"]
    replay_server.stop_server()  # the next test's server has the usual limits
    assert v.message.endswith("(ran out of time on a hidden case: stopped after the time limit)"), v.message
    assert hidden_figures(v.message) == []


def test_is_a_numerical_answer_on_a_hidden_case_said_without_its_line_or_names():
    """Is finite differences on a hidden case only said as the grader's sentence, without the
    line it was at or the learner's names (a variable named after the size)?"""
    src = ("if n == 48:\n    K48 = 1e-3\n    x = logits.double()\n    dlogits = torch.zeros_like(x)\n"
           "    for i in range(n):\n        for j in range(vocab_size):\n"
           "            xp = x.clone(); xp[i, j] += K48\n            xm = x.clone(); xm[i, j] -= K48\n"
           "            dlogits[i, j] = (F.cross_entropy(xp, Yb) - F.cross_entropy(xm, Yb)) / (2 * K48)\n"
           "    dlogits = dlogits.float()\nelse:\n" + "".join("    " + line + "\n" for line in RIGHT.splitlines()))
    v = judged_in_batches({"numerical": ("ex2", [("ex2_dlogits", src)])})["numerical"]["logits"]
    assert v.message == NUMERICAL + " (on a hidden case)", v.message


def test_does_a_processs_exit_code_or_last_line_stay_out_of_the_verdict():
    """Is the end of the process running the answers said without its exit code, a signal's
    number or the line it wrote last (each the learner's to choose, on a hidden case too)?"""
    cases = score.make_cases("ex2")
    for why in ("the process running your code exited with code 48",
                "the process running your code was stopped by signal 19",
                "the process running your code crashed: K48 shape (48, 27)"):
        v = score.score("ex2", score.Collector("ex2", cases), {"process": why})["logits"]
        assert hidden_figures(v.message) == [] and "K48" not in v.message, v.message
        assert v.message.startswith("not defined: the process running your code")


def test_does_a_diagnosis_on_a_hidden_case_name_the_mistake_without_the_answers_figures():
    """Is a mistake on a hidden case named without a figure the learner's tensor chose (its
    shape, an unnamed factor, which rows are wrong), and with them on the notebook's batch?"""
    t = torch.randn(48, 27)
    factor, rows, shape = t * 48.5, t.clone(), torch.zeros(19, 27)
    rows[19] += 1
    assert "48.5" in diagnose(factor, t, 48) and diagnose(factor, t, 48, figures=False) == "off by a constant factor"
    assert diagnose(rows, t, 48, figures=False) == "right except for some rows"
    assert "(19, 27)" in diagnose(shape, t, 48)
    assert diagnose(shape, t, 48, figures=False) == "wrong shape, expected (48, 27)"
    assert diagnose(t * 48, t, 48, figures=False) == "off by a constant factor of n"


def test_is_nothing_of_a_hidden_case_in_the_scores_csv(tmp_path):
    """Is the scores-only CSV row (what --scores-only writes) free of the hidden figures and
    of the learner's exception, for an answer that raises one named after a hidden size?"""
    release = COURSE / "release" / "backprop_ninja"
    nb = nbformat.read(release / "ex2_cross_entropy.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex2_dlogits":
            cell.source = HOSTILE["exception_class_named_after_the_size"]
    (tmp_path / "sub").mkdir()
    nbformat.write(nb, tmp_path / "sub" / "ex2_cross_entropy.ipynb")
    rows = score_rows("someone", tmp_path / "sub", release, score.PRACTICE)
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    text = out.getvalue()
    assert "ex2" in text and "raised an error on a hidden case" in text
    assert hidden_figures(text) == [] and "K48" not in text and "K19" not in text, text



def test_does_exercise_4s_training_say_why_backward_failed_on_the_notebooks_batch():
    """Is the short training run's verdict, when backward raised on the notebook's own batch
    too, that batch's error (public), not a hidden run's sentence?"""
    from autograder.grader.trusted import trusted_verdicts
    src = "def backward(Xb, Yb, parameters, cache):\n    raise ValueError('not yet ' + str(Xb.shape[0]))"
    v = trusted_verdicts("ex4", [("ex4_backward", src)])["training"]
    assert v.message == "the short training run did not complete with your backward pass: ValueError: not yet 32"


@pytest.mark.parametrize("answer", ["K48", score.UNJUDGED + "a K48, not a plain tensor"])
def test_is_a_hidden_cases_non_tensor_answer_said_without_its_class(answer):
    """Is a hidden case's answer that is no tensor (its class's name, or why it cannot be
    judged, as the sandboxed child reports it) said without that name, where the hidden case
    has the notebook's batch size (so no other message comes first)?"""
    cases = score.make_cases("ex2")
    hidden = next(c for c in cases if c.name != "notebook")
    hidden.n = 32
    collector = score.Collector("ex2", cases)
    for c in cases:
        collector.give(c.name, "true", "dlogits", answer if c is hidden else c.truth["logits"])
    v = score.score("ex2", collector, score.redacted({f"{hidden.name}/true/dlogits": "tensor"}))["logits"]
    assert not v.ok and "K48" not in v.message and "on a hidden case" in v.message, v.message
