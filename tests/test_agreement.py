"""The check row, Validate and the grade agree, verdict for verdict, on learner-style answers.

Each fixture is run three ways, as a learner and the instructor would meet it:
- the check cells, in a kernel-like namespace: the release notebook's setup cells, then the
  answer cells run as Jupyter runs them (a cell stops at its first failing line), then the
  exercise's check (`report`), its sources found from the kernel's history;
- Validate: `require` for every graded item under NBGRADER_VALIDATING, on the saved notebook;
- the trusted grade: the sandboxed replay (all fixtures in one sandboxed child).
"""
import contextlib
import itertools
import io
import os
import re

import nbformat
import pytest
import torch

from autograder.check import report
from autograder.exercises import EXERCISES
from autograder.hidden import NotYet, answer_sources_live, require
from conftest import ROOT, judged_in_batches, solution_cells

RELEASE = ROOT / "release" / "backprop_ninja"


def edit(exercise, old, new, cell=None, base=None):
    cells = dict(base or solution_cells(exercise))
    cell = cell or next(c for c, src in cells.items() if old in src)
    assert old in cells[cell], old
    cells[cell] = cells[cell].replace(old, new, 1)
    return exercise, cells


BIG = {"ex1_loss_chain": "\n\n".join(solution_cells("ex1").values()),
       "ex1_second_layer": "", "ex1_batchnorm": "", "ex1_first_layer": ""}

FIXTURES = {
    "solution": ("ex1", solution_cells("ex1")),
    "one_big_cell": ("ex1", BIG),
    "ref_copied": edit("ex1", "dlogits = dnorm_logits.clone()", "dlogits = ref['logits'].clone()"),
    "ref_get": edit("ex1", "dh = dlogits @ W2.T", "dh = ref.get('h')"),
    "dot_grad": edit("ex1", "dW2 = h.T @ dlogits", "dW2 = W2.grad"),
    "helper_reads_ref": edit("ex1", "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)",
                             "def truth(k):\n    return ref[k]\ndbngain = truth('bngain')"),
    "hard_coded_32": edit("ex1", "dlogprobs[range(n), Yb] = -1.0 / n", "dlogprobs[range(n), Yb] = -1.0 / 32"),
    "loop_range_32": edit("ex1", "for k in range(Xb.shape[0]):", "for k in range(32):"),
    "forgot_keepdim": edit("ex1", "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
                           "dcounts_sum_inv = (counts * dprobs).sum(1)"),
    "typo_dbn_bias": edit("ex1", "dbnbias = dhpreact.sum(0, keepdim=True)", "dbn_bias = dhpreact.sum(0, keepdim=True)"),
    "first_line_fails": ("ex1", {c: "print(not_defined_anywhere)\n" + s for c, s in solution_cells("ex1").items()}),
    "sign_flipped": edit("ex1", "dh = dlogits @ W2.T", "dh = -(dlogits @ W2.T)"),
    "factor_n": edit("ex1", "dhprebn += 1.0 / n *", "dhprebn += 1.0 *"),
    "bessel_n": edit("ex1", "dbndiff2 = (1.0 / (n - 1))", "dbndiff2 = (1.0 / n)"),
    "transposed": edit("ex1", "dW2 = h.T @ dlogits", "dW2 = dlogits.T @ h"),
    "keepdim_row_for_b1": edit("ex1", "db1 = dhprebn.sum(0)", "db1 = dhprebn.sum(0, keepdim=True)"),
    "alias_no_clone": edit("ex1", "dhprebn = dbndiff.clone()", "dhprebn = dbndiff"),
    "assign_not_accumulate": edit("ex1", "dC[ix] += demb[k, j]", "dC[ix] = demb[k, j]"),
    "syntax_error": edit("ex1", "dW2 = h.T @ dlogits", "dW2 = h.T @@ dlogits"),
    "alias_upstream_wrong": edit("ex1", "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                                 "dprobs = (1.0 / probs) * dlogprobs",
                                 "dlp = torch.zeros_like(logprobs)\ndlp[range(n), Yb] = -1.0 / 32\ndlogprobs = dlp\n"
                                 "dprobs = (1.0 / probs) * dlp"),
    "view_hard_coded": edit("ex1", "demb = dembcat.view(emb.shape)", "demb = dembcat.view(32, 3, 10)"),
    "typo_dlogits_maxes": edit("ex1", "dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)\ndlogits += F.one_hot("
                               "logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
                               "dlogits_maxes = (-dnorm_logits).sum(1, keepdim=True)\ndlogits += F.one_hot("
                               "logits.max(1).indices, num_classes=logits.shape[1]) * dlogits_maxes"),
    "db2_keepdim": edit("ex1", "db2 = dlogits.sum(0)", "db2 = dlogits.sum(0, keepdim=True)"),
    "one_go_dlogits_in_ex1": edit("ex1", "dlogits = dnorm_logits.clone()",
                                  "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\npass"),
    "ex2_right": ("ex2", solution_cells("ex2")),
    "ex2_hard_coded": edit("ex2", "dlogits /= n", "dlogits /= 32"),
    "ex2_ref": ("ex2", {"ex2_dlogits": "dlogits = ref['logits']"}),
    "ex2_blank": ("ex2", {"ex2_dlogits": "# YOUR CODE HERE\n"}),
    "ex3_bessel": edit("ex3", "n / (n - 1) * bnraw", "bnraw"),
    "ex4_right": ("ex4", solution_cells("ex4")),
    "ex4_hard_coded": edit("ex4", "dlogits /= n", "dlogits /= 32"),
    "ex4_tanh_slip": edit("ex4", "dhpreact = torch.addcmul(dh, dh * h, h, value=-1)", "dhpreact = (1 - h) * dh"),
    "ex4_dC_assigned": edit("ex4", "dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), dembcat.view(-1, C.shape[1]))",
                            "dC = torch.zeros_like(C)\n    dC[Xb.view(-1)] = dembcat.view(-1, C.shape[1])"),
    "missing_second_path": edit("ex1", "dcounts += torch.ones_like(counts) * dcounts_sum", "pass"),
}


