"""Exercise 2: the gradient of cross-entropy in one go."""
from cells import answer, grad_tests, locked, md, setup_cells
from nb_ex1 import VIDEO

CELLS = [
    md("ex2_intro", f"""
# Exercise 2: cross-entropy in one go (4 points)

In Exercise 1 you went through eight small steps from `loss` back to `logits`. Those steps
only rearrange one well-known function, the cross-entropy of a softmax, so its gradient can be
written in a few lines once you have derived it on paper: that derivation is this exercise,
as in the lecture ([Becoming a Backprop Ninja]({VIDEO}), Exercise 2). The setup below runs the
same network as Exercise 1.
"""),
    *setup_cells(64),
    locked("ex2_fast_loss", """
loss_fast = F.cross_entropy(logits, Yb)
print(f"chunked loss {loss.item():.4f}, F.cross_entropy {loss_fast.item():.4f}")
"""),
    md("ex2_task", r"""
---
## Your task: `dlogits` from `logits` and `Yb` (4 points)

Take one row: logits $l_1, \dots, l_{27}$, probabilities $p = \mathrm{softmax}(l)$, and the
correct character $y$. That row's loss is $-\log p_y$. Differentiate it with respect to every
logit $l_i$, on paper, then remember that the batch loss is the *mean* of the `n` rows' losses.
Write `dlogits` (shape (32, 27), like `logits`) in a few lines, without any of Exercise 1's
intermediates.

<details><summary>Hint 1: what to differentiate</summary>

Write the loss with the softmax spelled out, $-\log \frac{e^{l_y}}{\sum_j e^{l_j}}$, and split
the logarithm into two terms. Differentiate each term with respect to $l_i$.

</details>

<details><summary>Hint 2: two cases</summary>

One of the two terms depends on $l_i$ only when $i = y$. The derivative of the other term is a
quantity you already know by name. Work out the case $i = y$ and the case $i \ne y$ separately,
then write both as one expression.

</details>

<details><summary>Hint 3: a small check</summary>

With three classes, logits $(0, 0, 0)$ and $y = 1$, every probability is $1/3$. Your formula
should give three numbers that sum to zero, one of them negative. Does it?

</details>

<details><summary>Hint 4: from a row to the batch, in PyTorch</summary>

`F.softmax`, along dimension 1, gives $p$ for every row at once; indexing with
`[range(n), Yb]` picks the correct character of every row. The mean over `n` rows scales every row's gradient by the same factor.

</details>
"""),
    answer("ex2_dlogits", "ex2"),
    md("ex2_check_expect", """
Expect `approximate: True` and `maxdiff: < 1e-6`: the one-liner rounds differently from the
eight-step chain, so it matches up to float32 rounding (the lecture's maxdiff: about 5e-9).
"""),
    locked("ex2_check_dlogits", 'rows = report(["logits"], globals(), ref, "ex2")'),
    *grad_tests("ex2", ["logits"], points=4),
    md("ex2_intuition", """
---
## What `dlogits` says

Each row of `dlogits` sums to zero. Gradient descent moves `logits` *against* the gradient,
so in every row:
- the correct character's logit (the one dark cell of each row below) is pushed **up**;
- every other logit is pulled **down**, the harder the more probability the network wrongly
  gave it.

The push on the correct logit equals the sum of the pulls on the others. The more confident
and right the network is, the weaker all the forces; once it puts all its probability on the
right character, the row is all zeros and nothing moves.
"""),
    locked("ex2_heatmap", """
if isinstance(globals().get("dlogits"), torch.Tensor) and dlogits.shape == logits.shape:
    worst = dlogits.sum(1).abs().max().item()
    print(f"row sums: max |sum| = {worst:.0e}", "(zero up to float32 rounding)" if worst < 1e-6 else "(each row should sum to zero)")
    plt.figure(figsize=(6, 5.5))
    plt.imshow(dlogits * n, cmap="gray")
    plt.colorbar(shrink=0.6, label="dlogits * n")
    plt.xticks(range(vocab_size), itos)
    plt.xlabel("next character")
    plt.ylabel("example in the batch")
    plt.title("dlogits: dark = the correct character (pushed up), light = pulled down")
    plt.show()
else:
    print("Write dlogits above (shape (32, 27)) to see its heatmap.")
"""),
]
