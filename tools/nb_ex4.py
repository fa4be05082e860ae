"""Exercise 4: train the network with your own backward pass."""
from autograder.score import TRAIN_RTOL
from cells import BATCH, DATA, IMPORTS, PARAMS, answer, locked, md, test
from nb_ex1 import VIDEO

PARAM_NAMES = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]

EXTRA_IMPORTS = """
import os
import sys
import time
"""

MORE_IMPORTS = """
from autograder.model import autograd_step_grads  # PyTorch's gradients, for the check only
from tqdm import tqdm

# The matrices here are tiny: one thread is as fast as several, and a step never waits for a
# second thread that another busy program has pushed off its core.
torch.set_num_threads(1)
"""

FORWARD = '''
def forward(Xb, Yb, parameters):
    """The forward pass of Exercise 4: the loss and a cache of the intermediates.

    Xb: (n, 3) contexts, Yb: (n,) next characters, for any batch size n.
    parameters: [C, W1, b1, W2, b2, bngain, bnbias].
    Returns loss (a scalar) and cache, a dict of the tensors your backward pass may read.
    This time F.cross_entropy does the loss in one call: you differentiate whole layers, so
    the forward pass no longer needs one line per gradient. BatchNorm keeps Exercise 1's
    lines for the variance: they give the numbers of hprebn.var(0, keepdim=True,
    unbiased=True) and reuse bndiff, where var alone would cost as much as the whole layer.
    """
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    emb = C[Xb]                                     # (n, 3, 10) embed the characters
    embcat = emb.view(n, -1)                        # (n, 30) concatenate the 3 embeddings
    hprebn = embcat @ W1 + b1                       # (n, 200) first linear layer
    bnmean = hprebn.mean(0, keepdim=True)           # (1, 200)
    bndiff = hprebn - bnmean                        # (n, 200)
    bnvar = bndiff.square().sum(0, keepdim=True) / (n - 1)  # (1, 200) with Bessel's correction
    bnvar_inv = torch.rsqrt(bnvar + 1e-5)           # (1, 200) = (bnvar + 1e-5)**-0.5
    bnraw = bndiff * bnvar_inv                      # (n, 200) normalised
    hpreact = bngain * bnraw + bnbias               # (n, 200) scaled and shifted
    h = torch.tanh(hpreact)                         # (n, 200) hidden layer
    logits = h @ W2 + b2                            # (n, 27) output layer
    loss = F.cross_entropy(logits, Yb)
    cache = dict(emb=emb, embcat=embcat, hprebn=hprebn, bnmean=bnmean, bndiff=bndiff,
                 bnvar=bnvar, bnvar_inv=bnvar_inv, bnraw=bnraw, hpreact=hpreact, h=h,
                 logits=logits)
    return loss, cache


# You compute every gradient yourself now: the parameters become plain tensors again.
for p in parameters:
    p.requires_grad = False
loss, cache = forward(Xb, Yb, parameters)
print(f"loss on the batch before training: {loss.item():.4f}")
'''

BEFORE = '''\
def backward(Xb, Yb, parameters, cache):
    """The gradient of the loss for every parameter, by hand (no autograd).

    Xb: (n, 3) int64 contexts; Yb: (n,) int64 next characters; n is any batch size.
    parameters: [C (27, 10), W1 (30, 200), b1 (200,), W2 (200, 27), b2 (27,),
                 bngain (1, 200), bnbias (1, 200)]
    cache: the intermediates of forward(Xb, Yb, parameters):
        emb (n, 3, 10), embcat (n, 30), hprebn (n, 200), bnmean (1, 200),
        bndiff (n, 200), bnvar (1, 200), bnvar_inv (1, 200), bnraw (n, 200),
        hpreact (n, 200), h (n, 200), logits (n, 27)
    Returns [dC, dW1, db1, dW2, db2, dbngain, dbnbias], each of its parameter's shape.
    """
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    emb, embcat, hprebn = cache["emb"], cache["embcat"], cache["hprebn"]
    bnmean, bndiff = cache["bnmean"], cache["bndiff"]
    bnvar, bnvar_inv = cache["bnvar"], cache["bnvar_inv"]
    bnraw, hpreact, h, logits = cache["bnraw"], cache["hpreact"], cache["h"], cache["logits"]
    n = Xb.shape[0]
    dC = dW1 = db1 = dW2 = db2 = dbngain = dbnbias = None'''

