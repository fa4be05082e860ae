"""Build notebooks/backprop_ninja.ipynb, the worked lecture, and execute it to store its outputs.

    .venv/bin/python tools/build_reference_notebook.py

The notebook is a list of (kind, id, source) items below: kind is "md" or "code", id is the
cell's stable snake_case id. Every printed figure is seeded and rounded, so the stored outputs
are the same on every run; the notebook runs on one thread from its first cell, so they are the
same whatever number of threads the machine allows (nbval checks them under every CPU kernel
path: tools/cpu_matrix.py).
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "backprop_ninja.ipynb"

CELLS = [
    # ------------------------------------------------------------------ introduction
    ("md", "title", r"""
# Becoming a backprop ninja

A worked version of the fourth *makemore* lecture,
[Building makemore Part 4: Becoming a Backprop Ninja](https://www.youtube.com/watch?v=q8SA3rM6ckI)
(A. Karpathy, 2022). We take the lecture's two-layer MLP with
BatchNorm (a character-level language model trained on 32,033 names) and stop relying on
`loss.backward()`: every gradient is derived and written by hand, then checked against the one
PyTorch computes.

This notebook is for anyone who has used autograd and wants to know what it does. You need
matrix multiplication, the chain rule and the course's first makemore notebooks; nothing else.
The course's exercise notebooks ask for the same gradients; this one is the worked reference,
with every answer and every expected figure.

Plan:
1. **Exercise 1**: backpropagate through the forward pass one line at a time (26 gradients).
2. **Exercise 2**: the gradient of cross-entropy in one expression.
3. **Exercise 3**: the gradient of BatchNorm in one expression.
4. **Exercise 4**: train the network with the manual backward pass only.
"""),
    ("md", "setup_intro", r"""
## Starter code

The data and vocabulary come from the course's `autograder` package, so this notebook, the
exercise notebooks and the grader all build the same tensors. The notebook runs on one thread:
its tensors are small, so a second thread brings mostly overhead, and one thread makes every
figure below the same whatever number of cores your machine has.
"""),
    ("code", "setup_imports", r"""
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt

from autograder.data import load_words, splits, itos, stoi, vocab_size
from autograder.compare import cmp

torch.set_num_threads(1)  # small tensors; and the same figures on any machine
"""),
    ("code", "setup_data", r"""
words = load_words()
print(f'{len(words):,} names, the longest has {max(len(w) for w in words)} characters')
print(words[:8])
"""),
    ("code", "setup_vocab", r"""
# '.' marks both the start and the end of a name; a..z follow it.
print(''.join(itos), f'({vocab_size} symbols)')
print(stoi['.'], stoi['a'], stoi['z'])
"""),
    ("md", "setup_splits_intro", r"""
Each example is the indices of the 3 previous characters (padded with `.` at the start of a
name) and the index of the next one. The names are shuffled with a fixed seed and split
80/10/10 into training, development (validation) and test sets.
"""),
    ("code", "setup_splits", r"""
block_size = 3  # characters of context
(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = splits()
for name, (X, Y) in [('train', (Xtr, Ytr)), ('dev', (Xdev, Ydev)), ('test', (Xte, Yte))]:
    print(f'{name:5s} X {tuple(X.shape)}  Y {tuple(Y.shape)}')
"""),
    ("md", "cmp_intro", r"""
### Comparing gradients

`cmp(name, dt, t)` prints one row per gradient: its shape, whether it is close to the
reference (`approximate`, `torch.allclose`), and the largest absolute difference (`maxdiff`).
A right answer differs from PyTorch's by float32 rounding alone, and how much (even whether
the last bits agree, the lecture's `exact:` column) depends on your CPU's instruction set:
such a row says `maxdiff: < 1e-6`, the same on every machine. A wrong answer's row shows its
`maxdiff` figure. It checks
the shape first: `torch.all(dt == t)` would silently *broadcast* a `(32, 64)` tensor against a
`(1, 64)` one and could report a wrong-shaped gradient as correct. A shape that differs only by
leading dimensions of size 1, such as `(64,)` for `(1, 64)`, broadcasts the same way and is
accepted with a note; `(32,)` for `(32, 1)` is not (it would broadcast as a row, not a column).
"""),
    # ------------------------------------------------------------------ model and forward pass
    ("md", "init_intro", r"""
### Parameters

Every random draw below takes the generator `g`, so the parameters and the batch are the same
on every run. The scales are unusual on purpose: with biases at zero and a BatchNorm gain of
exactly one, a backward pass that forgot a factor of `bngain`, or wrongly multiplied by a bias,
would still produce the right numbers, and the mistake would go unnoticed. `b1` is useless under BatchNorm, which subtracts the mean
right after it; it stays so that we can check its gradient (which should come out as zero).
"""),
    ("code", "init_params", r"""
n_embd = 10     # dimensions of a character embedding
n_hidden = 64   # neurons in the hidden layer

g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab_size, n_embd), generator=g)
# Layer 1
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5/3) / (n_embd * block_size)**0.5
b1 = torch.randn(n_hidden, generator=g) * 0.1
# Layer 2
W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
b2 = torch.randn(vocab_size, generator=g) * 0.1
# BatchNorm
bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
bnbias = torch.randn((1, n_hidden), generator=g) * 0.1

