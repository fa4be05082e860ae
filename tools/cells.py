"""Cell constructors with nbgrader metadata, and the setup cells the exercise notebooks share."""
import tomllib
from pathlib import Path

from nbformat.v4 import new_code_cell, new_markdown_cell

import solutions

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# The course's public git URL, the one place it is kept: pyproject.toml's [project.urls]
# Repository. The install cell of every notebook installs the course from it.
COURSE_URL = tomllib.loads(PYPROJECT.read_text())["project"]["urls"]["Repository"]


def _meta(grade_id, *, solution=False, grade=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def md(cell_id, text):
    """A markdown cell, locked so the instructions reach the learner unchanged."""
    return new_markdown_cell(text.strip("\n"), id=cell_id, metadata=_meta(cell_id, locked=True))


def locked(cell_id, code):
    """A read-only code cell (setup, checks, plots)."""
    return new_code_cell(code.strip("\n"), id=cell_id, metadata=_meta(cell_id, locked=True))


def answer(cell_id, exercise, before="", after=""):
    """An answer cell: the instructor solution between nbgrader's markers, which the release
    replaces with a `# YOUR CODE HERE` stub. `before`/`after` stay in the release."""
    sol = solutions.ALL[exercise][cell_id]
    indent = " " * (len(after) - len(after.lstrip())) if after else ""
    body = "\n".join(indent + l if l else l for l in sol.splitlines())
    code = (before + "\n" if before else "") + f"{indent}### BEGIN SOLUTION\n{body}\n{indent}### END SOLUTION"
    if after:
        code += "\n" + after
    return new_code_cell(code, id=cell_id, metadata=_meta(cell_id, solution=True))


def test(cell_id, doc, visible, hidden, points):
    """A graded test cell: docstring, visible part (stays in the release), hidden part."""
    code = f'"""{doc}"""\n{visible}\n### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS'
    return new_code_cell(code, id=cell_id, metadata=_meta(cell_id, grade=True, locked=True, points=points))


def grad_tests(exercise, names, points=1):
    """One graded test cell per gradient: its own points, judged on hidden inputs."""
    return [test(f"test_{exercise}_d{k}",
                 f"d{k} ({points} point{'s' if points != 1 else ''}): replayed on the notebook's batch "
                 f"and on hidden ones (other seeds and batch sizes).",
                 f'require("{exercise}", "{k}")', f'grade("{exercise}", "{k}")', points)
            for k in names]


# The first code cell of every notebook: on Colab (or wherever the course's package is not
# installed) it installs the course, `%pip install git+URL` and nothing else; pip keeps the
# torch, matplotlib, ... already there, as they satisfy the course's ranges. Elsewhere it does
# nothing and prints nothing. Plain Python (`run_line_magic` is what `%pip` calls), so every
# tool that parses cells reads it.
INSTALL = """
# On Colab, or wherever the course is not installed yet, install it: %pip install of the
# course alone (the torch already there is kept). Where the course is installed, nothing.
import importlib.util, sys
if "google.colab" in sys.modules or importlib.util.find_spec("autograder") is None:
    get_ipython().run_line_magic("pip", "install --quiet git+{url}")
    importlib.invalidate_caches()
"""


# The last paragraph of every notebook's introduction: an error in an answer cell is explained
# under it and Run All goes on (autograder.explain); where a front end stops anyway, what to do.
ERRORS = """
**When a cell of yours raises an error**, the course explains it under the error, with your
tensors and their shapes and the likely slip, and Run All goes on to the check below it,
which says what each gradient gives. Where Run All still stops at the error, run the rest
with *Run Selected Cell and All Below* (JupyterLab's Run menu), *Run after* (Colab's Runtime
menu) or *Execute Cell and Below* (VS Code).
"""


def introduction(title):
    """The title cell with the paragraph on errors (ERRORS) at its end."""
    return md(title.id, title.source + "\n\n" + ERRORS.strip("\n"))


def install_cell():
    return locked("setup_install", INSTALL.format(url=COURSE_URL))


IMPORTS = """
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt

from autograder.data import splits, itos, stoi, vocab_size
from autograder.compare import cmp           # the lecture's cmp, honest about shapes
from autograder.check import report          # cmp rows, and whether each step of yours is right
from autograder.hidden import grade, require  # used by the graded cells
"""

DATA = """
# The 32,033 names, shuffled with seed 42 and split 80/10/10 into examples of
# 3 characters of context -> the next character (the lecture's split).
(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = splits()
block_size = Xtr.shape[1]
print("train", tuple(Xtr.shape), "dev", tuple(Xdev.shape), "test", tuple(Xte.shape))
"""

PARAMS = """
n_embd = 10     # dimensions of each character's embedding
n_hidden = {n_hidden}  # neurons in the hidden layer
g = torch.Generator().manual_seed(2147483647)  # every draw below comes from g
C = torch.randn((vocab_size, n_embd), generator=g)
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5/3) / (n_embd * block_size)**0.5
b1 = torch.randn(n_hidden, generator=g) * 0.1   # useless under BatchNorm; kept to check its gradient
W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
b2 = torch.randn(vocab_size, generator=g) * 0.1
bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
# Non-standard scales on purpose: zeros or ones could hide a wrong backward pass.
parameters = [C, W1, b1, W2, b2, bngain, bnbias]
print(sum(p.nelement() for p in parameters), "parameters")
for p in parameters:
    p.requires_grad = True
"""

BATCH = """
batch_size = 32
n = batch_size  # a shorter name for use in expressions
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]  # a batch of contexts and their next characters
"""

FORWARD = """
# The forward pass, "chunkated" into one small step per line: each line has one gradient.
emb = C[Xb]                                   # (32, 3, 10) embed the characters
embcat = emb.view(emb.shape[0], -1)           # (32, 30) concatenate the 3 embeddings
# Linear layer 1
hprebn = embcat @ W1 + b1                     # (32, 64) hidden layer pre-activation
# BatchNorm layer
bnmeani = 1/n * hprebn.sum(0, keepdim=True)   # (1, 64) batch mean
bndiff = hprebn - bnmeani                     # (32, 64)
bndiff2 = bndiff**2                           # (32, 64)
bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True)  # (1, 64) variance, Bessel's correction (n-1)
bnvar_inv = (bnvar + 1e-5)**-0.5              # (1, 64)
bnraw = bndiff * bnvar_inv                    # (32, 64) normalised
hpreact = bngain * bnraw + bnbias             # (32, 64) scaled and shifted
# Non-linearity
h = torch.tanh(hpreact)                       # (32, 64) hidden layer
# Linear layer 2
logits = h @ W2 + b2                          # (32, 27) output layer
# Cross-entropy loss, by hand (same as F.cross_entropy(logits, Yb))
logit_maxes = logits.max(1, keepdim=True).values  # (32, 1) for numerical stability
norm_logits = logits - logit_maxes            # (32, 27)
counts = norm_logits.exp()                    # (32, 27)
counts_sum = counts.sum(1, keepdims=True)     # (32, 1)
counts_sum_inv = counts_sum**-1               # (32, 1) not 1.0/counts_sum: keeps backprop bit-exact
probs = counts * counts_sum_inv               # (32, 27)
logprobs = probs.log()                        # (32, 27)
loss = -logprobs[range(n), Yb].mean()         # scalar

# PyTorch's gradients, for the checks below (your answers must not use them).
for p in parameters:
    p.grad = None
intermediates = dict(logprobs=logprobs, probs=probs, counts=counts, counts_sum=counts_sum,
                     counts_sum_inv=counts_sum_inv, norm_logits=norm_logits, logit_maxes=logit_maxes,
                     logits=logits, h=h, hpreact=hpreact, bnraw=bnraw, bnvar_inv=bnvar_inv,
                     bnvar=bnvar, bndiff2=bndiff2, bndiff=bndiff, bnmeani=bnmeani, hprebn=hprebn,
                     embcat=embcat, emb=emb)
for t in intermediates.values():
    t.retain_grad()
loss.backward()
ref = {name: t.grad for name, t in intermediates.items()}
ref.update(C=C.grad, W1=W1.grad, b1=b1.grad, W2=W2.grad, b2=b2.grad, bngain=bngain.grad, bnbias=bnbias.grad)
# From here on, work on plain tensors, as the grader does: no autograd history.
for name, t in intermediates.items():
    globals()[name] = t.detach()
C, W1, b1, W2, b2, bngain, bnbias = (p.detach() for p in parameters)
print(f"loss {loss.item():.4f}")
"""


def setup_cells(n_hidden=64, forward=FORWARD):
    return [
        locked("setup_imports", IMPORTS),
        locked("setup_data", DATA),
        locked("setup_params", PARAMS.format(n_hidden=n_hidden)),
        locked("setup_batch", BATCH),
        locked("setup_forward", forward),
    ]
