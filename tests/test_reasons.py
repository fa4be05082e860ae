"""Every wrong verdict names a reason, and the right one: the mistakes learners make, each in
several styles (one step per line, helper variables, `+=` accumulation, loops, numpy, a
hard-coded batch size), judged by the grade's scorer in this process."""
import pytest
import torch

from autograder import score
from autograder.diagnose import diagnose
from conftest import solution_cells


def edited(exercise, old, new, base=None):
    cells = dict(base or solution_cells(exercise))
    cell = next(c for c, src in cells.items() if old in src)
    cells[cell] = cells[cell].replace(old, new, 1)
    return cells


def wrong(exercise, cells):
    """{name: the reason in its verdict} of the items that lose their points."""
    verdicts = score.grade(exercise, list(cells.items()))
    return {k: v.message for k, v in verdicts.items() if not v.ok}


REPEATED = "wrong only in rows the batch uses more than once"
# (exercise, text in the solution, replacement, {item that loses its points: words of its reason})
CASES = {
    "second_path_dcounts_left_out": (
        "ex1", "dcounts += torch.ones_like(counts) * dcounts_sum", "pass",
        {"counts": "counts is used twice (by counts_sum and probs)"}),
    "second_path_through_a_helper": (
        "ex1", "dcounts = counts_sum_inv * dprobs\ndcounts_sum = (-counts_sum**-2) * dcounts_sum_inv\n"
               "dcounts += torch.ones_like(counts) * dcounts_sum",
        "tmp = counts_sum_inv * dprobs\ndcounts_sum = (-counts_sum**-2) * dcounts_sum_inv\ndcounts = tmp",
        {"counts": "the one through counts_sum is missing"}),
    "second_path_dbndiff_overwritten": (
        "ex1", "dbndiff += (2 * bndiff) * dbndiff2", "dbndiff = (2 * bndiff) * dbndiff2",
        {"bndiff": "bndiff is used twice (by bndiff2 and bnraw)"}),
    "second_path_dhprebn_through_the_mean": (
        "ex1", "dhprebn += 1.0 / n * (torch.ones_like(hprebn) * dbnmeani)", "pass",
        {"hprebn": "the one through bnmeani is missing"}),
    "dC_assigned_in_the_loop": (
        "ex1", "dC[ix] += demb[k, j]", "dC[ix] = demb[k, j]", {"C": REPEATED}),
    "dC_assigned_at_once": (
        "ex1", "for k in range(Xb.shape[0]):\n    for j in range(Xb.shape[1]):\n        ix = Xb[k, j]\n"
               "        dC[ix] += demb[k, j]", "dC[Xb] = demb", {"C": REPEATED}),
    "dC_assigned_flat": (
        "ex1", "for k in range(Xb.shape[0]):\n    for j in range(Xb.shape[1]):\n        ix = Xb[k, j]\n"
               "        dC[ix] += demb[k, j]", "dC[Xb.view(-1)] = demb.view(-1, demb.shape[-1])",
        {"C": REPEATED}),
    "db1_not_summed": ("ex1", "db1 = dhprebn.sum(0)", "db1 = dhprebn", {"b1": "needs a sum over that dimension"}),
    "db2_not_summed": ("ex1", "db2 = dlogits.sum(0)", "db2 = dlogits * 1.0", {"b2": "needs a sum over that dimension"}),
    "tanh_derivative_1_minus_h": ("ex1", "dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - h) * dh",
                                  {"hpreact": "tanh's derivative is 1 - h**2, of its output h; yours is 1 - h"}),
    "tanh_derivative_in_numpy": (
        "ex1", "dhpreact = (1.0 - h**2) * dh",
        "import numpy as np\ndhpreact = torch.from_numpy((1.0 - np.tanh(hpreact.numpy())**2 * 0 - hpreact.numpy()**2)"
        " * dh.numpy())", {"hpreact": "yours is 1 - hpreact**2 (of its input)"}),
    "raises_on_other_batch_sizes": (
        "ex1", "demb = dembcat.view(emb.shape)", "demb = dembcat.view(32, 3, 10)",
        {"emb": "is the batch size hard-coded? (raised an error on a hidden case)"}),
    "hard_coded_value": ("ex1", "dlogprobs[range(n), Yb] = -1.0 / n", "dlogprobs[range(n), Yb] = -1.0 / 32",
                         {"logprobs": "not on other batch sizes: is the batch size hard-coded?"}),
    "something_else_says_what_is_known": (
        "ex1", "dh = dlogits @ W2.T", "dh = dlogits @ W2.T\ndh[0, :3] += 1.0",
        {"h": "differs in 1 of 32 rows and 3 of 64 columns (e.g. row 0, column 0)"}),
    "ex4_raises_on_other_batch_sizes": (
        "ex4", "dh = dlogits @ W2.T", "dh = dlogits @ W2.T\n    assert n == 32, f'{n} is not 32'",
        {k: "is the batch size hard-coded? (raised an error on a hidden case)"
         for k in ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]}),
    "ex4_db1_not_summed": ("ex4", "db1 = dhprebn.sum(0)", "db1 = dhprebn",
                           {"b1": "needs a sum over that dimension"}),
}


