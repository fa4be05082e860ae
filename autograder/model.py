"""The lecture's MLP: seeded parameters, the chunked forward pass, reference gradients.

The forward pass is a list of operations, one intermediate each, so that the grader can
differentiate any single step on its own (see `local_grad`).
"""
import torch

from .data import BLOCK_SIZE, vocab_size
from .forward import BN_EPS, forward_ex4  # noqa: F401 (Exercise 4's forward pass)
from .network import GRAD_NAMES, PARAM_NAMES, SEED  # noqa: F401 (read as model.*)

N_EMBD = 10


def init_params(n_hidden=64, g=None, n_embd=N_EMBD, block_size=BLOCK_SIZE):
    """Parameters drawn in the lecture's order from generator `g` (bngain, bnbias included).
    Pass the generator on to `sample_batch` to continue the lecture's stream of draws."""
    g = g if g is not None else torch.Generator().manual_seed(SEED)
    fan_in = n_embd * block_size
    return {
        "C": torch.randn((vocab_size, n_embd), generator=g),
        "W1": torch.randn((fan_in, n_hidden), generator=g) * (5 / 3) / fan_in**0.5,
        "b1": torch.randn(n_hidden, generator=g) * 0.1,  # useless under BatchNorm, kept to check its gradient
        "W2": torch.randn((n_hidden, vocab_size), generator=g) * 0.1,
        "b2": torch.randn(vocab_size, generator=g) * 0.1,
        "bngain": torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0,
        "bnbias": torch.randn((1, n_hidden), generator=g) * 0.1,
    }


def sample_batch(X, Y, batch_size=32, generator=None):
    ix = torch.randint(0, X.shape[0], (batch_size,), generator=generator)
    return X[ix], Y[ix]


# (output, inputs, function of (inputs..., Xb, Yb, n)); each line is one line of the lecture.
OPS = [
    ("emb", ["C"], lambda C, Xb, Yb, n: C[Xb]),
    ("embcat", ["emb"], lambda emb, Xb, Yb, n: emb.view(emb.shape[0], -1)),
    ("hprebn", ["embcat", "W1", "b1"], lambda embcat, W1, b1, Xb, Yb, n: embcat @ W1 + b1),
    ("bnmeani", ["hprebn"], lambda hprebn, Xb, Yb, n: 1 / n * hprebn.sum(0, keepdim=True)),
    ("bndiff", ["hprebn", "bnmeani"], lambda hprebn, bnmeani, Xb, Yb, n: hprebn - bnmeani),
    ("bndiff2", ["bndiff"], lambda bndiff, Xb, Yb, n: bndiff**2),
    ("bnvar", ["bndiff2"], lambda bndiff2, Xb, Yb, n: 1 / (n - 1) * bndiff2.sum(0, keepdim=True)),
    ("bnvar_inv", ["bnvar"], lambda bnvar, Xb, Yb, n: (bnvar + BN_EPS) ** -0.5),
    ("bnraw", ["bndiff", "bnvar_inv"], lambda bndiff, bnvar_inv, Xb, Yb, n: bndiff * bnvar_inv),
    ("hpreact", ["bngain", "bnraw", "bnbias"], lambda bngain, bnraw, bnbias, Xb, Yb, n: bngain * bnraw + bnbias),
    ("h", ["hpreact"], lambda hpreact, Xb, Yb, n: torch.tanh(hpreact)),
    ("logits", ["h", "W2", "b2"], lambda h, W2, b2, Xb, Yb, n: h @ W2 + b2),
    ("logit_maxes", ["logits"], lambda logits, Xb, Yb, n: logits.max(1, keepdim=True).values),
    ("norm_logits", ["logits", "logit_maxes"], lambda logits, logit_maxes, Xb, Yb, n: logits - logit_maxes),
    ("counts", ["norm_logits"], lambda norm_logits, Xb, Yb, n: norm_logits.exp()),
    ("counts_sum", ["counts"], lambda counts, Xb, Yb, n: counts.sum(1, keepdim=True)),
    ("counts_sum_inv", ["counts_sum"], lambda counts_sum, Xb, Yb, n: counts_sum**-1),
    ("probs", ["counts", "counts_sum_inv"], lambda counts, counts_sum_inv, Xb, Yb, n: counts * counts_sum_inv),
    ("logprobs", ["probs"], lambda probs, Xb, Yb, n: probs.log()),
    ("loss", ["logprobs"], lambda logprobs, Xb, Yb, n: -logprobs[range(n), Yb].mean()),
]


def forward(params, Xb, Yb):
    """All intermediates of the chunked forward pass (dict name -> tensor), params included."""
    n = Xb.shape[0]
    t = dict(params)
    for out, ins, fn in OPS:
        t[out] = fn(*(t[i] for i in ins), Xb, Yb, n)
    return t


def reference_grads(params, Xb, Yb, names=GRAD_NAMES):
    """Autograd's gradient of the loss for each named tensor, plus the forward values (detached)."""
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    t = forward(params, Xb, Yb)
    grads = torch.autograd.grad(t["loss"], [t[k] for k in names])
    return {k: g for k, g in zip(names, grads)}, {k: v.detach() for k, v in t.items()}


def local_grad(name, values, upstream, Xb, Yb, through=None):
    """Gradient of the loss w.r.t. `name` through its consumers alone: the sum, over each operation
    that reads `name`, of that operation's vector-Jacobian product with its output's gradient
    taken from `upstream` (the learner's own gradients). `values` holds the forward tensors.
    through: the output of the one consumer to follow (the others' paths left out)."""
    n = Xb.shape[0]
    total = torch.zeros_like(values[name])
    for out, ins, fn in OPS:
        if name not in ins or through not in (None, out):
            continue
        args = [values[i].detach().clone().requires_grad_(i == name) for i in ins]
        y = fn(*args, Xb, Yb, n)
        if out != "loss":  # the product with dy, summed: the same gradient, bit for bit, as
            # grad_outputs=dy, which makes torch import sympy (0.4 s of CPU per process)
            y = (y * upstream[out].reshape(y.shape).to(y.dtype)).sum()
        (g,) = torch.autograd.grad(y, args[ins.index(name)])
        total += g
    return total


def autograd_step_grads(parameters, Xb, Yb):
    """Autograd's gradients of Exercise 4's loss, in the order of parameters."""
    leaves = [p.detach().clone().requires_grad_() for p in parameters]
    loss, _ = forward_ex4(Xb, Yb, leaves)
    return list(torch.autograd.grad(loss, leaves))


def consumers(name):
    """The outputs of the operations that read `name`, in the forward pass's order."""
    return [out for out, ins, _ in OPS if name in ins]


def downstream(name):
    """Every tensor the forward pass computes from `name`, directly or not."""
    found = {name}
    for out, ins, _ in OPS:
        if found & set(ins):
            found.add(out)
    return found - {name}