AFTER = "    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"

CHECK = '''
# One step on the batch of the setup: your backward pass against PyTorch's autograd.
loss, cache = forward(Xb, Yb, parameters)
grads = backward(Xb, Yb, parameters, cache)
grads = list(grads) if isinstance(grads, (list, tuple)) else []
grads += [None] * (len(parameters) - len(grads))
ref = autograd_step_grads(parameters, Xb, Yb)
names = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]
# each row: the lecture's cmp, and the grade's verdict (also on hidden batches of other sizes)
rows = report(names, {"d" + k: d for k, d in zip(names, grads)}, dict(zip(names, ref)), "ex4")
matched = sum(r.ok for r in rows)

if any(d is None for d in grads[:len(names)]):
    print("Some gradients are still None: write backward above, then run this cell again.")
elif matched < len(rows):
    print("Fix the rows that do not say approximate: True, then run this cell again.")
else:
    # How fast is your backward pass? Time the same training step both ways, on copies of
    # the parameters (the training below still starts from the initial ones).
    gt = torch.Generator().manual_seed(1)
    batches = [(Xtr[ix], Ytr[ix]) for ix in torch.randint(0, Xtr.shape[0], (300, 32), generator=gt)]

    def manual_step(ps, xb, yb):
        with torch.inference_mode():  # as in training below: no graph, no autograd bookkeeping
            _, c = forward(xb, yb, ps)
            for p, d in zip(ps, backward(xb, yb, ps, c)):
                p.add_(d.reshape(p.shape), alpha=-0.1)

    def autograd_step(ps, xb, yb):
        loss, _ = forward(xb, yb, ps)
        for p in ps:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p.add_(p.grad, alpha=-0.1)

    def microseconds_per_step(step, ps, batches):
        t0 = time.perf_counter()
        for xb, yb in batches:
            step(ps, xb, yb)
        return (time.perf_counter() - t0) / len(batches) * 1e6

    ps_manual = [p.clone() for p in parameters]
    ps_auto = [p.clone().requires_grad_() for p in parameters]
    for step, ps in [(manual_step, ps_manual), (autograd_step, ps_auto)]:
        microseconds_per_step(step, ps, batches[:20])  # warm up
    # Alternate the two in 5 rounds of 60 steps and keep each one's best round: other
    # programs running on the machine slow some rounds down, never speed them up.
    rounds = [(microseconds_per_step(manual_step, ps_manual, batches[r::5]),
               microseconds_per_step(autograd_step, ps_auto, batches[r::5])) for r in range(5)]
    t_manual, t_auto = (min(t) for t in zip(*rounds))
    print("one training step (forward, backward, update), best of 5 rounds of 60 steps:")
    print(f"  your backward: {t_manual:.0f} us   autograd: {t_auto:.0f} us   "
          f"autograd / yours: {t_auto / t_manual:.1f}x")
'''

TRAIN = '''
# The lecture's run: 200,000 steps, batch 32, learning rate 0.1, then 0.01 for the second half.
# Under grading (NBGRADER_EXECUTION is set) a short run of 2,000 steps keeps this cell fast.
max_steps = 2_000 if os.environ.get("NBGRADER_EXECUTION") else 200_000
batch_size = 32
lossi = []  # log10 of the loss at every step

# The batches get their own generator: re-running this cell after the setup repeats the run.
# (Running it twice in a row continues training from where the first run stopped.)
g_train = torch.Generator().manual_seed(2147483647 + 1)

loss, cache = forward(Xb, Yb, parameters)
if any(not isinstance(d, torch.Tensor) for d in backward(Xb, Yb, parameters, cache)):
    print("backward does not return all 7 gradients yet: write it above. Training skipped.")
else:
    # No autograd anywhere: your backward pass does all the work. inference_mode is no_grad
    # without even the bookkeeping no_grad keeps for tensors that may later need a graph.
    with torch.inference_mode():
        bar = tqdm(range(max_steps), file=sys.stdout, mininterval=1.0, ncols=100)
        for i in bar:
            ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g_train)
            xb, yb = Xtr[ix], Ytr[ix]
            loss, cache = forward(xb, yb, parameters)
            grads = backward(xb, yb, parameters, cache)
            lr = 0.1 if i < max_steps // 2 else 0.01  # step learning rate decay
            for p, d in zip(parameters, grads):
                p.add_(d.reshape(p.shape), alpha=-lr)  # p -= lr * d, in one operation
            lossi.append(loss.log10().item())
            if i % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.close()
    print(f"{len(lossi):,} steps done.")
'''

