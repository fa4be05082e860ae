"""Exercise 4 says where inside backward a wrong gradient goes wrong: the body replayed on the
true upstream gradients names the first wrong step, with its line, and never blames a right
line for an earlier wrong one; the points stay those of the returned gradients."""
import pytest

from autograder import score
from conftest import solution_cells

SOLUTION = solution_cells("ex4")["ex4_backward"]
TANH = "dhpreact = torch.addcmul(dh, dh * h, h, value=-1)"
DC = "dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), dembcat.view(-1, C.shape[1]))"
ALL = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]


def verdicts(src):
    return score.grade("ex4", [("ex4_backward", src)])


def line_of(src, text):
    """The line of the cell that holds text (from 1)."""
    return next(i for i, line in enumerate(src.splitlines(), 1) if text in line)


def lost(v):
    return {k for k, x in v.items() if not x.ok and k != "training"}


def test_a_tanh_slip_is_located_at_its_own_line_and_dC_is_not_blamed():
    """The issue's case: only the tanh derivative is wrong. Is dhpreact's line named in every
    verdict it spoils, and is dC's index_add_ said to be right (no 'repeated entries')?"""
    src = SOLUTION.replace(TANH, "dhpreact = (1 - h) * dh")
    v = verdicts(src)
    assert lost(v) == {"C", "W1", "bngain", "bnbias"}  # db1 is zero up to rounding either way
    at = f"dhpreact (line {line_of(src, 'dhpreact = (1 - h) * dh')}) is wrong"
    for k in lost(v):
        assert at in v[k].message and "tanh's derivative is 1 - h**2" in v[k].message, v[k].message
        assert "right given the true upstream" in v[k].message
    assert f"line {line_of(src, 'dC = torch.zeros_like(C)')} (dC) is right" in v["C"].message
    assert "accumulated" not in v["C"].message and v["C"].mistake == ""
    assert not v["C"].ok and v["C"].points == 0  # the point is the returned gradient's


def test_a_wrong_upstream_under_a_name_of_the_learners_own_is_named():
    """`g` for dhpreact: is g's line named, not the right lines that read it?"""
    src = SOLUTION.replace(TANH, "g = (1 - h) * dh").replace("dhpreact", "g")
    v = verdicts(src)
    at = f"g (line {line_of(src, 'g = (1 - h) * dh')}) is wrong"
    for k in lost(v):
        assert at in v[k].message, v[k].message


def test_a_wrong_own_line_is_named_with_its_mistake():
    """dC assigned, not accumulated: is dC's own line named, and nothing else lost?"""
    src = SOLUTION.replace(DC, "dC = torch.zeros_like(C)\n    dC[Xb.view(-1)] = dembcat.view(-1, C.shape[1])")
    v = verdicts(src)
    assert lost(v) == {"C"}
    assert f"line {line_of(src, 'dC[Xb.view(-1)] =')} (dC) is wrong even given the true upstream" in v["C"].message
    assert v["C"].mistake == "accumulate"


def test_returned_names_of_the_learners_own_are_judged_as_the_parameters():
    """`return [gC, ...]` with a loop that overwrites: gC's line is named."""
    src = SOLUTION.replace(DC, "gC = torch.zeros_like(C)\n    for k in range(n):\n        for j in range(3):\n"
                               "            gC[Xb[k, j]] = dembcat.view(n, 3, -1)[k, j]")
    src = src.replace("return [dC,", "return [gC,")
    v = verdicts(src)
    assert lost(v) == {"C"}
    assert f"line {line_of(src, 'for k in range(n):')} (gC) is wrong even given" in v["C"].message
    assert "accumulated (+=)" in v["C"].message


LECTURE_STYLE = """\
def backward(Xb, Yb, parameters, cache):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    emb, embcat, hprebn = cache["emb"], cache["embcat"], cache["hprebn"]
    bndiff, bnvar_inv, bnraw = cache["bndiff"], cache["bnvar_inv"], cache["bnraw"]
    h, logits = cache["h"], cache["logits"]
    n = Xb.shape[0]
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    dlogprobs = torch.zeros_like(probs)
    dlogprobs[range(n), Yb] = -1.0 / n
    dprobs = (1.0 / probs) * dlogprobs
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    dcounts = counts_sum_inv * dprobs
    dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
    dcounts += torch.ones_like(counts) * dcounts_sum
    dnorm_logits = counts * dcounts
    dlogits = dnorm_logits.clone()
    dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = torch.einsum('ni,nj->ij', embcat, dhprebn)
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C)
    for k in range(n):
        for j in range(Xb.shape[1]):
            dC[Xb[k, j]] += demb[k, j]
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"""


