"""Honest idioms keep their points through the trusted path (issue 27): numpy and torch dtypes,
numpy round trips, comprehensions, lambdas, unpacking, f-strings, `*args`, `with
torch.no_grad()`, names that begin with `_`, print. Each is a small right answer of Exercise
1, 2 or 3 written in that style. What reaches the grader's internals (dunders, frames, gc,
sys, code objects) is refused by the object it names, and still scores nothing."""
import pytest

from conftest import judged_in_batches, solution_cells

SOFTMAX = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"
NUMPY_ROWS = """
import numpy as np
A = logits.numpy().astype({dtype})
E = np.exp(A - A.max(1, keepdims=True))
P = E / E.sum(1, keepdims=True)
P[np.arange(n), Yb.numpy()] -= 1
dlogits = torch.from_numpy(P / n).float()
"""

# Exercise 2's dlogits, each in one style.
EX2 = {
    "astype_np_float64": NUMPY_ROWS.format(dtype="np.float64"),
    "astype_np_float32": NUMPY_ROWS.format(dtype="np.float32"),
    "astype_string_dtype": NUMPY_ROWS.format(dtype="'float64'"),
    "dtype_kwarg_np_float64": """
import numpy as np
G = np.zeros((n, vocab_size), dtype=np.float64)
G[np.arange(n), Yb.numpy()] = 1.0
dlogits = (F.softmax(logits, 1) - torch.from_numpy(G).float()) / n
""",
    "dtype_compared_with_np_float64": """
import numpy as np
A = np.asarray(logits.double().numpy())
B = A if A.dtype == np.float64 else A.astype(np.float64)
dlogits = (F.softmax(torch.from_numpy(B), 1) - F.one_hot(Yb, vocab_size)).float() / n
""",
    "np_float64_scalar": """
import numpy as np
scale = np.float64(1.0) / n
dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, vocab_size)) * float(scale)
""",
    "np_array_and_asarray": """
import numpy as np
rows = np.array(F.softmax(logits, 1).tolist(), dtype=np.float64)
rows[np.arange(n), np.asarray(Yb.tolist())] -= 1
dlogits = torch.tensor(rows / n, dtype=torch.float32)
""",
    "torch_tensor_dtype_float64": """
p = torch.tensor(F.softmax(logits, 1).tolist(), dtype=torch.float64)
p[range(n), Yb] -= 1
dlogits = (p / n).float()
""",
    "to_float64_and_back": """
p = F.softmax(logits.to(torch.float64), 1)
p[torch.arange(n, dtype=torch.long), Yb.to(torch.long)] -= 1
dlogits = (p / n).to(torch.float32)
""",
    "double_then_float": "dlogits = ((F.softmax(logits.double(), 1) - F.one_hot(Yb, vocab_size).double()) / n).float()",
    "list_comprehension": """
rows = [F.softmax(logits[i], 0) - F.one_hot(Yb[i], vocab_size) for i in range(n)]
dlogits = torch.stack(rows) / n
""",
    "nested_list_comprehension": """
p = F.softmax(logits, 1).tolist()
y = Yb.tolist()
dlogits = torch.tensor([[(p[i][j] - (1.0 if j == y[i] else 0.0)) / n for j in range(vocab_size)] for i in range(n)])
""",
    "dict_comprehension": """
by_row = {i: F.softmax(logits[i], 0) for i in range(n)}
dlogits = torch.stack([by_row[i] for i in sorted(by_row)]) - F.one_hot(Yb, vocab_size)
dlogits = dlogits / n
""",
    "set_comprehension": """
labels = {int(y) for y in Yb}
dlogits = F.softmax(logits, 1)
for c in labels:
    dlogits[Yb == c, c] -= 1
dlogits /= n
""",
    "generator_expression": """
total = sum(1 for _ in range(n))
dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, vocab_size)) / total
""",
    "lambda": """
softmax = lambda z: (z - z.max(1, keepdim=True).values).exp() / (z - z.max(1, keepdim=True).values).exp().sum(1, keepdim=True)
dlogits = (softmax(logits) - F.one_hot(Yb, vocab_size)) / n
""",
    "enumerate_and_zip": """
dlogits = torch.zeros_like(logits)
for i, (row, y) in enumerate(zip(logits, Yb)):
    dlogits[i] = (F.softmax(row, 0) - F.one_hot(y, vocab_size)) / n
""",
    "f_string_keys": """
parts = {f"row{i}": F.softmax(logits[i], 0) for i in range(n)}
dlogits = torch.stack([parts[f"row{i}"] for i in range(n)])
dlogits[range(n), Yb] -= 1
dlogits /= n
""",
    "tuple_unpacking": """
B, V = logits.shape
dlogits = F.softmax(logits, 1)
dlogits[range(B), Yb] -= 1
dlogits /= B
""",
    "star_args_and_kwargs": """
def grad(*args, **kwargs):
    z, y = args
    p = F.softmax(z, kwargs.get('dim', 1))
    p[range(z.shape[0]), y] -= 1
    return p / z.shape[0]
dlogits = grad(logits, Yb, dim=1)
""",
    "with_no_grad": "with torch.no_grad():\n" + "".join("    " + line + "\n" for line in SOFTMAX.splitlines()),
    "underscore_helper": """
def _one_hot_rows(y, k):
    return F.one_hot(y, k).float()
dlogits = (F.softmax(logits, 1) - _one_hot_rows(Yb, vocab_size)) / n
""",
    "underscore_throwaway": """
_, _V = logits.shape
dlogits = F.softmax(logits, 1) - F.one_hot(Yb, _V)
for _ in range(1):
    dlogits /= n
""",
    "underscore_digits_and_double": """
_1 = F.softmax(logits, 1)
__ = F.one_hot(Yb, vocab_size)
dlogits = (_1 - __) / n
""",
    "own_class_with_a_private_attribute": """
class Grad:
    def __init__(self, size):
        self._n = size
    def of(self, z, y):
        return (F.softmax(z, 1) - F.one_hot(y, z.shape[1])) / self._n
dlogits = Grad(n).of(logits, Yb)
""",
    "print_while_working": """
def grad(z):
    p = F.softmax(z, 1)
    print('probabilities', p.shape, f"{p.sum():.3f}")
    p[range(n), Yb] -= 1
    return p / n
dlogits = grad(logits)
print(dlogits.shape)
""",
}