PLOT = '''
if lossi:
    # A batch of 32 gives a noisy loss: average chunks of (up to) 1000 steps.
    chunk = min(1000, max(1, len(lossi) // 50))
    steps = len(lossi) // chunk * chunk
    curve = torch.tensor(lossi[:steps]).view(-1, chunk).mean(1)
    x = torch.arange(len(curve)) * chunk + chunk / 2
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, curve)
    ax.axvline(len(lossi) // 2, color="gray", linestyle=":", label="learning rate 0.1 -> 0.01")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"log10 loss (mean of {chunk} steps)")
    ax.set_title("Training with your own backward pass")
    ax.legend()
    plt.show()
else:
    print("Nothing to plot yet: train the network first.")
'''

CALIBRATE = '''
# BatchNorm used each batch's own mean and variance during training. To use the network on
# single examples, fix them once: the mean and (unbiased) variance over the whole training set.
with torch.no_grad():
    emb = C[Xtr]
    embcat = emb.view(emb.shape[0], -1)
    hpreact = embcat @ W1 + b1
    bnmean = hpreact.mean(0, keepdim=True)
    bnvar = hpreact.var(0, keepdim=True, unbiased=True)
print("calibrated over", Xtr.shape[0], "examples:", tuple(bnmean.shape), tuple(bnvar.shape))
'''

EVALUATE = '''
@torch.no_grad()
def split_loss(X, Y, chunk=10_000):
    """The mean loss over a whole split, with the calibrated BatchNorm statistics. It runs
    10,000 examples at a time: the same number as all at once, in less than half the time
    and without a 150 MB tensor per layer."""
    total = 0.0
    for i in range(0, X.shape[0], chunk):
        emb = C[X[i:i + chunk]]
        embcat = emb.view(emb.shape[0], -1)
        hpreact = embcat @ W1 + b1
        hpreact = bngain * (hpreact - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
        h = torch.tanh(hpreact)
        logits = h @ W2 + b2
        total += F.cross_entropy(logits, Y[i:i + chunk], reduction="sum").item()
    return total / X.shape[0]


# After the full 200,000 steps expect about train 2.07, val 2.11 to 2.12: this notebook's
# batches gave 2.0712 / 2.1162 here; the lecture reports 2.0705 / 2.1099 (2.0719 / 2.1162 in
# an earlier run). The last digits can differ on your machine. After the grading run's
# 2,000 steps, both are still around 2.36.
if not lossi:
    print("(the network is untrained: write backward and run the training above)")
print(f"train {split_loss(Xtr, Ytr):.4f}")
print(f"val   {split_loss(Xdev, Ydev):.4f}")
'''

SAMPLE = '''
# 20 names from the model, one character at a time, until it produces '.' (the end of a name).
g_sample = torch.Generator().manual_seed(2147483647 + 10)
with torch.no_grad():
    for _ in range(20):
        out = []
        context = [0] * block_size  # start with '...'
        while True:
            emb = C[torch.tensor([context])]                    # (1, 3, 10)
            embcat = emb.view(emb.shape[0], -1)                 # (1, 30)
            hpreact = embcat @ W1 + b1
            hpreact = bngain * (hpreact - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
            h = torch.tanh(hpreact)
            logits = h @ W2 + b2                                # (1, 27)
            probs = F.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1, generator=g_sample).item()
            context = context[1:] + [ix]
            if ix == 0:
                break
            out.append(ix)
        print("".join(itos[i] for i in out))
'''

