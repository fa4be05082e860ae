"""Exercise 1: the atomic compute graph, all 26 gradients, in four stages."""
from cells import answer, grad_tests, locked, md, setup_cells
from autograder.exercises import EX1_STAGES

INTRO = md("ex1_intro", """
# Exercise 1: backpropagate through the atomic compute graph (26 points)

Below is a two-layer MLP language model (embedding, linear, BatchNorm, tanh, linear,
cross-entropy), with its forward pass cut into one small step per line. Your job: write the
gradient of the loss with respect to **every** intermediate, by hand, from `dlogprobs` back to
`dC`, without `loss.backward()`. Each gradient is called `d` + the tensor's name and has the
tensor's shape.

**How to work.** Run the setup cells, then fill in one stage at a time. After each stage a
check prints the familiar row for each gradient (shape, approximate, maxdiff) against
PyTorch's, and whether your own step is right given your upstream gradients. A gradient you
have not written yet shows as *missing*.

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
    "ex1_loss_chain": ("""
---
## Stage 1: the loss chain (8 points)

From `loss` back to `logits`: `dlogprobs`, `dprobs`, `dcounts_sum_inv`, `dcounts_sum`,
`dcounts`, `dnorm_logits`, `dlogit_maxes`, `dlogits`.

Rules you will need: the chain rule, one step at a time (local derivative times the gradient
flowing in); **broadcasting in the forward pass is a sum in the backward pass**; when a tensor
is used twice, **the gradients of both paths add**.
""", {
        "dlogprobs": "`loss` is minus the mean of n entries of `logprobs`, one per row (the correct "
                     "character). Those entries get `-1/n`; every other entry does not touch the loss.",
        "dprobs": "d/dx log(x) = 1/x, applied elementwise, times `dlogprobs`.",
        "dcounts_sum_inv": "`probs = counts * counts_sum_inv` broadcasts a (32, 1) column over 27 "
                           "columns: sum the gradient over dimension 1, keeping the dimension.",
        "dcounts_sum": "d/dx x**-1 = -x**-2.",
        "dcounts": "`counts` is used twice: in `probs` and in `counts_sum`. Add both contributions; "
                   "the sum over a row hands every element of the row the same gradient.",
        "dnorm_logits": "d/dx exp(x) = exp(x), which is `counts`.",
        "dlogit_maxes": "`norm_logits = logits - logit_maxes` broadcasts (32, 1): sum, with a minus sign. "
                        "It should come out (almost) zero: the max only keeps exp() stable.",
        "dlogits": "Two paths again. The max routes its gradient to the one element that was "
                   "largest in each row: `F.one_hot(logits.max(1).indices, ...)`.",
    }),
    "ex1_second_layer": ("""
---
## Stage 2: the second linear layer and tanh (4 points)

`dh`, `dW2`, `db2`, `dhpreact`. For `logits = h @ W2 + b2`, let the shapes guide you: the only
way to combine `dlogits` (32, 27) with `W2` (64, 27) into a (32, 64) is one matrix product
with one transpose. The appendix of the reference notebook derives it on a tiny example.
""", {
        "dh": "(32, 27) @ (27, 64) gives (32, 64).",
        "dW2": "(64, 32) @ (32, 27) gives (64, 27).",
        "db2": "`b2` is broadcast over the 32 rows: sum over dimension 0.",
        "dhpreact": "d/dx tanh(x) = 1 - tanh(x)**2, and `h` is tanh(hpreact).",
    }),
    "ex1_batchnorm": ("""
---
## Stage 3: BatchNorm, step by step (9 points)

`dbngain`, `dbnbias`, `dbnraw`, `dbnvar_inv`, `dbnvar`, `dbndiff2`, `dbndiff`, `dbnmeani`,
`dhprebn`. Mind every broadcast: `bngain`, `bnbias`, `bnvar_inv`, `bnvar` and `bnmeani` are
(1, 64) rows stretched over the batch. `bndiff` and `hprebn` each feed two operations.
""", {
        "dbngain": "(1, 64) broadcast over the batch: sum over dimension 0 with `keepdim=True`.",
        "dbnbias": "Same broadcast as `bngain`, local derivative 1.",
        "dbnraw": "Multiply by the (1, 64) `bngain`; no sum needed, the shapes already agree.",
        "dbnvar_inv": "(1, 64) broadcast in `bndiff * bnvar_inv`: sum over dimension 0, keep it.",
        "dbnvar": "d/dx (x + eps)**-0.5 = -0.5 (x + eps)**-1.5.",
        "dbndiff2": "`bnvar` is 1/(n-1) times a column sum: each element gets 1/(n-1) of `dbnvar`.",
        "dbndiff": "Two paths: through `bnraw` and through `bndiff2` (d/dx x**2 = 2x).",
        "dbnmeani": "`bndiff = hprebn - bnmeani` broadcasts: minus the sum over dimension 0.",
        "dhprebn": "Two paths: directly through `bndiff`, and through `bnmeani` (each element gets 1/n of it).",
    }),
    "ex1_first_layer": ("""
---
## Stage 4: the first linear layer and the embedding (5 points)

`dembcat`, `dW1`, `db1`, `demb`, `dC`. The first three are stage 2 again. `embcat` is a view
of `emb`, so its gradient only needs the shape back. Finally `emb = C[Xb]` copies rows of `C`:
a character that appears several times in the batch collects the gradient of every copy.
""", {
        "dembcat": "(32, 64) @ (64, 30).",
        "dW1": "(30, 32) @ (32, 64).",
        "db1": "Sum over the batch dimension.",
        "demb": "A view in the forward pass is a view back: `.view(emb.shape)`.",
        "dC": "Start from zeros and **add** each row of `demb` into the row of `C` it came from "
              "(a double loop over `Xb`, or `index_add_`). Assigning instead of adding loses "
              "repeated characters.",
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


def stage(cell_id):
    text, table = STAGE_TEXT[cell_id]
    names = EX1_STAGES[cell_id]
    check = cell_id.replace("ex1_", "ex1_check_")
    return [
        md(f"{cell_id}_task", text + "\n" + hints(table)),
        answer(cell_id, "ex1"),
        md(f"{check}_expect", EXPECT[cell_id]),
        locked(check, f"rows = report({names!r}, globals(), ref)"),
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