def test_a_missing_second_path_inside_backward_is_named_at_its_line():
    """dcounts without the path through counts_sum, in the lecture's step-by-step style: every
    gradient it spoils names dcounts's line and the missing path; dW2's own line is right."""
    assert lost(verdicts(LECTURE_STYLE)) == set()  # right as it is
    src = LECTURE_STYLE.replace("    dcounts += torch.ones_like(counts) * dcounts_sum\n", "")
    v = verdicts(src)
    assert lost(v) == set(ALL) - {"b1"}
    at = f"dcounts (line {line_of(src, 'dcounts = counts_sum_inv * dprobs')}) is wrong"
    for k in lost(v):
        assert at in v[k].message and "counts is used twice" in v[k].message, v[k].message
        assert "matches none" not in v[k].message  # its forward values (counts, probs) are no gradients
    assert f"line {line_of(src, 'dW2 = h.T @ dlogits')} (dW2) is right" in v["W2"].message


def test_aliasing_without_clone_locates_the_wrong_step_and_blames_no_right_one():
    """`dhprebn = dhpreact` (no clone) changed in place after dhpreact's last use: right as it
    is; with the tanh slip, dhpreact's line is named, and the in-place lines are right."""
    src = LECTURE_STYLE.replace(
        "    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))",
        "    dhprebn = dhpreact\n    dhprebn *= n\n    dhprebn -= dbnbias\n    dhprebn -= n / (n - 1) * bnraw * dbngain\n"
        "    dhprebn *= bngain * bnvar_inv / n")
    assert lost(verdicts(src)) == set()
    src = src.replace("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - h) * dh")
    v = verdicts(src)
    assert lost(v) == {"C", "W1", "bngain", "bnbias"}
    for k in lost(v):
        assert f"dhpreact (line {line_of(src, 'dhpreact = (1.0 - h) * dh')}) is wrong" in v[k].message, v[k].message


@pytest.mark.parametrize("k, old, new", [
    ("W2", "dW2 = h.T @ dlogits", "dW2 = h.T @ dlogits * 2"),
    ("bngain", "dbngain = (bnraw * dhpreact).sum(0, keepdim=True)", "dbngain = (bnraw * dhpreact).sum(0, keepdim=True).T.T * -1"),
])
def test_a_wrong_parameter_line_costs_only_itself_and_is_named(k, old, new):
    src = LECTURE_STYLE.replace(old, new)
    v = verdicts(src)
    assert lost(v) == {k}
    assert f"line {line_of(src, new)} (d{k}) is wrong even given the true upstream" in v[k].message


def test_a_gradient_returned_as_none_says_so():
    """`return [None, ...]` for dC: is the verdict more than a bare 'not defined'?"""
    v = verdicts(SOLUTION.replace("return [dC,", "return [None,"))
    assert lost(v) == {"C"} and "backward returned no tensor in dC's place (1 of 7)" in v["C"].message


def test_the_class_view_counts_a_right_step_by_what_is_said_of_it_alone():
    """`dlogits /= 32`: dW2's own line is right; its verdict names dlogits's factor n/32, which
    the misconception view must not count as dW2's (only its hard-coded batch size)."""
    src = SOLUTION.replace("dlogits /= n", "dlogits /= 32")
    v = verdicts(src)
    why = v["W2"].message
    assert "wrong only because dlogits" in why and "factor of n/32" in why
    assert v["W2"].mistake == "hard_coded"


def test_a_wrong_helper_the_grader_cannot_place_is_named_beside_the_line_it_blames():
    """A wrong variable of the learner's own read with the true upstream (no lecture name to
    place it): the verdict says the line it blames reads it, instead of blaming that line alone."""
    src = SOLUTION.replace(TANH, "t = 1 - h\n    dhpreact = t * dh")
    v = verdicts(src)
    at = f"dhpreact (line {line_of(src, 'dhpreact = t * dh')}) is wrong"
    for k in lost(v):
        assert at in v[k].message and f"t (line {line_of(src, 't = 1 - h')}) matches none" in v[k].message, v[k].message