TASK = r"""
---
## Your task: `backward` (7 points, plus 3 for training)

Write the body of `backward` below. It receives the batch, the parameters and the cache of
`forward`, and returns the seven gradients of the loss, in the order of `parameters`, each
of its parameter's shape. Every line of it is something you have already written in
Exercises 1 to 3; here you put them together, in the order the gradient flows:

1. cross-entropy, in one go: `dlogits`
2. the second linear layer: `dh`, `dW2`, `db2`
3. tanh: `dhpreact`
4. BatchNorm, in one go: `dbngain`, `dbnbias`, `dhprebn`
5. the first linear layer: `dembcat`, `dW1`, `db1`
6. the embedding: `demb`, `dC`

Write `n` (the batch size, set for you), never `32` or `200`: the grader calls your function
with other batch sizes and other parameters. Use no autograd (`.backward()`, `.grad`,
`torch.autograd`): the point is that you no longer need it.

Each hint below says where you have met the piece before; none of them repeats the formula.

<details><summary>Hint: cross-entropy in one go</summary>

Your answer to Exercise 2 works here unchanged: the loss is the same mean over `n` rows, and
the cache holds `logits`.

</details>

<details><summary>Hint: the second linear layer</summary>

Stage 2 of Exercise 1, with other sizes: `h` is (n, 200), `W2` (200, 27), `dlogits` (n, 27).
Each gradient has the shape of its tensor, and the shapes leave one way to combine the
factors. `b2` was added to every row of the batch.

</details>

<details><summary>Hint: tanh</summary>

As for `dhpreact` in Exercise 1: the derivative of tanh written with tanh itself, and the
cache holds `h`, which is tanh of `hpreact` already.

</details>

<details><summary>Hint: BatchNorm in one go</summary>

`bngain` and `bnbias` are (1, 200) rows stretched over the batch: their gradients come out as
in stage 3 of Exercise 1, with the shape (1, 200). For `dhprebn`, the formula you derived in
Exercise 3 works unchanged, with `bngain` for $\gamma$, `bnvar_inv` for
$1/\sqrt{\sigma^2+\epsilon}$, `bnraw` for $\hat{x}$ and `dhpreact` for $\partial L/\partial y$.

</details>

<details><summary>Hint: the first linear layer</summary>

The second layer again, one layer down: `hprebn = embcat @ W1 + b1`, with `embcat` (n, 30)
and `W1` (30, 200). `db1` has the shape of `b1`, (200,).

</details>

<details><summary>Hint: the embedding, without a double loop</summary>

`embcat` is a view of `emb`, so its gradient only needs the shape of `emb` back. Then
`emb = C[Xb]` copied a row of `C` for each of the n * 3 characters of the batch, and a row
used several times collects the gradient of every copy. Exercise 1's double loop adds them
one by one and works here too. To do it in one call, look up `Tensor.index_add_` in PyTorch's
documentation: it adds rows of a source into the rows of a target named by an index, and adds
up repeated indices. (Indexed in-place addition on an indexed target looks the same but is
wrong: when an index repeats, only one of the additions lands.)

</details>
"""