# the code each case's verdicts carry as data (Verdict.mistake), set where the words are written
CODES = {"second_path_dcounts_left_out": "second_path", "second_path_through_a_helper": "second_path",
         "second_path_dbndiff_overwritten": "second_path", "second_path_dhprebn_through_the_mean": "second_path",
         "dC_assigned_in_the_loop": "accumulate", "dC_assigned_at_once": "accumulate",
         "dC_assigned_flat": "accumulate", "db1_not_summed": "broadcast", "db2_not_summed": "broadcast",
         "tanh_derivative_1_minus_h": "tanh", "tanh_derivative_in_numpy": "tanh",
         "raises_on_other_batch_sizes": "raises_hidden", "hard_coded_value": "hard_coded",
         "something_else_says_what_is_known": "", "ex4_raises_on_other_batch_sizes": "raises_hidden",
         "ex4_db1_not_summed": "broadcast"}


@pytest.mark.parametrize("case", CASES)
def test_every_wrong_verdict_names_its_mistake(case):
    """Is each wrong gradient's reason the mistake made, in each style, and its code the one
    the class report counts?"""
    ex, old, new, reasons = CASES[case]
    verdicts = score.grade(ex, list(edited(ex, old, new).items()))
    got = {k: v for k, v in verdicts.items() if not v.ok and k != "training"}
    assert set(got) == set(reasons), got
    for k, words in reasons.items():
        assert words in got[k].message, got[k].message
        assert got[k].mistake == CODES[case], (k, got[k].mistake, got[k].message)


def test_a_raise_on_a_hidden_batch_never_shows_its_line_or_text():
    """Does the verdict of a backward that raises only on hidden batches keep the exception's
    text and line (which could quote the hidden case) out of it?"""
    for case in ["ex4_raises_on_other_batch_sizes", "raises_on_other_batch_sizes"]:
        ex, old, new, _ = CASES[case]
        for k, why in wrong(ex, edited(ex, old, new)).items():
            assert k == "training" or "raised an error on a hidden case" in why
            assert "line" not in why and "is not 32" not in why and "shape" not in why, why


def test_repeated_rows_are_named_only_where_the_wrong_rows_are_the_repeated_ones():
    """A wrong dC whose wrong rows include one the batch uses once is not told to accumulate."""
    ex, cells = "ex1", edited("ex1", "dC[ix] += demb[k, j]", "dC[ix] += demb[k, j]\ndC[26] += 1.0")
    got = wrong(ex, cells)
    assert list(got) == ["C"] and "accumulated" not in got["C"] and "differs in" in got["C"]


def test_the_missing_second_path_is_counted_in_the_class_view():
    ex, old, new, _ = CASES["second_path_dcounts_left_out"]
    assert score.grade(ex, list(edited(ex, old, new).items()))["counts"].mistake == "second_path"