parameters = [C, W1, b1, W2, b2, bngain, bnbias]
print(f'{sum(p.nelement() for p in parameters):,} parameters')
for p in parameters:
    p.requires_grad = True
"""),
    ("code", "init_batch", r"""
batch_size = 32
n = batch_size  # a shorter name, used in the formulas
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]
print(Xb.shape, Yb.shape)
"""),
    ("md", "forward_intro", r"""
### The forward pass, one step per line

The forward pass is cut into the smallest steps we can differentiate, each stored in its own
variable. `retain_grad()` asks PyTorch to keep the gradient of each of these intermediates
(normally it keeps only the leaves' gradients), so that we can compare our gradient for every
line with PyTorch's.

Two lines are written with care. The variance divides by `n - 1`, not `n` (Bessel's correction,
see below). And `counts_sum**-1` is used instead of `1.0 / counts_sum`: both are correct, but
PyTorch's backward for the power computes the same expression as our derivative does, so the
two gradients agree to the last bit.
"""),
    ("code", "forward_chunked", r"""
emb = C[Xb]                                   # (32, 3, 10) embed the characters
embcat = emb.view(emb.shape[0], -1)           # (32, 30) concatenate the 3 embeddings
# Linear layer 1
hprebn = embcat @ W1 + b1                     # (32, 64) pre-activation
# BatchNorm
bnmeani = 1/n * hprebn.sum(0, keepdim=True)   # (1, 64) batch mean
bndiff = hprebn - bnmeani                     # (32, 64)
bndiff2 = bndiff**2                           # (32, 64)
bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True)  # (1, 64) batch variance, Bessel-corrected
bnvar_inv = (bnvar + 1e-5)**-0.5              # (1, 64)
bnraw = bndiff * bnvar_inv                    # (32, 64) zero mean, unit variance
hpreact = bngain * bnraw + bnbias             # (32, 64)
# Non-linearity
h = torch.tanh(hpreact)                       # (32, 64)
# Linear layer 2
logits = h @ W2 + b2                          # (32, 27)
# Cross-entropy loss, the same as F.cross_entropy(logits, Yb)
logit_maxes = logits.max(1, keepdim=True).values  # (32, 1) for numerical stability
norm_logits = logits - logit_maxes            # (32, 27)
counts = norm_logits.exp()                    # (32, 27)
counts_sum = counts.sum(1, keepdim=True)      # (32, 1)
counts_sum_inv = counts_sum**-1               # (32, 1)
probs = counts * counts_sum_inv               # (32, 27) each row sums to 1
logprobs = probs.log()                        # (32, 27)
loss = -logprobs[range(n), Yb].mean()         # the mean negative log-likelihood

# PyTorch's gradients, the reference for ours
for p in parameters:
    p.grad = None
for t in [logprobs, probs, counts_sum_inv, counts_sum, counts, norm_logits, logit_maxes,
          logits, h, hpreact, bnraw, bnvar_inv, bnvar, bndiff2, bndiff, bnmeani, hprebn,
          embcat, emb]:
    t.retain_grad()
loss.backward()
print(f'loss {loss.item():.4f}')
"""),
    ("md", "forward_grader_intro", r"""
The course's grader builds the same model from the same seed (`autograder.model`). This check
confirms that the parameters, the batch and the loss above are the ones it uses.
"""),
    ("code", "forward_matches_grader", r"""
from autograder.model import init_params, forward

grader_params = init_params(n_hidden)
assert all(torch.equal(grader_params[k], p) for k, p in
           zip(['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias'], parameters))
assert torch.equal(forward(grader_params, Xb, Yb)['loss'], loss.detach())
print('same parameters and same loss as the grader')
"""),
    # ------------------------------------------------------------------ exercise 1
    ("md", "ex1_intro", r"""
---
## Exercise 1: backpropagate through every line

We walk the forward pass backwards. For each variable `x` we write `dx`, the gradient of the
loss with respect to `x`; it always has the same shape as `x`. Each step uses the gradient of
the line's output, already computed, times the local derivative of that line (the chain rule).

Three rules cover almost everything:
- **A broadcast in the forward pass is a sum in the backward pass.** If a `(32, 1)` column was
  stretched across 27 columns, each of its elements was used 27 times, and the gradients of those
  27 uses add up: sum over the stretched dimension, with `keepdim=True` to keep the shape.
- **A sum in the forward pass is a broadcast in the backward pass.** Every term of a sum has
  local derivative 1, so each receives the gradient of the sum.
- **A variable used in several places collects the gradients of all of them** (`+=`).

Every row of `cmp` below should say `approximate: True` and `maxdiff: < 1e-6`. In the
lecture the first eleven are exact to the last bit, and from `hpreact` on they differ by a few
`1e-9`: on most CPUs PyTorch's kernel for the backward pass of `tanh` rounds slightly
differently from our `(1 - h**2) * dh` (it fuses a multiply and an add), and that last-bit
difference flows down to every gradient below it. Without those fused instructions
(`ATEN_CPU_CAPABILITY=default`) all 26 agree to the last bit.
"""),
    ("md", "ex1_loss_chain_notes", r"""