CELLS = [
    md("ex4_intro", f"""
# Exercise 4: train the network with your own backward pass (10 points)

Time to put it all together, as at the end of the lecture
([Becoming a Backprop Ninja]({VIDEO})). The network is the one from the previous exercises,
with 200 hidden neurons instead of 64 (12,297 parameters). You write one function, `backward`, that
returns the gradient of the loss for every parameter, using the one-go formulas of Exercises 2
and 3. Then the notebook trains the network for the lecture's 200,000 steps with **your**
gradients and no `loss.backward()` at all, calibrates BatchNorm, evaluates, and samples names.

**How it is graded (10 points).** Each of the 7 parameter gradients is worth 1 point. The
grader reads your `backward` from the saved notebook and calls it on the notebook's batch and
on hidden inputs (other seeds, other batch sizes), comparing with autograd. 3 more points
for a short training run on hidden inputs (100 steps of SGD driven by your `backward`), whose
parameters must end up where the same run driven by autograd ends up. The long training run
below is for you; it is not graded, and under grading it is cut to 2,000 steps.
"""),
    locked("setup_imports", EXTRA_IMPORTS.strip("\n") + "\n\n" + IMPORTS.strip("\n") + "\n" + MORE_IMPORTS.strip("\n")),
    locked("setup_data", DATA),
    locked("setup_params", PARAMS.format(n_hidden=200)),
    locked("setup_batch", BATCH),
    md("setup_forward_md", """
The forward pass is now a function, so that the training loop can call it on every batch.
It returns the loss and a `cache` of intermediates: everything your backward pass may need.
"""),
    locked("setup_forward", FORWARD),
    md("ex4_task", TASK),
    answer("ex4_backward", "ex4", before=BEFORE, after=AFTER),
    md("ex4_check_expect", """
The check below runs one step on the setup's batch and compares your seven gradients with
autograd's. Expect `approximate: True` and `maxdiff: < 1e-6` for all seven and `7/7 gradients
match`: the one-go formulas round differently from autograd's long chain of small steps, so
they agree up to float32 rounding (differences around 1e-8).

Once all seven match, it also times a whole training step (forward, backward, update) with
your backward pass and with autograd. Yours is usually faster, as it builds no graph and
differentiates whole layers at once: a backward written straight from the hints ran at about
1.3x autograd's speed on the course's 2-core test machine, the course's own solution at about
1.7x. The figures depend on your machine and change from run to run.

<details><summary>Optional challenge, not graded: make it fast</summary>

At a batch of 32 the tensors are tiny, and launching an operation costs more than computing it:
a fast backward pass is one with few operations. Some ideas, each checked by the cell below:

- Subtracting at `[range(n), Yb]` builds index tensors first; `Tensor.scatter_add_` along
  dimension 1, with the targets as a column of indices, does the same in one operation.
- Exercise 3's formula takes two sums over the batch that you have already computed under
  other names in this function. Rewrite the formula in terms of them: it gets shorter, and
  shorter here means faster.
- `torch.add(a, b, alpha=s)` is `a + s * b`, and `torch.addcmul(a, b, c, value=s)` is
  `a + s * b * c`, each in one operation: count the operations of your tanh line.
- In-place operations (`x *= y`, `x.addcmul_(...)`) skip allocating a new tensor.

</details>
"""),
    locked("ex4_check_first_step", CHECK),
    *[test(f"test_ex4_d{k}",
           f"d{k} (1 point): backward's gradient for {k} on the notebook's batch and on hidden "
           f"ones (other seeds and batch sizes), against autograd.",
           f'require("ex4", "{k}")', f'grade("ex4", "{k}")', 1)
      for k in PARAM_NAMES],
    test("test_ex4_training",
         "Training (3 points): 100 SGD steps (learning rate 0.1) driven by backward, from hidden "
         "initial parameters, must end where the same steps driven by autograd end: for every "
         f"parameter, max |yours - autograd's| / max |autograd's| at most {TRAIN_RTOL:.0e} (a right "
         "backward lands near 3e-07; a missing Bessel correction near 4e-04).",
         'require("ex4", "training")', 'grade("ex4", "training")', 3),
    md("ex4_train_md", """
---
## Train

The lecture's optimisation: 200,000 steps of plain SGD on batches of 32, learning rate 0.1,
then 0.01 for the second half. Each step runs `forward`, your `backward`, and the update
`p -= lr * d`, all under `torch.inference_mode()` (no graph, no autograd bookkeeping). The full run takes a few minutes on a laptop CPU
(the progress bar estimates it); when graded, the run is cut to 2,000 steps.
"""),
    locked("ex4_train", TRAIN),
    locked("ex4_plot", PLOT),
    md("ex4_plot_expect", """
What to expect after the full run: the first point (the mean of the first 1000 steps) sits
near 0.40, although the very first batch has a loss of about 3.95 (log10: 0.60); the
descent is that fast. The curve then flattens out to about 0.335 by step 100,000 and drops
at once to about 0.32 (a batch loss near 2.1) when the learning rate falls to 0.01. The
grading run's 2,000 steps show only the start: from about 0.49 down to about 0.37, in chunks
of 40 steps.
"""),
    md("ex4_calibrate_md", """
---
## Calibrate BatchNorm, evaluate, sample

During training, BatchNorm normalised each batch with that batch's own mean and variance. To
evaluate the network, or to run it on one example at a time, those two are fixed once, from
the whole training set, as in the lecture. Then the loss on the training and validation
splits, and 20 names sampled from the trained model.
"""),
    locked("ex4_calibrate", CALIBRATE),
    locked("ex4_evaluate", EVALUATE),
    locked("ex4_sample", SAMPLE),
    md("ex4_done", """
---
## Done: a backprop ninja

Every gradient that trained this network came from code you wrote: there is no autograd
anywhere in the loop. The losses should agree with the lecture's (train about 2.07, val about
2.11), because your backward pass computes the same numbers autograd would, up to rounding.

Some things to try on your own copy:
- Print `grads[2]`, your `db1` from the check above: its entries are around 1e-9, zero up to rounding. Why?
  (BatchNorm subtracts the batch mean, so adding a constant to a column of `hprebn` changes
  nothing downstream; that is why `b1` is called useless in the setup.)
- Time the step with a bigger batch or a bigger hidden layer: when does autograd's overhead
  stop mattering?
- Put the nine BatchNorm steps of Exercise 1 in place of the one-go formula and compare the
  speed.
"""),
]