@pytest.fixture(scope="module")
def setups():
    """{exercise: (release notebook, namespace after its setup cells)}."""
    out = {}
    for key in ("ex1", "ex2", "ex3", "ex4"):
        nb = nbformat.read(RELEASE / EXERCISES[key].notebook, as_version=4)
        ns = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.metadata["nbgrader"]["grade_id"].startswith("setup_"):
                    exec(cell.source, ns)
        out[key] = nb, ns
    return out


def saved(nb, cells):
    nb = nbformat.from_dict(nb)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") in cells:
            c.source = cells[c.metadata["nbgrader"]["grade_id"]]
    return nb


def run_cell(src, ns):
    """As Jupyter runs a cell: it stops at its first failing line."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(src, "<cell>", "exec"), ns)
    except Exception:
        pass


ROW = re.compile(r"^(\w+)\s+\|.*\| step: (right|WRONG)")


def check_verdicts(exercise, cells, setup, history_only=True):
    """{name: (ok, message)} from the check cells, run after the answer cells in a kernel."""
    nb, base = setup
    ns = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in base.items()}
    history = []
    for cell in EXERCISES[exercise].answer_cells:
        run_cell(cells.get(cell, ""), ns)
        history.append(cells.get(cell, ""))
    out = io.StringIO()
    names = [k for ks in EXERCISES[exercise].answer_cells.values() for k in ks]
    ran = {} if history_only else dict(cells)
    where = dict(history=history, ran=ran, notebook=os.devnull + "-none")
    with contextlib.redirect_stdout(out):
        if exercise == "ex4":  # its own check cell, which calls report on backward's gradients
            check = next(c.source for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "ex4_check_first_step")
            exec(check, {**ns, "report": lambda *a: report(*a, **where)})
        else:
            report(names, ns, ns["ref"], exercise, **where)
    lines = out.getvalue().splitlines()
    got = {}
    for i, line in enumerate(lines):
        m = ROW.match(line)
        if m:
            ok = m.group(2) == "right"
            why = " ".join(itertools.takewhile(lambda l: l.startswith(" " * 18), lines[i + 1:]))
            got[m.group(1)] = (ok, "" if ok else squeeze(why.split("^ ")[-1]))
    return got


def validate_verdicts(exercise, cells, setup, tmp_path, monkeypatch):
    """{name: (ok, message)} from require under NBGRADER_VALIDATING, on the saved notebook."""
    nbformat.write(saved(setup[0], cells), tmp_path / EXERCISES[exercise].notebook)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBGRADER_VALIDATING", "1")
    got = {}
    ex = EXERCISES[exercise]
    for k in {**ex.grads, **ex.extra_tests}:
        try:
            require(exercise, k)
            got[k] = (True, "")
        except NotYet as e:
            text = " ".join(line.strip() for line in e._render_traceback_())
            got[k] = (False, text.split("): ", 1)[1] if "): " in text else text)
    return got


@pytest.fixture(scope="module")
def trusted():
    """{fixture: {name: (ok, message)}} from the trusted replay, all in one sandboxed server."""
    judged = judged_in_batches({name: (ex, list(cells.items())) for name, (ex, cells) in FIXTURES.items()},
                               size=len(FIXTURES))
    return {name: {k: (v.ok, v.message if not v.ok else "") for k, v in judged[name].items()} for name in FIXTURES}


def squeeze(text):
    return " ".join(text.split())


@pytest.mark.parametrize("fixture", FIXTURES)
def test_check_validate_and_grade_agree(fixture, setups, trusted, tmp_path, monkeypatch):
    ex, cells = FIXTURES[fixture]
    grade = trusted[fixture]
    validate = validate_verdicts(ex, cells, setups[ex], tmp_path, monkeypatch)
    assert {k: (ok, squeeze(m)) for k, (ok, m) in validate.items()} == \
           {k: (ok, squeeze(m)) for k, (ok, m) in grade.items()}
    check = check_verdicts(ex, cells, setups[ex])
    assert check == {k: (ok, squeeze(m)) for k, (ok, m) in grade.items() if k in check}
    assert set(check) == set(EXERCISES[ex].grads)


# What an independent own-step label says each fixture loses (every other gradient is right).
LOSES = {
    "solution": set(), "one_big_cell": set(), "ref_copied": {"logits"}, "ref_get": {"h"},
    "dot_grad": {"W2"}, "helper_reads_ref": {"bngain"}, "hard_coded_32": {"logprobs"},
    "loop_range_32": {"C"}, "forgot_keepdim": {"counts_sum_inv"}, "typo_dbn_bias": {"bnbias"},
    "first_line_fails": set(), "sign_flipped": {"h"}, "factor_n": {"hprebn"}, "bessel_n": {"bndiff2"},
    "transposed": {"W2"}, "keepdim_row_for_b1": {"b1"}, "alias_no_clone": set(),
    "assign_not_accumulate": {"C"}, "syntax_error": {"W2"}, "ex2_right": set(),
    "ex2_hard_coded": {"logits"}, "ex2_ref": {"logits"}, "ex2_blank": {"logits"},
    "ex3_bessel": {"hprebn"}, "ex4_right": set(), "alias_upstream_wrong": {"logprobs"},
    "view_hard_coded": {"emb"}, "typo_dlogits_maxes": {"logit_maxes"}, "db2_keepdim": {"b2"},
    "one_go_dlogits_in_ex1": set(),
    "ex4_hard_coded": {"C", "W1", "W2", "b2", "bngain", "bnbias"},
    "ex4_tanh_slip": {"C", "W1", "bngain", "bnbias", "training"}, "ex4_dC_assigned": {"C", "training"},
    "missing_second_path": {"counts"},
}


@pytest.mark.parametrize("fixture", FIXTURES)
def test_each_mistake_costs_its_own_step_and_says_why(fixture, trusted):
    assert {k for k, (ok, _) in trusted[fixture].items() if not ok} == LOSES[fixture]


@pytest.mark.parametrize("fixture, words", [
    ("ref_copied", "refused: reads the notebook's autograd reference (`ref`"),
    ("ref_get", "refused: reads the notebook's autograd reference (`ref`"),
    ("dot_grad", "refused: reads autograd's gradient (`.grad`"),
    ("helper_reads_ref", "reads the notebook's autograd reference"),
    ("hard_coded_32", "right on the notebook's batch of 32 but not on other batch sizes"),
    ("typo_dbn_bias", "(you wrote dbn_bias: a typo?)"),
    ("forgot_keepdim", "without keepdim=True"),
    ("alias_upstream_wrong", "right on the notebook's batch of 32 but not on other batch sizes"),
    ("view_hard_coded", "right on the notebook's batch of 32 but not on other batch sizes"),
    ("typo_dlogits_maxes", "(you wrote dlogits_maxes: a typo?)"),
    ("ex4_tanh_slip", "wrong only because dhpreact (line 31) is wrong: tanh's derivative is 1 - h**2"),
    ("ex4_dC_assigned", "(dC) is wrong even given the true upstream gradients"),
    ("missing_second_path", "counts is used twice"),
])
def test_the_verdicts_say_why(fixture, words, trusted):
    assert any(words in m for ok, m in trusted[fixture].values() if not ok), trusted[fixture]


def test_a_right_step_after_a_wrong_upstream_is_right_in_the_check(setups):
    """The issue's case: after a forgotten keepdim in dcounts_sum_inv, dcounts_sum (right on
    the true upstream) differs end to end; the check says its step is right, and why it differs."""
    ex, cells = FIXTURES["forgot_keepdim"]
    nb, base = setups[ex]
    ns = dict(base)
    run_cell(cells["ex1_loss_chain"], ns)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report(EXERCISES[ex].answer_cells["ex1_loss_chain"], ns, ns["ref"], ex,
               history=[cells["ex1_loss_chain"]], ran={}, notebook=os.devnull + "-none")
    row = next(line for line in out.getvalue().splitlines() if line.startswith("counts_sum "))
    assert "approximate: False" in row and row.endswith("step: right")
    assert "^ right: your value differs only because an earlier gradient is wrong" in out.getvalue()
    assert "needs a sum" not in out.getvalue()


def test_the_check_prefers_the_cell_as_run_by_its_id_and_says_when_it_is_not_saved(setups, tmp_path):
    """By cell id (JupyterLab): the cell as last run counts, and the check says the saved file
    differs; by history alone: the latest input assigning the cell's gradients."""
    ex = "ex2"
    nbformat.write(saved(setups[ex][0], {"ex2_dlogits": "dlogits = F.softmax(logits, 1)"}), tmp_path / "ex2_cross_entropy.ipynb")
    right = solution_cells(ex)["ex2_dlogits"]
    nb = str(tmp_path / "ex2_cross_entropy.ipynb")
    sources, notes = answer_sources_live(ex, history=["x = 1", right, "rows = 2"], ran={"ex2_dlogits": right}, notebook=nb)
    assert sources == [("ex2_dlogits", right)] and "save the notebook" in notes[0]
    sources, notes = answer_sources_live(ex, history=[right, "dlogits.shape"], ran={}, notebook=nb)
    assert sources == [("ex2_dlogits", right)] and notes
    sources, notes = answer_sources_live(ex, history=["dlogits = F.softmax(logits, 1)"], ran={}, notebook=nb)
    assert sources == [("ex2_dlogits", "dlogits = F.softmax(logits, 1)")] and not notes