### The loss: from `logprobs` to `logits`

- `dlogprobs`: the loss is minus the mean of 32 entries of `logprobs`, one per row (the log
  probability of the correct next character). Each of those entries has gradient `-1/n`; the
  other 26 entries per row do not touch the loss, so their gradient is 0.
- `dprobs`: the derivative of `log(x)` is `1/x`. A correct character that got a small probability
  gets a large gradient.
- `dcounts_sum_inv`: `probs = counts * counts_sum_inv` multiplies by a `(32, 1)` column broadcast
  across 27 columns, so the local derivative is `counts` and we sum over those columns.
- `dcounts_sum`: the derivative of `x**-1` is `-x**-2`.
- `dcounts` has **two paths**: directly through `probs`, and through `counts_sum`. The row sum
  sends its gradient to every element of the row. The two contributions add.
- `dnorm_logits`: the derivative of `exp(x)` is `exp(x)`, which is `counts`.
- `dlogit_maxes`: subtracted from every column of its row, so minus the row sum. Subtracting the
  maximum does not change `probs` at all (it is only there to keep `exp` from overflowing), so
  this gradient should be zero up to float rounding. It is not exactly zero in floating point,
  so we still pass it on to `logits`.
- `dlogits` has two paths too: directly from `norm_logits`, and through the maximum. `max` picks
  one element per row; only that element affects the output, so it alone receives the
  gradient of `logit_maxes`. `F.one_hot` of the argmax puts a 1 at exactly those positions.
"""),
    ("code", "ex1_loss_chain", r"""
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
dprobs = (1.0 / probs) * dlogprobs
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
dcounts = counts_sum_inv * dprobs                     # path 1: through probs
dcounts_sum = -counts_sum**-2 * dcounts_sum_inv
dcounts += torch.ones_like(counts) * dcounts_sum     # path 2: through the row sum
dnorm_logits = counts * dcounts
dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)
dlogits = dnorm_logits.clone()                        # path 1: through norm_logits
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes  # path 2

rows_loss = [
    cmp('logprobs', dlogprobs, logprobs.grad),
    cmp('probs', dprobs, probs.grad),
    cmp('counts_sum_inv', dcounts_sum_inv, counts_sum_inv.grad),
    cmp('counts_sum', dcounts_sum, counts_sum.grad),
    cmp('counts', dcounts, counts.grad),
    cmp('norm_logits', dnorm_logits, norm_logits.grad),
    cmp('logit_maxes', dlogit_maxes, logit_maxes.grad),
    cmp('logits', dlogits, logits.grad),
]
"""),
    ("md", "ex1_layer2_notes", r"""
### Second linear layer and tanh

- `logits = h @ W2 + b2`: the gradients of a matrix product are matrix products again, and the
  shapes tell you which: `dh` must be `(32, 64)`, so it is `dlogits (32, 27) @ W2.T (27, 64)`;
  `dW2` must be `(64, 27)`, so it is `h.T (64, 32) @ dlogits (32, 27)`. The appendix derives this.
- `b2` is broadcast over the 32 rows, so `db2` sums over them.
- `h = tanh(hpreact)`: the derivative of `tanh` is `1 - tanh**2`, and `tanh` is `h`, already
  computed.
"""),
    ("code", "ex1_layer2", r"""
dh = dlogits @ W2.T
dW2 = h.T @ dlogits
db2 = dlogits.sum(0)
dhpreact = (1.0 - h**2) * dh

rows_layer2 = [
    cmp('h', dh, h.grad),
    cmp('W2', dW2, W2.grad),
    cmp('b2', db2, b2.grad),
    cmp('hpreact', dhpreact, hpreact.grad),
]
"""),
    ("md", "ex1_batchnorm_notes", r"""
### BatchNorm

- `hpreact = bngain * bnraw + bnbias`: `bngain` and `bnbias` are `(1, 64)` rows broadcast over
  the batch, so their gradients sum over dimension 0 (keeping it). `bnraw` is `(32, 64)` already.
- `bnraw = bndiff * bnvar_inv`: the same pattern, with `bnvar_inv` the broadcast row.
- `bnvar_inv = (bnvar + 1e-5)**-0.5`: power rule, `-0.5 * (bnvar + 1e-5)**-1.5`.
- `bnvar = 1/(n-1) * bndiff2.sum(0)`: a sum, so every element of the column receives the
  column's gradient, times `1/(n-1)`.
- `bndiff2 = bndiff**2` gives `2 * bndiff`. `bndiff` is used twice (for `bnraw` and for
  `bndiff2`), so its gradient has two parts.
- `bndiff = hprebn - bnmeani`: `bnmeani` is broadcast, so minus the column sum; `hprebn` gets the
  gradient unchanged, plus a second part through the mean (each element counts `1/n` in it).