EX1_INDEXED = ("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n",
               "def _indexed_logprobs(shape, rows, cols, value):\n    g = torch.zeros(shape)\n"
               "    g[rows, cols] = value\n    return g\ndlogprobs = _indexed_logprobs(logprobs.shape, range(n), Yb, -1.0 / n)")
EX3_DOUBLE = ("_g, _v, _r, _d = (t.to(torch.float64) for t in (bngain, bnvar_inv, bnraw, dhpreact))\n"
              "dhprebn = (_g * _v / n * (n * _d - _d.sum(0) - n / (n - 1) * _r * (_d * _r).sum(0))).float()")


def idioms():
    """{style: (exercise, [(cell, source)])}: Exercise 2's styles, and Exercise 1 and 3 answers."""
    out = {name: ("ex2", [("ex2_dlogits", src)]) for name, src in EX2.items()}
    ex1 = solution_cells("ex1")
    assert EX1_INDEXED[0] in ex1["ex1_loss_chain"]
    ex1["ex1_loss_chain"] = ex1["ex1_loss_chain"].replace(*EX1_INDEXED)
    out["ex1_underscore_helper"] = ("ex1", list(ex1.items()))
    out["ex3_float64_generator_unpacking"] = ("ex3", [("ex3_dhprebn", EX3_DOUBLE)])
    return out


IDIOMS = idioms()


@pytest.fixture(scope="module")
def judged():
    return judged_in_batches(IDIOMS, size=10)


def test_does_every_honest_idiom_keep_every_point(judged):
    """Does a right answer keep all its points in the trusted replay, in each of 25 styles or more?"""
    assert len(IDIOMS) >= 25
    lost = {style: {k: v.message for k, v in judged[style].items() if not v.ok} for style in IDIOMS}
    assert {style: why for style, why in lost.items() if why} == {}


# What reaches the grader's internals, each in the statement that defines the right dlogits (so
# the answer would score, were it let through): refused by the object it names, it scores
# nothing, however the answer spells its own names around it.
ESCAPES = {
    "dunder_class": "x = logits.__class__",
    "dunder_globals_of_a_helper": "x = _helper.__globals__",
    "dunder_subclasses": "x = ().__class__.__bases__[0].__subclasses__()",
    "dunder_dict_of_an_own_object": "x = _Own().__dict__",
    "dunder_init_of_an_own_object": "x = _Own().__init__",
    "builtins_by_name": "x = __builtins__",
    "a_hook_by_name": "x = _getattr_",
    "frame_of_a_generator": "x = (y for y in [1]).gi_frame",
    "frame_of_a_traceback": "try:\n        1 / 0\n    except Exception as e:\n        x = e.__traceback__",
    "code_object": "x = (lambda: 1).__code__",
    "gc": "import gc",
    "sys": "import sys",
    "import_by_dunder": "x = __import__('gc')",
    "private_attribute_of_torch": "x = torch._C",
    "numpy_type_internals": "import numpy as np\n    x = np.float64.call",
}


def escaping(statement):
    return ("def _helper():\n    return 1\nclass _Own:\n    pass\n"
            f"def probs():\n    {statement}\n    return F.softmax(logits, 1)\n"
            "dlogits = probs()\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n")


def test_does_every_escape_to_the_graders_internals_still_score_nothing():
    """Is what reaches dunders, frames, gc, sys or code objects still refused (0 points), while
    the same answer without it scores?"""
    answers = {name: ("ex2", [("ex2_dlogits", escaping(e))]) for name, e in ESCAPES.items()}
    answers["without_an_escape"] = ("ex2", [("ex2_dlogits", escaping("x = _helper()"))])
    judged = judged_in_batches(answers, size=len(answers))
    assert judged.pop("without_an_escape")["logits"].ok
    assert {name: v["logits"].message for name, v in judged.items() if v["logits"].points} == {}
