"""A learner's error in an answer cell, explained where it happens, and Run All going on to the
check below; the check cell finding the notebook it runs in. Learner-style notebooks (the
release, with answers typed in) run in a real kernel, as JupyterLab's Run All runs them: cell
after cell, stopping at the first reply whose status is an error (nbclient without
allow_errors does exactly that)."""
import json
import shutil

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from autograder.exercises import EXERCISES
from conftest import ROOT
from solutions import ALL

RELEASE = ROOT / "release" / "backprop_ninja"
INTERNALS = ("autograder", "hidden", "score.", "replay", "_explain", "Traceback")


def _notebook(exercise, answers, until):
    """The release notebook of an exercise with the given answer cells typed in (the others as
    the instructor wrote them, or the stub), cut after the cell `until`."""
    nb = nbformat.read(RELEASE / EXERCISES[exercise].notebook, as_version=4)
    for cell in nb.cells:
        if cell.get("id") in answers:
            cell.source = answers[cell.id]
    nb.cells = nb.cells[:[c.get("id") for c in nb.cells].index(until) + 1]
    return nb


def _run_all(nb, folder):
    """Run All as JupyterLab does: stops (CellExecutionError) at the first error reply."""
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    return {c.get("id"): c for c in nb.cells}


def _said(cell):
    return " ".join("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").split())


def _explained(cell):
    """The traceback, then the explanation under it, with nothing of the grader in it."""
    kinds = [o.output_type for o in cell.outputs]
    assert "error" in kinds and "stream" in kinds[kinds.index("error"):], kinds
    text = _said(cell)
    assert "What went wrong" in text and not [w for w in INTERNALS if w in text], text
    return text


LOSS_CHAIN = ALL["ex1"]["ex1_loss_chain"]


def test_a_sum_without_keepdim_is_explained_and_run_all_reaches_the_check(tmp_path):
    """Is `dcounts_sum_inv` summed without keepdim=True, then used, explained under the
    traceback as a sum without keepdim, and does Run All reach the check, which says so too?"""
    slip = LOSS_CHAIN.replace("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
                              "dcounts_sum_inv = (counts * dprobs).sum(1)")
    slip = slip.replace("dcounts = counts_sum_inv * dprobs\n", "").replace(
        "dcounts += torch.ones_like", "dcounts = counts_sum_inv * dprobs + torch.ones_like")
    cells = _run_all(_notebook("ex1", {"ex1_loss_chain": slip}, "ex1_check_loss_chain"), tmp_path)
    text = _explained(cells["ex1_loss_chain"])
    assert "`dcounts_sum_inv` is (32,) where `counts_sum_inv` is (32, 1)" in text, text
    assert "a sum over dimension 1 without keepdim=True?" in text, text
    check = _said(cells["ex1_check_loss_chain"])
    assert "without keepdim=True" in check and "step: WRONG" in check, check


def test_a_transposed_matmul_is_explained(tmp_path):
    """Is `dlogits @ W2` (W2 not transposed) explained with both shapes and the missing .T?"""
    cells = _run_all(_notebook("ex1", {"ex1_loss_chain": LOSS_CHAIN,
                                       "ex1_second_layer": "dh = dlogits @ W2\n"},
                               "ex1_check_second_layer"), tmp_path)
    text = _explained(cells["ex1_second_layer"])
    assert "`dlogits` is (32, 27) and `W2` is (64, 27)" in text, text
    assert "`W2` transposed ((27, 64)) would fit" in text, text
    assert "dh" in _said(cells["ex1_check_second_layer"])


def test_a_typo_in_a_name_is_explained_with_the_closest_name(tmp_path):
    """Is a NameError for `dlogprob` explained as a typo for `dlogprobs`, and does the check
    below still run?"""
    typo = LOSS_CHAIN.replace("dprobs = (1.0 / probs) * dlogprobs", "dprobs = (1.0 / probs) * dlogprob")
    cells = _run_all(_notebook("ex1", {"ex1_loss_chain": typo}, "ex1_check_loss_chain"), tmp_path)
    text = _explained(cells["ex1_loss_chain"])
    assert "`dlogprob` is not defined: a typo for `dlogprobs`?" in text, text
    assert "dprobs" in _said(cells["ex1_check_loss_chain"])