"""),
    ("code", "ex1_batchnorm", r"""
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnraw = bngain * dhpreact
dbnbias = dhpreact.sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw                          # path 1: through bnraw
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv
dbndiff2 = 1.0/(n-1) * torch.ones_like(bndiff2) * dbnvar
dbndiff += 2 * bndiff * dbndiff2                      # path 2: through bndiff2
dhprebn = dbndiff.clone()                             # path 1: directly
dbnmeani = -dbndiff.sum(0, keepdim=True)
dhprebn += 1.0/n * torch.ones_like(hprebn) * dbnmeani  # path 2: through the mean

rows_batchnorm = [
    cmp('bngain', dbngain, bngain.grad),
    cmp('bnbias', dbnbias, bnbias.grad),
    cmp('bnraw', dbnraw, bnraw.grad),
    cmp('bnvar_inv', dbnvar_inv, bnvar_inv.grad),
    cmp('bnvar', dbnvar, bnvar.grad),
    cmp('bndiff2', dbndiff2, bndiff2.grad),
    cmp('bndiff', dbndiff, bndiff.grad),
    cmp('bnmeani', dbnmeani, bnmeani.grad),
    cmp('hprebn', dhprebn, hprebn.grad),
]
"""),
    ("md", "ex1_wrong_shape_intro", r"""
A common slip is to forget the sum for a broadcast variable. Without it, `dbnmeani` would have
the shape of `bndiff`, `(32, 64)`, and a plain `dt == t` would broadcast it against the true
`(1, 64)` gradient without complaint. `cmp` reports the shape instead:
"""),
    ("code", "ex1_wrong_shape_demo", r"""
dbnmeani_wrong_shape = -dbndiff  # the sum over the batch is missing
assert not cmp('bnmeani', dbnmeani_wrong_shape, bnmeani.grad).ok
"""),
    ("md", "ex1_layer1_notes", r"""
### First linear layer and the embedding

- `hprebn = embcat @ W1 + b1`: the same three formulas as for the second layer. `db1` comes out
  as zero (up to rounding): BatchNorm subtracts the batch mean right after, so `b1` cannot change
  the loss.
- `embcat = emb.view(32, 30)`: `view` only reshapes, so `demb` is `dembcat` viewed back to
  `(32, 3, 10)`.
- `emb = C[Xb]`: each of the 96 characters of the batch picks one row of `C`, and the same row is
  picked whenever a character repeats. Row `C[i]` therefore receives the **sum** of the gradients
  of all the positions where character `i` appears. The loop makes this explicit; `index_add_`
  does the same additions, in the same order, in one call (we use it in Exercise 4).
"""),
    ("code", "ex1_layer1", r"""
dembcat = dhprebn @ W1.T
dW1 = embcat.T @ dhprebn
db1 = dhprebn.sum(0)
demb = dembcat.view(emb.shape)
dC = torch.zeros_like(C)
for i in range(Xb.shape[0]):
    for j in range(Xb.shape[1]):
        dC[Xb[i, j]] += demb[i, j]   # accumulate: a character can appear many times
dC_vectorised = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, n_embd))
assert torch.equal(dC, dC_vectorised)

rows_layer1 = [
    cmp('embcat', dembcat, embcat.grad),
    cmp('W1', dW1, W1.grad),
    cmp('b1', db1, b1.grad),
    cmp('emb', demb, emb.grad),
    cmp('C', dC, C.grad),
]
"""),
    ("code", "ex1_summary", r"""
from autograder.model import GRAD_NAMES  # the 26 gradients, in the lecture's order

rows = rows_loss + rows_layer2 + rows_batchnorm + rows_layer1
assert [r.name for r in rows] == GRAD_NAMES
print(f'{sum(r.ok for r in rows)}/{len(rows)} gradients match autograd')
assert all(r.ok for r in rows)
"""),
    # ------------------------------------------------------------------ Bessel
    ("md", "bessel_notes", r"""
---
## Aside: Bessel's correction in BatchNorm

