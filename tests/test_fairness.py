"""Own-step scoring on submissions written the way learners write: one big cell or one step per
cell, helper variables, typos, `+=`, aliasing, loops, einsum, F.one_hot, numpy, a failing first
line. Each fixture is a scenario with the points it must get: a mistake costs its own step only,
degenerate answers earn nothing."""
import pytest

from autograder import score
from autograder.model import GRAD_NAMES
from conftest import solution_cells

# A learner's whole Exercise 1 in one cell, in another style than the instructor's: helper
# variables, F.one_hot, einsum, numpy, an index_add_ for dC, intermediates under the
# gradient's own name.
ONE_BIG_CELL = """\
import numpy as np
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
dprobs = probs ** -1 * dlogprobs
dcounts_sum_inv = counts * dprobs
dcounts_sum_inv = dcounts_sum_inv.sum(1, keepdim=True)   # an intermediate under its own name
dcounts_sum = -(counts_sum ** -2) * dcounts_sum_inv
dcounts = counts_sum_inv * dprobs
dcounts += dcounts_sum                                     # broadcasts over the row
dnorm_logits = norm_logits.exp() * dcounts
dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)
onehot = F.one_hot(logits.argmax(1), vocab_size)
dlogits = dnorm_logits + onehot * dlogit_maxes
dh = torch.einsum('nk,hk->nh', dlogits, W2)
dW2 = torch.einsum('nh,nk->hk', h, dlogits)
db2 = dlogits.sum(0)
dhpreact = torch.from_numpy(np.asarray((1 - h ** 2) * dh))
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnbias = dhpreact.sum(0, keepdim=True)
dbnraw = bngain * dhpreact
dbndiff = bnvar_inv * dbnraw
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbnvar = -0.5 * (bnvar + 1e-5) ** -1.5 * dbnvar_inv
dbndiff2 = torch.ones_like(bndiff2) / (n - 1) * dbnvar
dbndiff += 2 * bndiff * dbndiff2
dbnmeani = -dbndiff.sum(0, keepdim=True)
dhprebn = dbndiff + dbnmeani / n
dembcat = dhprebn @ W1.T
dW1 = embcat.T @ dhprebn
db1 = dhprebn.sum(0)
demb = dembcat.view(n, block_size, n_embd)
dC = torch.zeros_like(C)
dC.index_add_(0, Xb.view(-1), demb.view(-1, n_embd))
"""
EMPTY = {"ex1_second_layer": "", "ex1_batchnorm": "", "ex1_first_layer": ""}


def wrong(cells, exercise="ex1"):
    """{gradient: message} of the answers that lose points."""
    verdicts = score.grade(exercise, list(cells.items()))
    return {v.name: v.message for v in verdicts.values() if not v.ok}


def edited(old, new, count=1, cell=None, base=None):
    """The instructor's Exercise 1 (or `base`) with one edit, as a learner would make it."""
    cells = dict(base or solution_cells("ex1"))
    cell = cell or next(c for c, src in cells.items() if old in src)
    assert cells[cell].count(old) >= count, old
    cells[cell] = cells[cell].replace(old, new, count)
    return cells


def test_one_big_cell_in_another_style_scores_full_marks():
    assert wrong({"ex1_loss_chain": ONE_BIG_CELL, **EMPTY}) == {}


def test_one_step_per_cell_with_a_failing_first_line_scores_full_marks():
    """Does a cell whose first line raises still run the rest of the cell?"""
    cells = {cell: "print(not_defined_anywhere)\n" + src for cell, src in solution_cells("ex1").items()}
    assert wrong(cells) == {}


def test_a_typo_in_a_gradients_name_costs_that_gradient_only():
    """`dprob = ...` (typo), then later lines read `dprobs`: they raise in the learner's notebook,
    but here they read autograd's dprobs, so only dprobs is lost, and the message names the typo."""
    lost = wrong(edited("dprobs = (1.0 / probs) * dlogprobs", "dprob = (1.0 / probs) * dlogprobs"))
    assert list(lost) == ["probs"]
    assert "no line of yours assigns dprobs" in lost["probs"] and "dprob" in lost["probs"]


def test_a_gradient_never_written_costs_only_itself():
    cells = edited("dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv\n", "")
    assert list(wrong(cells)) == ["counts_sum"]


def test_a_step_that_uses_autograd_costs_that_step_only():
    cells = edited("dlogits = dnorm_logits.clone()", "dlogits = logits.grad.clone()")
    lost = wrong(cells)
    assert list(lost) == ["logits"] and "autograd" in lost["logits"]


def test_an_upstream_stored_under_another_name_is_judged_on_the_learners_value():
    """`dbhprebn` (typo) for `dhprebn`, then used by every later step: only dhprebn is lost."""
    cells = edited("dhprebn", "dbhprebn", count=2, cell="ex1_batchnorm")
    cells = edited("dhprebn", "dbhprebn", count=3, cell="ex1_first_layer", base=cells)
    lost = wrong(cells)
    assert list(lost) == ["hprebn"], lost


def test_an_intermediate_under_the_gradients_own_name_is_not_taken_as_the_answer():
    cells = edited("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
                   "dcounts_sum_inv = counts * dprobs\ndcounts_sum_inv = dcounts_sum_inv.sum(1, keepdim=True)")
    assert wrong(cells) == {}