def test_a_broadcast_mismatch_is_explained_with_the_sub_expressions_shapes(tmp_path):
    """Is a sum over the wrong dimension inside Exercise 3's one-liner explained with the
    shapes of the two operands that do not broadcast, and the likely slip?"""
    slip = ALL["ex3"]["ex3_dhprebn"].replace("(dhpreact * bnraw).sum(0)", "(dhpreact * bnraw).sum(1)")
    cells = _run_all(_notebook("ex3", {"ex3_dhprebn": slip}, "ex3_check_dhprebn"), tmp_path)
    text = _explained(cells["ex3_dhprebn"])
    assert "`(dhpreact * bnraw).sum(1)` is (32,)" in text and "(32, 64)" in text, text
    assert "do not broadcast" in text and "wrong dimension" in text, text
    assert "hprebn" in _said(cells["ex3_check_dhprebn"])


def _reply(kc, code, cell_id=None):
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": False},  # (each alone)
                         metadata={"cellId": cell_id} if cell_id else {})
    kc.shell_channel.send(msg)
    while True:
        reply = kc.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]["status"]


@pytest.mark.parametrize("nbgrader", [False, True])
def test_only_answer_cells_are_reported_finished_and_never_under_nbgrader(tmp_path, monkeypatch, nbgrader):
    """Is an answer cell's error (by its cell id, or without one by what it assigns) replied
    as finished, while a learner's scratch cell's and, under nbgrader, every error stays an
    error?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("NBGRADER_VALIDATING", raising=False)
    if nbgrader:
        monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    km, kc = start_new_kernel(cwd=str(tmp_path))
    try:
        assert _reply(kc, "import torch\nimport autograder.hidden\nx = torch.ones(3)") == "ok"
        answer = "dprobs = x @ torch.ones(4)"
        finished = "error" if nbgrader else "ok"
        assert _reply(kc, answer, "ex1_loss_chain") == finished
        assert _reply(kc, answer) == finished
        assert _reply(kc, answer, "a-scratch-cell") == "error"
        assert _reply(kc, "y = x @ torch.ones(4)") == "error"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _saved_with_answer(path, answer):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell.get("id") == "ex3_dhprebn":
            cell["source"] = answer
    path.write_text(json.dumps(nb))


WARNING = "save the notebook"


@pytest.mark.parametrize("how", ["duplicated", "renamed", "vscode"])
def test_the_check_finds_its_own_notebook(tmp_path, monkeypatch, how):
    """Does the check of a duplicated (`ex3_batchnorm-Copy1.ipynb`, JupyterLab's session path),
    renamed (no hint: beside the untouched original) or VS Code notebook (`__vsc_ipynb_file__`),
    saved as run, judge it without a false warning that the saved notebook differs?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shutil.copy(RELEASE / "ex3_batchnorm.ipynb", tmp_path / "ex3_batchnorm.ipynb")  # the untouched original
    mine = tmp_path / {"duplicated": "ex3_batchnorm-Copy1.ipynb", "renamed": "my answers.ipynb",
                       "vscode": "ex3 mine.ipynb"}[how]
    shutil.copy(RELEASE / "ex3_batchnorm.ipynb", mine)
    _saved_with_answer(mine, ALL["ex3"]["ex3_dhprebn"])
    if how == "duplicated":
        monkeypatch.setenv("JPY_SESSION_NAME", str(mine))
    nb = nbformat.read(mine, as_version=4)
    if how == "vscode":
        nb.cells.insert(1, nbformat.v4.new_code_cell(f"__vsc_ipynb_file__ = {str(mine)!r}"))
    cells = _run_all(nb, tmp_path)
    check = _said(cells["ex3_check_dhprebn"])
    assert "step: right" in check and WARNING not in check, check


@pytest.mark.parametrize("how", ["session", "vscode"])
def test_the_notebook_the_front_end_names_is_the_one_compared(tmp_path, monkeypatch, how):
    """Where the front end names the notebook (JupyterLab's session path, VS Code's
    `__vsc_ipynb_file__`) and its saved answer is not what was run, does the check ask to save
    it, though the original beside it holds what was run?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    original, mine = tmp_path / "ex3_batchnorm.ipynb", tmp_path / "ex3_batchnorm-Copy1.ipynb"
    shutil.copy(RELEASE / "ex3_batchnorm.ipynb", original)
    _saved_with_answer(original, ALL["ex3"]["ex3_dhprebn"])
    shutil.copy(RELEASE / "ex3_batchnorm.ipynb", mine)  # not saved since
    nb = _notebook("ex3", {"ex3_dhprebn": ALL["ex3"]["ex3_dhprebn"]}, "ex3_check_dhprebn")
    if how == "session":
        monkeypatch.setenv("JPY_SESSION_NAME", mine.name)  # (a path relative to the server's root)
    else:
        nb.cells.insert(1, nbformat.v4.new_code_cell(f"__vsc_ipynb_file__ = {str(mine)!r}"))
    check = _said(_run_all(nb, tmp_path)["ex3_check_dhprebn"])
    assert WARNING in check, check


def test_on_colab_the_check_says_it_cannot_read_the_notebook(tmp_path, monkeypatch):
    """With no notebook file to read (Colab), does the check say so plainly, without claiming
    that the saved notebook differs?"""
    import sys
    import types
    from autograder import hidden
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    sources, notes = hidden.answer_sources_live("ex3", history=["dhprebn = dhpreact"], ran={})
    assert sources == [("ex3_dhprebn", "dhprebn = dhpreact")]
    assert len(notes) == 1 and "Colab" in notes[0] and "cannot read the notebook" in notes[0]


def _explain_in_process(source, **tensors):
    """explain() on a cell run in a namespace of its own, as the kernel runs it."""
    from autograder.explain import explain
    import torch
    ns = {"torch": torch, **{k: torch.zeros(v) for k, v in tensors.items()}}
    try:
        exec(compile(source, "<cell>", "exec"), ns)
    except Exception as e:
        return " ".join(explain(e, source, ns))
    raise AssertionError("the cell did not raise")


@pytest.mark.parametrize("source, tensors, said", [
    ("dW2 = dlogits @ h", dict(dlogits=(32, 27), h=(32, 64), W2=(64, 27)),
     "`dlogits` transposed ((27, 32)) would fit"),
    ("dh = dlogits @ W2.T.T", dict(dlogits=(32, 27), W2=(64, 27)), "`W2.T.T` transposed ((27, 64)) would fit"),
    ("dcounts = counts_sum_inv.T * dprobs", dict(counts_sum_inv=(32, 1), dprobs=(32, 27)),
     "`counts_sum_inv.T` transposed ((32, 1)) would fit"),
    ("dbnbias = dhpreact\nx = dbnbias @ torch.ones(3)", dict(dhpreact=(32, 64), bnbias=(1, 64)),
     "the forward pass broadcast `bnbias` along dimension 0"),
    ("dhprebn = dbndiff * 2\ndbndiff = torch.ones(3)", dict(), "`dbndiff` is used before the line that defines it"),
    ("dW1 = embcat.T @ dhprebm", dict(embcat=(32, 30), dhprebn=(32, 64)), "a typo for `dhprebn`?"),
])
def test_siblings_of_each_slip_are_named(source, tensors, said):
    """Is each kind of slip named the same way in another place: a transposed left operand of
    `@`, an extra `.T`, a transposed operand of `*`, a gradient left unsummed where the
    forward pass broadcast, a gradient used before its line, a typo'd name?"""
    text = _explain_in_process(source, **tensors)
    assert said in text and not [w for w in INTERNALS if w in text], text