The batch variance can be estimated by dividing the sum of squared deviations by `n` (biased)
or by `n - 1` (unbiased, Bessel's correction). The deviations are measured from the *batch* mean,
which sits closer to the batch than the true mean does, so dividing by `n` underestimates the
variance on average by a factor `(n-1)/n`. With a batch of 32 that is only 3%, but it is
systematic.

`torch.nn.BatchNorm1d` normalises a training batch with the biased estimate and keeps the
unbiased one for its running variance, used at inference: training and inference see slightly
different variances. The lecture prefers to use the unbiased estimate in both places, and so do
we: the training forward pass divides by `n - 1`, and so does the calibration after training in
Exercise 4. The demo draws many batches from a distribution of variance 1 and averages both
estimates.
"""),
    ("code", "bessel_demo", r"""
g_demo = torch.Generator().manual_seed(42)
for size in [4, 32]:
    batches = torch.randn((100_000, size), generator=g_demo, dtype=torch.float64)  # variance 1
    biased = batches.var(1, unbiased=False).mean().item()
    unbiased = batches.var(1, unbiased=True).mean().item()
    print(f'batch of {size:2d}: divide by n: {biased:.3f}  divide by n-1: {unbiased:.3f}  '
          f'(n-1)/n = {(size - 1) / size:.3f}')
"""),
    # ------------------------------------------------------------------ exercise 2
    ("md", "ex2_intro", r"""
---
## Exercise 2: cross-entropy in one go

Eight lines of the chunked forward pass compute the loss from `logits`. PyTorch does it in one call, and the
gradient too has a short closed form. Write $p = \mathrm{softmax}(\ell)$ for one row of logits
and $y$ for the correct index. The loss of that row is $-\log p_y$, so

$$\frac{\partial(-\log p_y)}{\partial \ell_i} = p_i - [i = y].$$

For the batch, the loss is the mean over the `n` rows, which divides every row's gradient by
`n`. First, the forward pass:
"""),
    ("code", "ex2_forward", r"""
loss_fast = F.cross_entropy(logits, Yb)
print(f'loss {loss_fast.item():.4f}')
print('same as the chunked loss (within 1e-6):', abs(loss_fast.item() - loss.item()) < 1e-6)
"""),
    ("code", "ex2_backward", r"""
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
assert cmp('logits', dlogits, logits.grad).ok  # approximate; the lecture's maxdiff: about 5e-9
"""),
    ("md", "ex2_intuition", r"""
### What the gradient says

Each row of `dlogits` is the row of probabilities with 1 taken off at the correct character,
divided by `n`. Gradient descent moves *against* the gradient, so:
- the correct logit, with the negative entry `p_y - 1`, is pushed **up**;
- every wrong logit, with the positive entry `p_i`, is pulled **down**, in proportion to the
  probability the network wrongly gave it.

The entries of a row sum to zero: the push on the correct logit equals the sum of the pulls on
the others. The more confident and right the network is (`p_y` close to 1), the weaker all the
forces; a perfect prediction gives a row of zeros. In the heatmap, each row's one dark cell is
the correct character.
"""),
    ("code", "ex2_one_row", r"""
row = 0
p = F.softmax(logits, 1)[row].detach()
print('correct character:', itos[Yb[row]])
print('probabilities:    ', [round(v, 3) for v in p.tolist()])
print('n * dlogits[0]:   ', [round(v, 3) for v in (n * dlogits[row]).tolist()])
print('every row sums to zero:', torch.allclose(dlogits.sum(1), torch.zeros(n), atol=1e-7))
"""),
    ("code", "ex2_heatmap", r"""
plt.figure(figsize=(8, 8))
plt.imshow(dlogits.detach(), cmap='gray')
plt.title('dlogits: dark = the correct character (pushed up), light = pulled down')
plt.xlabel('next character')
plt.ylabel('example in the batch')
plt.xticks(range(vocab_size), itos)
plt.colorbar(shrink=0.8)
plt.show()
"""),
    # ------------------------------------------------------------------ exercise 3
    ("md", "ex3_intro", r"""
---
## Exercise 3: BatchNorm in one go

BatchNorm takes seven lines of the chunked forward pass. Written as formulas, for one column
(one neuron) with values $x_1, \dots, x_n$ over the batch:

$$\mu = \frac{1}{n}\sum_{i} x_i, \qquad
\sigma^2 = \frac{1}{n-1}\sum_{i} (x_i - \mu)^2, \qquad
\hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
y_i = \gamma \hat x_i + \beta.$$

Each column is independent of the others, so we derive the gradient for one column and then
apply it to all 64 at once. First check that the formulas give the same `hpreact` as the
chunked lines:
"""),
    ("code", "ex3_forward", r"""
hpreact_fast = (bngain * (hprebn - hprebn.mean(0, keepdim=True))
                / torch.sqrt(hprebn.var(0, keepdim=True, unbiased=True) + 1e-5) + bnbias)
print('same as the chunked hpreact (within 1e-6):',
      torch.allclose(hpreact_fast, hpreact, rtol=0, atol=1e-6))
"""),
    ("md", "ex3_derivation", r"""
### The derivation

We know $\partial L / \partial y_i$ (that is `dhpreact`) and want $\partial L / \partial x_i$
(`dhprebn`). Write $s = (\sigma^2 + \epsilon)^{-1/2}$, so that $x_i - \mu = \hat x_i / s$, and
write $g_i = \partial L / \partial y_i$.

1. Through $y_i = \gamma \hat x_i + \beta$: $\dfrac{\partial L}{\partial \hat x_i} = \gamma g_i$.
2. $\sigma^2$ affects every $\hat x_j$, through $s$:
   $$\frac{\partial L}{\partial \sigma^2} = \sum_j \gamma g_j (x_j - \mu)\left(-\tfrac12\right) s^3
   = -\tfrac12 \gamma s^2 \sum_j g_j \hat x_j .$$
3. $\mu$ affects every $\hat x_j$ directly, and $\sigma^2$ through the deviations; the second part
   contains $\sum_j (x_j - \mu) = 0$ and drops out:
   $$\frac{\partial L}{\partial \mu} = -\gamma s \sum_j g_j .$$
4. $x_i$ reaches the loss along three paths: $\hat x_i$ directly, $\mu$ (with weight $1/n$) and
   $\sigma^2$ (with weight $2(x_i - \mu)/(n-1)$):
   $$\frac{\partial L}{\partial x_i} = \gamma s\, g_i
   + \frac{1}{n}\frac{\partial L}{\partial \mu}
   + \frac{2 (x_i - \mu)}{n-1}\frac{\partial L}{\partial \sigma^2}
   = \gamma s\, g_i - \frac{\gamma s}{n} \sum_j g_j - \frac{\gamma s}{n-1}\, \hat x_i \sum_j g_j \hat x_j .$$
5. Taking $\gamma s / n$ out:
   $$\boxed{\frac{\partial L}{\partial x_i} = \frac{\gamma s}{n}\left( n\, g_i - \sum_j g_j
   - \frac{n}{n-1}\, \hat x_i \sum_j g_j \hat x_j \right)}$$

In code, $\gamma$ is `bngain`, $s$ is `bnvar_inv`, $\hat x$ is `bnraw` and $g$ is `dhpreact`;
the sums over $j$ are sums over the batch, dimension 0, broadcast back over the rows.
"""),
    ("code", "ex3_backward", r"""
dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                    - n/(n-1) * bnraw * (dhpreact * bnraw).sum(0))
assert cmp('hprebn', dhprebn, hprebn.grad).ok  # approximate; the lecture's maxdiff: about 1e-9
"""),
    # ------------------------------------------------------------------ exercise 4
    ("md", "ex4_intro", r"""
