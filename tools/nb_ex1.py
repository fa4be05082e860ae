"""Exercise 1: the atomic compute graph, all 26 gradients, in four stages."""
from cells import answer, grad_tests, locked, md, setup_cells
from autograder.exercises import EX1_STAGES

VIDEO = "https://www.youtube.com/watch?v=q8SA3rM6ckI"

INTRO = md("ex1_intro", f"""
# Exercise 1: backpropagate through the atomic compute graph (26 points)

This exercise follows the lecture [Building makemore Part 4: Becoming a Backprop Ninja]({VIDEO})
(A. Karpathy): watch it first, or alongside.

Below is a two-layer MLP language model (embedding, linear, BatchNorm, tanh, linear,
cross-entropy), with its forward pass cut into one small step per line. Your job: write the
gradient of the loss with respect to **every** intermediate, by hand, from `dlogprobs` back to
`dC`, without `loss.backward()`. Each gradient is called `d` + the tensor's name and has the
tensor's shape.

**How to work.** Run the setup cells, then fill in one stage at a time. After each stage a
check prints the familiar row for each gradient (shape, approximate, maxdiff) against
PyTorch's, and the grade's verdict on your own step (`step: right` or `step: WRONG`, and why),
judged as the grade judges it: on the true upstream gradients and on hidden batches. A
gradient you have not written yet shows as *missing*. The hints under each stage say what to
differentiate, which rule applies and what shape to expect; the formula is yours to write.

**How it is graded.** Each of the 26 gradients is worth 1 point and is judged on its own step.
Your cells are re-run line by line; right after the last line that writes a gradient, the
grader records your value and gives the lines below PyTorch's, so a mistake in `dprobs` costs
`dprobs`, not everything after it, and a line that fails costs only what it defines.
`dlogit_maxes` and `db1` are zero up to rounding: they are also judged on a random upstream,
so a constant zero earns nothing. Your cells are re-run on hidden inputs too (other seeds,
other batch sizes), so write `n`, not `32`. Work on the plain tensors (no autograd: `.grad`, `backward` and
`torch.autograd` earn nothing).
""")

