import pytest
import torch
import torch.nn.functional as F

from autograder import model
from autograder.exercises import CASES, case_inputs


def test_parameter_counts_are_the_lectures():
    assert sum(p.numel() for p in model.init_params(64).values()) == 4_137
    assert sum(p.numel() for p in model.init_params(200).values()) == 12_297


def test_every_draw_is_seeded():
    """Do two initialisations (bngain and bnbias included) give identical tensors?"""
    a, b = model.init_params(), model.init_params()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_chunked_forward_matches_cross_entropy():
    params, Xb, Yb = case_inputs(CASES[0])
    t = model.forward(params, Xb, Yb)
    assert torch.allclose(t["loss"], torch.nn.functional.cross_entropy(t["logits"], Yb))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_local_gradients_compose_to_autograd_in_float64(case):
    """Given autograd's upstream gradients, is each step's vector-Jacobian product autograd's
    gradient (float64, so only rounding could differ)?"""
    params, Xb, Yb = case_inputs(case)
    params = {k: v.double() for k, v in params.items()}
    ref, values = model.reference_grads(params, Xb, Yb)
    for k in model.GRAD_NAMES:
        assert torch.allclose(model.local_grad(k, values, ref, Xb, Yb), ref[k], rtol=1e-12, atol=1e-15), k


def test_ex4_forward_is_the_chunked_forward():
    """Does Exercise 4's forward (PyTorch's mean/var/cross-entropy) give the chunked loss?"""
    params, Xb, Yb = case_inputs(CASES[1], 200)
    loss, cache = model.forward_ex4(Xb, Yb, list(params.values()))
    t = model.forward(params, Xb, Yb)
    assert torch.allclose(loss, t["loss"]) and torch.allclose(cache["bnraw"], t["bnraw"], atol=1e-6)
    # the lecture's Exercise 4 writes PyTorch's var and cross-entropy: the same numbers
    hprebn = cache["hprebn"]
    assert torch.allclose(cache["bnvar"], hprebn.var(0, keepdim=True, unbiased=True), rtol=1e-6)
    assert torch.allclose(loss, F.cross_entropy(cache["logits"], Yb))