---
## Exercise 4: train with your own backward pass

Now we put it all together and train the network with no `loss.backward()`: the forward pass
with `F.cross_entropy` and a compact BatchNorm, the backward pass from Exercises 1 to 3. The
hidden layer has 200 neurons this time. We train for 200,000 steps of stochastic gradient
descent on batches of 32, with learning rate 0.1, then 0.01 for the second half.

The parameters are drawn from a fresh generator with the same seed, as before.
"""),
    ("code", "ex4_init", r"""
n_embd = 10
n_hidden = 200

g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab_size, n_embd), generator=g)
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5/3) / (n_embd * block_size)**0.5
b1 = torch.randn(n_hidden, generator=g) * 0.1
W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
b2 = torch.randn(vocab_size, generator=g) * 0.1
bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
bnbias = torch.randn((1, n_hidden), generator=g) * 0.1

parameters = [C, W1, b1, W2, b2, bngain, bnbias]
print(f'{sum(p.nelement() for p in parameters):,} parameters')
for p in parameters:
    p.requires_grad = True
"""),
    ("md", "ex4_step_intro", r"""
One training step's forward and backward pass, as a function: it returns the loss and the
gradients of the 7 parameters, in the order of `parameters`.
"""),
    ("code", "ex4_step", r"""
def forward_backward(Xb, Yb):
    n = Xb.shape[0]
    # forward pass: the variance as in Exercise 1 (it equals hprebn.var(0, unbiased=True)),
    # reusing bndiff, which the normalisation needs anyway; var alone would cost as much
    emb = C[Xb]
    embcat = emb.view(n, -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bndiff = hprebn - bnmean
    bnvar = bndiff.square().sum(0, keepdim=True) / (n - 1)
    bnvar_inv = torch.rsqrt(bnvar + 1e-5)              # (bnvar + 1e-5)**-0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Yb)

    # backward pass: the one-go formulas, with as few tensor operations as possible (at a
    # batch of 32, launching an operation costs more than computing it)
    dlogits = F.softmax(logits, 1)                     # Exercise 2
    dlogits.scatter_add_(1, Yb.view(n, 1), torch.full((n, 1), -1.0))  # [range(n), Yb] -= 1
    dlogits /= n
    dh = dlogits @ W2.T                                # second linear layer
    dW2 = (dlogits.T @ h).T                            # h.T @ dlogits, 20% faster this way
    db2 = dlogits.sum(0)
    dhpreact = torch.addcmul(dh, dh * h, h, value=-1)  # tanh: (1 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)  # BatchNorm, Exercise 3
    dbnbias = dhpreact.sum(0, keepdim=True)
    # Exercise 3's formula, whose two batch sums are dbnbias and dbngain, rearranged:
    # bngain * bnvar_inv * (dhpreact - dbnbias / n - bnraw * dbngain / (n - 1)), in place
    dhprebn = torch.add(dhpreact, dbnbias, alpha=-1 / n)
    dhprebn.addcmul_(bnraw, dbngain, value=-1 / (n - 1))
    dhprebn *= bngain * bnvar_inv
    dW1 = embcat.T @ dhprebn                           # first linear layer
    db1 = dhprebn.sum(0)
    dembcat = dhprebn @ W1.T
    # embedding: demb is dembcat viewed as (n, 3, 10), that is n * 3 rows of 10
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), dembcat.view(-1, n_embd))
    return loss, [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
"""),
    ("md", "ex4_check_intro", r"""
Before training, check the first step against autograd. The check draws its batch from a copy
of the generator, so the training loop below starts with this very batch. Expect
`approximate: True` and `maxdiff: < 1e-6` everywhere (the differences are around `1e-8`).
"""),
    ("code", "ex4_check_first_step", r"""
g_check = torch.Generator().set_state(g.get_state())  # a copy of g: g itself is left untouched
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g_check)
loss, grads = forward_backward(Xtr[ix], Ytr[ix])
for p in parameters:
    p.grad = None
