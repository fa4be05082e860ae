"""Exercise 3: the gradient of BatchNorm in one go."""
from cells import answer, grad_tests, locked, md, setup_cells

CELLS = [
    md("ex3_intro", """
# Exercise 3: BatchNorm in one go (4 points)

Exercise 1 went through BatchNorm in nine small steps. Here you derive the whole layer's
gradient on paper and write `dhprebn` from `dhpreact` in one expression. The setup below
runs the same network as Exercise 1; `dhpreact` is given.
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

Every $x_j$ reaches every $y_i$ three ways: directly, through $\mu$, and through $\sigma^2$.
Adding the three paths and simplifying gives

$$\frac{\partial L}{\partial x_j} = \frac{\gamma}{n\sqrt{\sigma^2+\epsilon}}
\left( n\,\frac{\partial L}{\partial y_j} - \sum_i \frac{\partial L}{\partial y_i}
- \frac{n}{n-1}\,\hat{x}_j \sum_i \frac{\partial L}{\partial y_i}\,\hat{x}_i \right).$$

Write it for all 64 neurons at once with broadcasting: `dhprebn` has shape (32, 64). Useful
tensors: `bngain` ($\gamma$), `bnvar_inv` ($1/\sqrt{\sigma^2+\epsilon}$), `bnraw`
($\hat{x}$), `dhpreact`, `n`.

<details><summary>Hint: the derivation, step by step</summary>

1. $\partial L/\partial \hat{x}_i = \gamma\,\partial L/\partial y_i$.
2. $\partial \hat{x}_i/\partial x_j = \frac{1}{\sqrt{\sigma^2+\epsilon}}\left([i=j] - \frac1n\right)
   - \frac{(x_i-\mu)}{2(\sigma^2+\epsilon)^{3/2}}\,\frac{\partial\sigma^2}{\partial x_j}$,
   with $\partial\sigma^2/\partial x_j = \frac{2}{n-1}(x_j-\mu)$ (the $\mu$ terms cancel
   because the deviations sum to zero).
3. Sum over $i$ and write $(x_i-\mu)/\sqrt{\sigma^2+\epsilon}$ as $\hat{x}_i$ wherever it appears.

</details>

<details><summary>Hint: broadcasting</summary>

Sums over the batch are `.sum(0)`, shape (64,), which broadcasts against (32, 64) rows.
Remember `n/(n-1)`: with `1` there instead (no Bessel correction), the check is close but false.

</details>
"""),
    answer("ex3_dhprebn", "ex3"),
    md("ex3_check_expect", """
Expect `approximate: True` and `maxdiff: < 1e-6`: the one-go formula matches up to float32
rounding (the lecture's maxdiff: about 1e-9).
"""),
    locked("ex3_check_dhprebn", 'rows = report(["hprebn"], globals(), ref)'),
    *grad_tests("ex3", ["hprebn"], points=4),
    md("ex3_done", """
---
With Exercises 2 and 3, the whole backward pass fits in about twenty lines. Exercise 4 uses
it to train the network.
"""),
]
