"""Exercise 2: the gradient of cross-entropy in one go."""
from cells import answer, grad_tests, locked, md, setup_cells

CELLS = [
    md("ex2_intro", """
# Exercise 2: cross-entropy in one go (4 points)

In Exercise 1 you went through eight small steps from `loss` back to `logits`. Those steps
only rearrange one well-known function, the cross-entropy of a softmax, so its gradient can be
written in a few lines. The setup below runs the same network as Exercise 1.
"""),
    *setup_cells(64),
    locked("ex2_fast_loss", """
loss_fast = F.cross_entropy(logits, Yb)
print(f"chunked loss {loss.item():.4f}, F.cross_entropy {loss_fast.item():.4f}")
"""),
    md("ex2_task", r"""
---
## Your task: `dlogits` from `logits` and `Yb` (4 points)

For one row, with $p = \mathrm{softmax}(l)$ and correct class $y$, the loss is
$-\log p_y$ and its derivative is

$$\frac{\partial}{\partial l_i}\left(-\log p_y\right) = p_i - [i = y].$$

The batch loss is the *mean* over `n` rows, so every row's gradient is divided by `n`.
Write `dlogits` (shape (32, 27)) in a few lines, without any of Exercise 1's intermediates.

<details><summary>Hint</summary>

Start from `F.softmax(logits, 1)`, subtract 1 at the correct characters
(`[range(n), Yb]`), then divide by `n`.

</details>
"""),
    answer("ex2_dlogits", "ex2"),
    md("ex2_check_expect", """
Expect `approximate: True` and `maxdiff: < 1e-6`: the one-liner rounds differently from the
eight-step chain, so it matches up to float32 rounding (the lecture's maxdiff: about 5e-9).
"""),
    locked("ex2_check_dlogits", 'rows = report(["logits"], globals(), ref)'),
    *grad_tests("ex2", ["logits"], points=4),
    md("ex2_intuition", """
---
## What `dlogits` says

Each row of `dlogits` sums to zero. Gradient descent moves `logits` against it: the correct
character's logit (the dark square in each row below) is **pulled up** by `1 - p`, and every
other logit is **pushed down** by its own probability, hardest where the network was most
confidently wrong. The push and the pull balance exactly; once the network puts all its
probability on the right character, the row is all zeros and nothing moves.
"""),
    locked("ex2_heatmap", """
if isinstance(globals().get("dlogits"), torch.Tensor) and dlogits.shape == logits.shape:
    worst = dlogits.sum(1).abs().max().item()
    print(f"row sums: max |sum| = {worst:.0e}", "(zero up to float32 rounding)" if worst < 1e-6 else "(each row should sum to zero)")
    plt.figure(figsize=(6, 5.5))
    plt.imshow(dlogits * n, cmap="gray")
    plt.colorbar(shrink=0.6, label="dlogits * n")
    plt.xlabel("character (0 is '.', then a..z)")
    plt.ylabel("example in the batch")
    plt.title("dlogits: dark = pulled up (correct), light = pushed down")
    plt.show()
else:
    print("Write dlogits above (shape (32, 27)) to see its heatmap.")
"""),
]