loss.backward()
for name, p, grad in zip(['C', 'W1', 'b1', 'W2', 'b2', 'bngain', 'bnbias'], parameters, grads):
    cmp(name, grad, p.grad)
"""),
    ("md", "ex4_train_intro", r"""
The training loop runs under `torch.inference_mode()`: no graph is recorded (nor the bookkeeping
`torch.no_grad()` keeps for tensors that may later need one), and the update is our own.
It takes a minute or two.
"""),
    ("code", "ex4_train", r"""
max_steps = 200_000
lossi = []

with torch.inference_mode():
    for i in range(max_steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        loss, grads = forward_backward(Xtr[ix], Ytr[ix])
        lr = 0.1 if i < 100_000 else 0.01  # step learning-rate decay
        for p, grad in zip(parameters, grads):
            p.add_(grad, alpha=-lr)        # p -= lr * grad, in one operation
        lossi.append(loss.log10().item())
        if (i + 1) % 20_000 == 0:          # one batch's loss is noisy: the mean of the last 20,000
            mean = sum(10**l for l in lossi[-20_000:]) / 20_000
            print(f'{i + 1:7d}/{max_steps:7d}: mean loss {mean:.1f}')
"""),
    ("code", "ex4_loss_curve", r"""
# One point per 1,000 steps: the mean of their log10 losses (single batches are noisy).
plt.figure(figsize=(8, 4))
plt.plot(torch.tensor(lossi).view(-1, 1000).mean(1))
plt.title('training loss (the learning rate drops to 0.01 at step 100,000)')
plt.xlabel('step (thousands)')
plt.ylabel('log10 loss, mean over 1,000 steps')
plt.show()
"""),
    ("md", "ex4_calibrate_intro", r"""
### Calibrate BatchNorm

During training BatchNorm normalises each batch with that batch's own statistics. To use the
network on one example at a time, we fix the mean and variance once, measured over the whole
training set (unbiased variance, as in training).
"""),
    ("code", "ex4_calibrate", r"""
with torch.no_grad():
    emb = C[Xtr]
    embcat = emb.view(emb.shape[0], -1)
    hpreact = embcat @ W1 + b1
    bnmean = hpreact.mean(0, keepdim=True)
    bnvar = hpreact.var(0, keepdim=True, unbiased=True)
"""),
    ("code", "ex4_evaluate", r"""
@torch.no_grad()
def split_loss(X, Y):
    emb = C[X]
    embcat = emb.view(emb.shape[0], -1)
    hpreact = embcat @ W1 + b1
    hpreact = bngain * (hpreact - bnmean) * (bnvar + 1e-5)**-0.5 + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    return F.cross_entropy(logits, Y).item()

train_loss, val_loss = split_loss(Xtr, Ytr), split_loss(Xdev, Ydev)
print(f'train {train_loss:.2f}  (the lecture: 2.0705)')
print(f'val   {val_loss:.2f}  (the lecture: 2.1099)')
"""),
    ("code", "ex4_check_targets", r"""
# The lecture reports train 2.0705 and val 2.1099. Your run should land within 0.02 of both.
assert abs(train_loss - 2.0705) < 0.02, train_loss
assert abs(val_loss - 2.1099) < 0.02, val_loss
print('train and val within 0.02 of the lecture: True')
"""),
    ("md", "ex4_sample_intro", r"""
### Sample from the model

Start from three `.` characters, draw the next character from the predicted distribution, slide
the context, and stop at the first `.`.
"""),
    ("code", "ex4_sample", r"""
g_sample = torch.Generator().manual_seed(2147483647 + 10)
with torch.no_grad():
    for _ in range(20):
        out = []
        context = [0] * block_size
        while True:
            emb = C[torch.tensor([context])]  # (1, block_size, n_embd)
            embcat = emb.view(emb.shape[0], -1)
            hpreact = embcat @ W1 + b1
            hpreact = bngain * (hpreact - bnmean) * (bnvar + 1e-5)**-0.5 + bnbias
            h = torch.tanh(hpreact)
            logits = h @ W2 + b2
            probs = F.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1, generator=g_sample).item()
            context = context[1:] + [ix]
            if ix == 0:
                break
            out.append(itos[ix])
        print(''.join(out))
"""),
    # ------------------------------------------------------------------ appendices
    ("md", "appendix_linear", r"""
---
## Appendix A: backprop through a linear layer

For `out = x @ W + b` with `x` of shape `(n, d_in)`, `W` `(d_in, d_out)`, `b` `(d_out,)`, we are
given `dout` of shape `(n, d_out)`. Element by element,
$\text{out}_{ik} = \sum_j x_{ij} W_{jk} + b_k$, so