STAGE_TEXT = {
    "ex1_loss_chain": (r"""
---
## Stage 1: the loss chain (8 points)

From `loss` back to `logits`: `dlogprobs`, `dprobs`, `dcounts_sum_inv`, `dcounts_sum`,
`dcounts`, `dnorm_logits`, `dlogit_maxes`, `dlogits`.

Rules you will need: the chain rule, one step at a time (local derivative times the gradient
flowing in); **broadcasting in the forward pass is a sum in the backward pass**; when a tensor
is used twice, **the gradients of both paths add**.

A small example of the broadcasting rule, as the lecture works it: take `c = a * b` with `a`
of shape (2, 3) and `b` a (2, 1) column. Written out, $c_{ij} = a_{ij}\,b_{i}$: the single
number $b_0$ is used three times, in $c_{00}$, $c_{01}$ and $c_{02}$. Each use adds its own
contribution, so $\partial L/\partial b_0$ is a sum over the three columns of row 0, and the
gradient of `b` comes out as a (2, 1) column again.
""", {
        "dlogprobs": "`loss` is minus the mean of n entries of `logprobs`: in each row, the one at the "
                     "correct character `Yb`. Try it with n = 3: if loss = -(a + b + c) / 3, what is "
                     "d loss / d a? And for an entry of `logprobs` that the loss never picks? The result "
                     "has the shape of `logprobs`; `[range(n), Yb]` selects the picked entries.",
        "dprobs": "`logprobs = probs.log()` works elementwise. What is the derivative of log(x)? "
                  "Multiply it, elementwise, by the gradient flowing in.",
        "dcounts_sum_inv": "`probs = counts * counts_sum_inv` multiplies a (32, 27) tensor by a (32, 1) "
                           "column stretched over 27 columns: the small example above, at full size. "
                           "The local derivative is the other factor; then undo the stretch so that the "
                           "result is (32, 1). Which dimension, and how do you keep it?",
        "dcounts_sum": "`counts_sum_inv = counts_sum**-1`: the power rule, then the chain rule.",
        "dcounts": "`counts` is used twice: in `probs` and in `counts_sum`. Find the gradient along "
                   "each path and add them. Along the second path: in a sum over a row, how much "
                   "does each element of the row change the sum? The result is (32, 27).",
        "dnorm_logits": "`counts = norm_logits.exp()`. What is the derivative of exp(x), and which "
                        "tensor of the forward pass already holds it?",
        "dlogit_maxes": "`norm_logits = logits - logit_maxes` stretches a (32, 1) column over 27 "
                        "columns, as in `dcounts_sum_inv`; mind the minus sign. Expect values close to "
                        "zero: can you see why? (Changing the subtracted maximum does not change `probs`.)",
        "dlogits": "Two paths again: straight through `norm_logits`, and through `logit_maxes`. The "
                   "max of a row depends on one element only, the largest one: only that element "
                   "receives its row's gradient. `logits.max(1)` gives the positions as `.indices`, "
                   "and `F.one_hot` can turn positions into a (32, 27) tensor of zeros and ones.",
    }),
    "ex1_second_layer": (r"""
---
## Stage 2: the second linear layer and tanh (4 points)

`dh`, `dW2`, `db2`, `dhpreact`. For `logits = h @ W2 + b2`, write one element:
$\text{logits}_{ik} = \sum_j h_{ij} W2_{jk} + b2_k$. Differentiate it with respect to $h_{ij}$
and you get a sum over $k$ that is one entry of a matrix product. Or let the shapes guide you:
a gradient has the shape of its tensor, and there is only one way to combine `dlogits`
(32, 27) with `W2` (64, 27) into a (32, 64): one matrix product, with one transpose. Trying it
on paper with 2 x 2 matrices, as the lecture does, makes it stick.
""", {
        "dh": "`dh` must be (32, 64), like `h`. Which of `dlogits` (32, 27) and `W2` (64, 27), in which "
              "order and with which one transposed, multiply to (32, 64)?",
        "dW2": "`dW2` must be (64, 27), like `W2`. This time combine `h` (32, 64) and `dlogits` (32, 27). "
               "Every row of the batch uses `W2`: the matrix product sums their contributions.",
        "db2": "`b2` (27,) is added to each of the 32 rows. Along which dimension was it stretched, "
               "and what does the rule of stage 1 say about its gradient? The result is (27,).",
        "dhpreact": "`h = torch.tanh(hpreact)`. The derivative of tanh(x) can be written with tanh(x) "
                    "itself (derive it from sinh/cosh, or look it up), and `h` already holds "
                    "tanh(hpreact).",
    }),
    "ex1_batchnorm": (r"""
---
## Stage 3: BatchNorm, step by step (9 points)

`dbngain`, `dbnbias`, `dbnraw`, `dbnvar_inv`, `dbnvar`, `dbndiff2`, `dbndiff`, `dbnmeani`,
`dhprebn`. Mind every broadcast: `bngain`, `bnbias`, `bnvar_inv`, `bnvar` and `bnmeani` are
(1, 64) rows stretched over the batch. `bndiff` and `hprebn` each feed two operations.
""", {
        "dbngain": "In `hpreact = bngain * bnraw + bnbias`, the local derivative for `bngain` is the "
                   "other factor. `bngain` is a (1, 64) row stretched over the 32 rows: undo the "
                   "stretch so that the result keeps the shape (1, 64).",
        "dbnbias": "The same stretch as `bngain`; what is the local derivative of a sum?",
        "dbnraw": "The local derivative is the other factor, a (1, 64) row. Does anything need summing "
                  "here? Compare the shapes of `bnraw` and of the gradient flowing in.",
        "dbnvar_inv": "`bnraw = bndiff * bnvar_inv`: `bnvar_inv` is a (1, 64) row stretched over the batch, "
                      "as `bngain` was.",
        "dbnvar": "`bnvar_inv = (bnvar + 1e-5)**-0.5`: the power rule (the 1e-5 stays where it is).",
        "dbndiff2": "`bnvar` is a constant times a sum over the batch of `bndiff2`. How much does one "
                    "element of `bndiff2` change its column's `bnvar`? Each element receives that "
                    "factor times its column's gradient. The result is (32, 64).",
        "dbndiff": "`bndiff` is used twice: in `bnraw` and in `bndiff2`. Find both contributions (the "
                   "second with the power rule) and add them.",
        "dbnmeani": "`bndiff = hprebn - bnmeani` stretches a (1, 64) row over the batch and subtracts "
                    "it: the same situation as `dlogit_maxes` in stage 1, along the other dimension.",
        "dhprebn": "Two paths: straight through `bndiff`, and through `bnmeani`, which is a mean over "
                   "the batch. How much does one element change its column's mean?",
    }),
    "ex1_first_layer": (r"""
---
## Stage 4: the first linear layer and the embedding (5 points)

`dembcat`, `dW1`, `db1`, `demb`, `dC`. The first three are stage 2 again. `embcat` is a view
of `emb`, so its gradient only needs the shape back. Finally `emb = C[Xb]` copies rows of `C`:
a character that appears several times in the batch collects the gradient of every copy.
""", {
        "dembcat": "As `dh` in stage 2, one layer down (`hprebn = embcat @ W1 + b1`). Target shape: (32, 30).",
        "dW1": "As `dW2` in stage 2. Target shape: (30, 64).",
        "db1": "As `db2` in stage 2. Target shape: (64,).",
        "demb": "`embcat` is `emb` viewed as (32, 30): no arithmetic happened, only the shape changed. "
                "Undo the change of shape.",
        "dC": "`emb[k, j]` is a copy of row `Xb[k, j]` of `C`. Start from a (27, 10) tensor of zeros "
              "and send each `demb[k, j]` back to the row of `C` it came from (a loop over the 32 "
              "examples and the 3 positions does it). A character that appears twice must collect "
              "both: add, never assign.",
    }),
}