def test_aliasing_without_clone_does_not_change_an_upstream_after_its_use():
    """`dhprebn = dbndiff` (no clone), then `dhprebn += ...` changes dbndiff in place."""
    cells = edited("dhprebn = dbndiff.clone()", "dhprebn = dbndiff")
    cells = edited("dlogits = dnorm_logits.clone()", "dlogits = dnorm_logits", base=cells)
    assert wrong(cells) == {}


def test_a_keepdim_row_for_a_vector_parameter_is_wrong_and_says_why():
    """(1, 64) for the (64,) b1: `b1 -= lr * db1` would fail. (64,) for (1, 64) is accepted,
    with the note in the verdict."""
    lost = wrong(edited("db1 = dhprebn.sum(0)", "db1 = dhprebn.sum(0, keepdim=True)"))
    assert list(lost) == ["b1"] and "cannot update" in lost["b1"], lost
    verdicts = score.grade("ex1", list(solution_cells("ex1").items()))
    assert verdicts["bnmeani"].ok and "(64,) accepted for (1, 64)" in verdicts["bnmeani"].summary()


@pytest.mark.parametrize("fill", ["torch.zeros_like({k})", "torch.ones_like({k})", "0.5 * torch.ones_like({k})"])
def test_constant_answers_earn_nothing(fill):
    cells = {"ex1_loss_chain": "\n".join(f"d{k} = " + fill.format(k=k) for k in GRAD_NAMES), **EMPTY}
    assert len(wrong(cells)) == 26


def test_a_right_first_gradient_then_zeros_then_zeroed_again_earns_nothing():
    """A right dlogprobs, zeros everywhere, and dlogprobs zeroed at the end of the last cell:
    the answer is the value at the last write, so nothing is earned."""
    zeros = "\n".join(f"d{k} = torch.zeros_like({k})" for k in GRAD_NAMES[1:])
    cells = {"ex1_loss_chain": "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n" + zeros,
             "ex1_second_layer": "", "ex1_batchnorm": "", "ex1_first_layer": "dlogprobs.zero_()"}
    assert len(wrong(cells)) == 26


def test_zero_steps_need_their_upstream_even_when_right_by_accident():
    """dlogit_maxes and db1 are zero up to rounding: written as zeros they lose their point."""
    cells = edited("dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)", "dlogit_maxes = torch.zeros(n, 1)")
    cells = edited("db1 = dhprebn.sum(0)", "db1 = torch.zeros(n_hidden)", base=cells)
    lost = wrong(cells)
    assert sorted(lost) == ["b1", "logit_maxes"] and "random" in lost["b1"]


def test_right_answers_carry_no_mistake_message():
    """No 'off by a constant factor of 4.6e-08' on a right answer: a right verdict says nothing,
    or only the accepted-shape note."""
    verdicts = score.grade("ex1", [("ex1_loss_chain", ONE_BIG_CELL)])
    assert {v.message for v in verdicts.values()} <= {"", "(64,) accepted for (1, 64)"}


def test_a_missing_gradient_gives_its_own_error_not_the_first_of_its_cell():
    cells = edited("dh = dlogits @ W2.T", "dh = dlogits @ W2.T\nprint(oops)")
    cells = edited("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - h**2) * dhh", base=cells)
    lost = wrong(cells)
    assert list(lost) == ["hpreact"]
    assert "dhh" in lost["hpreact"] and "oops" not in lost["hpreact"]


def test_exercise_3_names_a_missing_bessel_correction():
    src = solution_cells("ex3")["ex3_dhprebn"].replace("n / (n - 1) * bnraw", "bnraw")
    lost = wrong({"ex3_dhprebn": src}, "ex3")
    assert "Bessel" in lost["hprebn"], lost


def test_exercise_4_backward_may_use_the_notebooks_constants():
    """A right backward that reads block_size, vocab_size, n_embd and n_hidden (as the
    notebook defines them before it) scores 10/10."""
    src = solution_cells("ex4")["ex4_backward"].replace(
        "dC = torch.zeros_like(C)", "assert (block_size, vocab_size, n_embd, n_hidden) == (3, 27, 10, 200)\n"
                                    "    dC = torch.zeros((vocab_size, n_embd))")
    assert src != solution_cells("ex4")["ex4_backward"]
    assert wrong({"ex4_backward": src}, "ex4") == {}


def test_exercise_4_training_verdict_states_its_tolerance():
    verdicts = score.grade("ex4", list(solution_cells("ex4").items()))
    assert verdicts["training"].ok and f"at most {score.TRAIN_RTOL:.0e}" in verdicts["training"].message


def test_a_step_reading_its_upstream_under_another_name_is_judged_on_the_true_upstream():
    """`dlogprobs = dlp` (the same tensor), then `dprobs = ... * dlp`: a hard-coded 1/32 in
    dlp costs dlogprobs, not dprobs as well."""
    cells = edited("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                   "dprobs = (1.0 / probs) * dlogprobs",
                   "dlp = torch.zeros_like(logprobs)\ndlp[range(n), Yb] = -1.0 / 32\ndlogprobs = dlp\n"
                   "dprobs = (1.0 / probs) * dlp")
    assert list(wrong(cells)) == ["logprobs"]


def test_a_hard_coded_size_that_raises_on_other_batches_says_so():
    lost = wrong(edited("demb = dembcat.view(emb.shape)", "demb = dembcat.view(32, 3, 10)"))
    assert list(lost) == ["emb"] and "hard-coded" in lost["emb"] and "raised an error on a hidden case" in lost["emb"]
    assert "RuntimeError" not in lost["emb"], "the error's name is the learner's: it says nothing of a hidden case"