- $\partial L / \partial x_{ij} = \sum_k \text{dout}_{ik} W_{jk}$, that is `dx = dout @ W.T`;
- $\partial L / \partial W_{jk} = \sum_i x_{ij}\, \text{dout}_{ik}$, that is `dW = x.T @ dout`;
- $\partial L / \partial b_k = \sum_i \text{dout}_{ik}$, that is `db = dout.sum(0)`.

You do not have to remember these. The gradient of each has the shape of the variable, and
there is only one way to multiply `dout` with the *other* factor to get that shape: `dx` must
be `(n, d_in)`, and only `(n, d_out) @ (d_out, d_in)` gives it; `dW` must be `(d_in, d_out)`,
and only `(d_in, n) @ (n, d_out)` gives it. A tiny example makes it concrete (float64, so the
match is exact up to the last few bits):
"""),
    ("code", "appendix_linear_demo", r"""
g_demo = torch.Generator().manual_seed(0)
x = torch.randn((4, 3), generator=g_demo, dtype=torch.float64, requires_grad=True)
W = torch.randn((3, 2), generator=g_demo, dtype=torch.float64, requires_grad=True)
b = torch.randn(2, generator=g_demo, dtype=torch.float64, requires_grad=True)
out = x @ W + b
dout = torch.randn(out.shape, generator=g_demo, dtype=torch.float64)
out.backward(dout)  # autograd, given the gradient of the output

assert cmp('x', dout @ W.T, x.grad).ok    # (4, 2) @ (2, 3) -> (4, 3)
assert cmp('W', x.T @ dout, W.grad).ok    # (3, 4) @ (4, 2) -> (3, 2)
assert cmp('b', dout.sum(0), b.grad).ok   # (4, 2) summed over the batch -> (2,)
"""),
    ("md", "appendix_broadcasting", r"""
## Appendix B: broadcasting and its gradient

When PyTorch combines tensors of different shapes, it stretches dimensions of size 1 (and
missing leading dimensions) to match, without copying. In the backward pass every stretched
copy contributes a gradient, and they add up: **sum over each broadcast dimension**.

- A `(1, 4)` row used with a `(3, 4)` matrix: sum over dimension 0 with `keepdim=True`, so
  the gradient keeps the shape `(1, 4)`.
- A `(4,)` vector used with a `(3, 4)` matrix: it was treated as `(1, 4)`, so sum over
  dimension 0 *without* `keepdim`, giving `(4,)`.
- A `(3, 1)` column: sum over dimension 1 with `keepdim=True`.

Forgetting `keepdim` where it matters gives the wrong shape; `cmp` reports it.
"""),
    ("code", "appendix_broadcasting_demo", r"""
g_demo = torch.Generator().manual_seed(0)
a = torch.randn((3, 4), generator=g_demo, dtype=torch.float64, requires_grad=True)
row = torch.randn((1, 4), generator=g_demo, dtype=torch.float64, requires_grad=True)
col = torch.randn((3, 1), generator=g_demo, dtype=torch.float64, requires_grad=True)
vec = torch.randn(4, generator=g_demo, dtype=torch.float64, requires_grad=True)
out = a * row + col + vec
dout = torch.randn(out.shape, generator=g_demo, dtype=torch.float64)
out.backward(dout)

assert cmp('a', dout * row, a.grad).ok
assert cmp('row', (dout * a).sum(0, keepdim=True), row.grad).ok
assert cmp('col', dout.sum(1, keepdim=True), col.grad).ok
assert cmp('vec', dout.sum(0), vec.grad).ok
# Two slips, both reported: keepdim forgotten ((3,) would broadcast as a row, not a column),
# and the sum taken over the wrong dimension.
assert not cmp('col', dout.sum(1), col.grad).ok
assert not cmp('col', dout.sum(0, keepdim=True), col.grad).ok
"""),
]


def build():
    """The notebook, unexecuted."""
    ids = [cell_id for _, cell_id, _ in CELLS]
    assert len(ids) == len(set(ids)), "cell ids must be unique"
    make = {"md": new_markdown_cell, "code": new_code_cell}
    nb = new_notebook(cells=[make[kind](source.strip("\n"), id=cell_id)
                             for kind, cell_id, source in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def merge_streams(cell):
    """Join consecutive stream outputs of the same name: how a cell's printing is split into
    chunks depends on timing, and the stored file should not."""
    merged = []
    for out in cell.outputs:
        if (merged and out.output_type == "stream" and merged[-1].output_type == "stream"
                and merged[-1].name == out.name):
            merged[-1].text += out.text
        else:
            merged.append(out)
    cell.outputs = merged


def main():
    nb = build()
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        if cell.cell_type == "code":
            merge_streams(cell)
    stderr = [c.id for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.get("name") == "stderr"]
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)}: {len(nb.cells)} cells, executed in {seconds:.0f} s")
    if stderr:
        sys.exit(f"error: cells wrote to stderr: {', '.join(stderr)}")


if __name__ == "__main__":
    main()