@pytest.mark.parametrize("where, words", [("argmin", "to the smallest logit (argmin)"),
                                          ("every", "to every position of its row")])
def test_the_max_gradient_sent_elsewhere_is_named(where, words):
    """dlogits with the max's gradient at the argmin, or at every position, not at the argmax."""
    g = torch.Generator().manual_seed(0)
    logits, t = torch.randn(8, 27, generator=g), torch.randn(8, 27, generator=g)
    dmax, rows = torch.randn(8, 1, generator=g), torch.arange(8)
    right = t.clone()
    right[rows, logits.argmax(1)] += dmax[:, 0]
    dt = t.clone()
    if where == "argmin":
        dt[rows, logits.argmin(1)] += dmax[:, 0]
    else:
        dt += dmax
    assert words in diagnose(dt, right, 8, logits=logits)
    assert diagnose(dt, right, 8, logits=logits).code == "max_position"


def test_the_check_shows_a_small_picture_of_each_wrong_gradient_only(monkeypatch):
    """Does the check cell show one small image of which entries differ, for the wrong
    gradient alone (the right one gets none)?"""
    from autograder import check, hidden
    verdicts = score.grade("ex1", list(edited("ex1", "dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - h) * dh").items()))
    monkeypatch.setattr(hidden, "live_verdicts", lambda *a, **k: (verdicts, []))
    shown = []
    monkeypatch.setattr(check, "show", shown.append)
    ref = {"h": torch.ones(4, 5), "hpreact": torch.ones(4, 5)}
    ns = {"dh": torch.ones(4, 5), "dhpreact": torch.ones(4, 5) + (torch.arange(5) == 2)}
    check.report(["h", "hpreact"], ns, ref, "ex1")
    assert len(shown) == 1 and shown[0].startswith(b"\x89PNG") and len(shown[0]) < 20_000


def test_the_picture_marks_the_entries_that_differ():
    """Are the red pixels of the picture the rows that differ (dC's repeated rows)?"""
    import io

    from matplotlib.image import imread

    from autograder.check import picture
    t = torch.ones(27, 10)
    dt = t.clone()
    dt[:9] = 0.0  # the top third differs
    img = imread(io.BytesIO(picture("C", dt, t)))
    red = img[..., 0] - img[..., 1] > 0.2
    ys = red.any(1).nonzero()[0]
    assert red.any() and ys.max() - ys.min() < img.shape[0] / 2
    assert picture("C", torch.ones(3), t) is None


def test_one_big_cell_names_each_mistake_at_its_own_gradient():
    """The whole of Exercise 1 in one cell, with two mistakes: does each lost gradient name its
    own mistake (and no other gradient lose anything)?"""
    big = "\n".join(solution_cells("ex1").values())
    big = big.replace("dcounts += torch.ones_like(counts) * dcounts_sum", "pass").replace(
        "dC[ix] += demb[k, j]", "dC[ix] = demb[k, j]")
    got = wrong("ex1", {"ex1_loss_chain": big, "ex1_second_layer": "", "ex1_batchnorm": "", "ex1_first_layer": ""})
    assert set(got) == {"counts", "C"}
    assert "counts is used twice" in got["counts"] and REPEATED in got["C"]


def test_a_missing_gradient_is_a_typo_only_for_a_name_of_the_learners_own():
    """The code and the words agree: `dbndiff` never assigned is no typo of the graded `dbndiff2`
    beside it, and `dbn_bias` for `dbnbias` is one, in the words and in the code."""
    ex = "ex1"
    cells = edited(ex, "dbndiff += (2 * bndiff) * dbndiff2", "pass", edited(ex, "dbndiff = bnvar_inv * dbnraw", "pass"))
    missing = score.grade(ex, list(cells.items()))["bndiff"]
    assert "typo" not in missing.message and missing.mistake != "typo", (missing.message, missing.mistake)
    typo = score.grade(ex, list(edited(ex, "dbnbias = ", "dbn_bias = ").items()))["bnbias"]
    assert "a typo?" in typo.message and typo.mistake == "typo", (typo.message, typo.mistake)