EXPECT = {
    "ex1_loss_chain": "Expect `approximate: True` and `maxdiff: < 1e-6` for all 8.",
    "ex1_second_layer": "Expect `approximate: True` and `maxdiff: < 1e-6` for all 4 (the lecture's figures are 0 or about 1e-9).",
    "ex1_batchnorm": "Expect `approximate: True` for all 9; `dbnmeani` of shape (64,) is accepted with a note.",
    "ex1_first_layer": "Expect `approximate: True` for all 5.",
}


def hints(table):
    return "\n".join(f"<details><summary>Hint for <code>{k}</code></summary>\n\n{v}\n\n</details>\n"
                     for k, v in table.items())


def report_call(names, width=79):
    """`rows = report([...], globals(), ref, "ex1")`, its list wrapped to fit a laptop's notebook."""
    lines, line = [], "rows = report(["
    indent = " " * len(line)
    for i, name in enumerate(names):
        item = f'"{name}"' + (", " if i < len(names) - 1 else "], globals(), ref, \"ex1\")")
        if len(line) + len(item.rstrip()) > width:
            lines.append(line.rstrip())
            line = indent
        line += item
    return "\n".join(lines + [line])


def stage(cell_id):
    text, table = STAGE_TEXT[cell_id]
    names = EX1_STAGES[cell_id]
    check = cell_id.replace("ex1_", "ex1_check_")
    return [
        md(f"{cell_id}_task", text + "\n" + hints(table)),
        answer(cell_id, "ex1"),
        md(f"{check}_expect", EXPECT[cell_id]),
        locked(check, report_call(names)),
        *grad_tests("ex1", names),
    ]


CELLS = [
    INTRO,
    *setup_cells(64),
    *[c for cell_id in EX1_STAGES for c in stage(cell_id)],
    md("ex1_done", """
---
## All 26?

If every check above says `approximate: True`, you have backpropagated through the whole
network by hand. Exercises 2 and 3 show how much shorter it gets when you differentiate
bigger pieces at once.
"""),
]
