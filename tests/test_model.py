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


def test_a_local_gradient_is_the_vector_jacobian_product_and_imports_no_sympy():
    """local_grad equals autograd's product with the upstream gradient (grad_outputs), bit for
    bit, without passing grad_outputs: for those, torch imports sympy (0.4 s of CPU in every
    grading worker). The reference, computed after, shows that the probe sees the import."""
    import subprocess
    import sys
    probe = """
import sys, torch
from autograder import model
from autograder.exercises import CASES, case_inputs
params, Xb, Yb = case_inputs(CASES[0])
t = model.forward(params, Xb, Yb)
g = torch.Generator().manual_seed(1)
up = {k: torch.randn(v.shape, generator=g) for k, v in t.items()}
names = ("hpreact", "bndiff", "logits", "C")
got = {name: model.local_grad(name, t, up, Xb, Yb) for name in names}
print("sympy" in sys.modules)
for name in names:
    want = torch.zeros_like(t[name])
    for out, ins, fn in model.OPS:
        if name in ins:
            args = [t[i].detach().clone().requires_grad_(i == name) for i in ins]
            y = fn(*args, Xb, Yb, Xb.shape[0])
            dy = torch.ones_like(y) if out == "loss" else up[out].reshape(y.shape)
            want += torch.autograd.grad(y, args[ins.index(name)], dy)[0]
    print(name, torch.equal(got[name], want))
print("sympy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "hpreact", "True", "bndiff", "True", "logits", "True", "C", "True",
                                  "True"], out.stdout + out.stderr[-2000:]