def test_nbgrader_validate_shows_every_diagnosis_whole():
    """nbgrader's Validator cuts every line of an error at `width - 3` characters: NotYet's
    lines fit, and together they hold the whole message."""
    from nbgrader.validator import Validator
    message = ("dcounts_sum_inv: WRONG (0/1): does not match on the notebook's batch: shape (32,), "
               "expected (32, 1): a sum over dimension 1 without keepdim=True?")
    shown = Validator()._indent("\n".join(NotYet(message)._render_traceback_()))
    assert "..." not in shown
    assert squeeze(shown) == squeeze(message)


def test_a_right_step_changed_later_through_an_alias_is_right_and_the_check_says_what_happened(setups):
    ex, cells = FIXTURES["alias_no_clone"]
    ns = dict(setups[ex][1])
    for cell in EXERCISES[ex].answer_cells:
        run_cell(cells[cell], ns)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report(["bndiff"], ns, ns["ref"], ex, history=list(cells.values()), ran={}, notebook=os.devnull + "-none")
    assert "approximate: False" in out.getvalue() and "an alias without .clone()" in squeeze(out.getvalue())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 100  # fits the notebook's width


def test_validate_finds_a_renamed_notebook(setups, tmp_path, monkeypatch):
    """A notebook saved as `ex2_cross_entropy (1).ipynb` (a second download) is validated as
    the grade would judge it, not reported missing."""
    nbformat.write(saved(setups["ex2"][0], {"ex2_dlogits": "dlogits = ref['logits']"}), tmp_path / "ex2_cross_entropy (1).ipynb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBGRADER_VALIDATING", "1")
    with pytest.raises(NotYet, match="refused: reads the notebook's autograd reference"):
        require("ex2", "logits")
