"""Exercise 3: the gradient of BatchNorm in one go."""
from cells import answer, grad_tests, locked, md, setup_cells
from nb_ex1 import VIDEO

CELLS = [
    md("ex3_intro", f"""
# Exercise 3: BatchNorm in one go (4 points)

Exercise 1 went through BatchNorm in nine small steps. Here you derive the whole layer's
gradient on paper, as the lecture does in its Exercise 3
([Becoming a Backprop Ninja]({VIDEO})), and write `dhprebn` from `dhpreact` in one
expression. The setup below runs the same network as Exercise 1; `dhpreact` is given.
"""),
    *setup_cells(64),
    locked("ex3_fast_forward", """
# The BatchNorm layer in one line; Bessel's correction (n-1) as in the forward pass above.
hpreact_fast = bngain * (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt(hprebn.var(0, keepdim=True, unbiased=True) + 1e-5) + bnbias
print("max diff to the chunked forward pass:", f"{(hpreact_fast - hpreact).abs().max().item():.0e}")
dhpreact = ref["hpreact"]  # given: the gradient flowing into BatchNorm from above
"""),
    md("ex3_task", r"""
---
## Your task: `dhprebn` in one expression (4 points)

For one neuron, with batch values $x_i$ ($i = 1..n$):

$$\mu = \frac{1}{n}\sum_i x_i,\qquad \sigma^2 = \frac{1}{n-1}\sum_i (x_i-\mu)^2,\qquad
\hat{x}_i = \frac{x_i-\mu}{\sqrt{\sigma^2+\epsilon}},\qquad y_i = \gamma\,\hat{x}_i + \beta.$$

You are given $\partial L/\partial y_i$ for every $i$ (that is `dhpreact`) and want
$\partial L/\partial x_j$. Every $x_j$ reaches every $y_i$ three ways: directly (only when
$i = j$), through $\mu$, and through $\sigma^2$. Derive $\partial L/\partial x_j$ on paper,
simplify it until it is written with $\gamma$, $\sigma^2+\epsilon$, the $\hat{x}$ and the
$\partial L/\partial y$ only, then write it for all 64 neurons at once with broadcasting:
`dhprebn` has shape (32, 64). Useful tensors: `bngain` ($\gamma$), `bnvar_inv`
($1/\sqrt{\sigma^2+\epsilon}$), `bnraw` ($\hat{x}$), `dhpreact`, `n`.

<details><summary>Hint 1: the first link</summary>

$y_i$ depends on $x$ only through $\hat{x}_i$: what is $\partial L/\partial \hat{x}_i$ in terms of
$\partial L/\partial y_i$?

</details>

<details><summary>Hint 2: the two middle links</summary>

Find $\partial\mu/\partial x_j$ and $\partial\sigma^2/\partial x_j$ first. For the second, the
deviations $x_i - \mu$ sum to zero over the batch, which makes the terms that come from $\mu$
vanish.

</details>

<details><summary>Hint 3: putting the paths together</summary>

$\partial L/\partial x_j = \sum_i \frac{\partial L}{\partial \hat{x}_i}\,
\frac{\partial \hat{x}_i}{\partial x_j}$, where $\partial \hat{x}_i/\partial x_j$ has one term
per path (the direct one only for $i = j$). Write $\hat{x}_i$ wherever
$(x_i-\mu)/\sqrt{\sigma^2+\epsilon}$ appears, and take the factor common to every term out in
front. You should end with three terms, one per path; two of them contain a sum over the batch.

</details>

<details><summary>Hint 4: broadcasting</summary>

A sum over the batch is `.sum(0)`, of shape (64,), which broadcasts against (32, 64) rows.
Keep Bessel's correction: $\sigma^2$ divides by $n-1$ while $\mu$ divides by $n$, and if your
derivation loses that difference, the check comes out close but `False`.

</details>
"""),
    answer("ex3_dhprebn", "ex3"),
    md("ex3_check_expect", """
Expect `approximate: True` and `maxdiff: < 1e-6`: the one-go formula matches up to float32
rounding (the lecture's maxdiff: about 1e-9).
"""),
    locked("ex3_check_dhprebn", 'rows = report(["hprebn"], globals(), ref, "ex3")'),
    *grad_tests("ex3", ["hprebn"], points=4),
    md("ex3_done", """
---
With Exercises 2 and 3, the whole backward pass fits in about twenty lines. Exercise 4 uses
it to train the network.
"""),
]
