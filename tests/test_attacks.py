"""Hostile answers, replayed as the trusted grader replays them (sandboxed child, restricted
language, true upstreams handed out only after an answer): each must earn nothing for the
gradient it attacks, and the honest rest of the submission keeps its points."""
import pytest

from autograder.grader.trusted import trusted_verdicts, trusted_verdicts_many
from conftest import solution_cells

RIGHT_DLOGITS = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"

# Each steals or fakes dlogits (Exercise 2) in one way; none may score.
STEALS = {
    "frames": "import sys\nf = sys._getframe()\ndlogits = f.f_back.f_locals['ref']['logits']",
    "frames_through_an_exception": "try:\n    1/0\nexcept Exception as e:\n    t = e.__traceback__\ndlogits = t.tb_frame.f_back.f_globals['x']",
    "gc": "import gc\ndlogits = [o for o in gc.get_objects() if getattr(o, 'shape', None) == logits.shape][-1]",
    "grad_mode_through_C": "torch._C._set_grad_enabled(True)\nl = logits.clone().requires_grad_()\nF.cross_entropy(l, Yb).backward()\ndlogits = l.grad",
    "parameter_and_graph": "p = torch.nn.Parameter(logits.clone())\ndlogits = torch.autograd.graph.increment_version(p)",
    "names_in_strings": "a = getattr(torch, 'auto' + 'grad')\ndlogits = a.grad(F.cross_entropy(logits, Yb), logits)[0]",
    "exec_through_operator": "import operator, builtins\nx = operator.attrgetter('ex' + 'ec')(builtins)\nx('dlogits = logits')",
    "subprocess": "import subprocess, sys\ndlogits = subprocess.check_output([sys.executable, '-c', 'print(1)'])",
    "os_system": "import os\nos.system('true')\ndlogits = logits",
    "multiprocessing": "import multiprocessing\ndlogits = multiprocessing.Pool(2).map(abs, [1])",
    "the_courses_gradient_code": "from autograder.model import reference_grads\ndlogits = logits",
    "importlib": "import importlib\nm = importlib.import_module('autograder.model')\ndlogits = logits",
    "dunder_builtins": "dlogits = __builtins__['__import__']('os')",
    "class_walk": "dlogits = ().__class__.__base__.__subclasses__()",
    "type_walk": "dlogits = type(logits).backward",
    "func_transform": "from torch.func import grad as g\ndlogits = g(lambda l: F.cross_entropy(l, Yb))(logits)",
    "monkeypatch_torch": "torch.softmax = lambda *a, **k: logits\ndlogits = logits",
    "torch_load_a_file": "dlogits = torch.load('/tmp/answers.pt')",
    "numpy_ctypes": "import numpy as np\nlib = np.ctypeslib.load_library('libc', '/lib')\ndlogits = logits",
}


@pytest.mark.parametrize("attack", list(STEALS))
def test_no_attack_earns_the_gradient_it_steals(attack):
    v = trusted_verdicts("ex2", [("ex2_dlogits", STEALS[attack])])["logits"]
    assert not v.ok and v.points == 0, v.message


@pytest.mark.parametrize("attack", ["frames", "gc", "subprocess", "the_courses_gradient_code", "names_in_strings"])
def test_an_attack_in_one_statement_leaves_the_honest_ones_their_points(attack):
    """The attack comes first, the right answer after it: the statement that attacks is refused
    or raises, the rest runs, and the right answer scores."""
    v = trusted_verdicts("ex2", [("ex2_dlogits", STEALS[attack] + "\n" + RIGHT_DLOGITS)])["logits"]
    assert v.ok, v.message


def test_a_magic_line_cannot_hide_a_banned_statement():
    """A last line `%\"\"\"` once made the static check give up; the statement above it must
    still be refused."""
    v = trusted_verdicts("ex2", [("ex2_dlogits", "dlogits = logits.grad\n%\"\"\"")])["logits"]
    assert not v.ok and "autograd" in v.message


def test_upstream_truth_is_not_readable_before_the_answer():
    """The true dh is handed out only after the learner's last write of dh: reading dh first
    (to copy a later gradient from it) gives the learner's own value, not autograd's."""
    cells = dict(solution_cells("ex1"))
    cells["ex1_second_layer"] = ("stolen = dh.clone() if 'dh' in dir() else None\n"
                                 + cells["ex1_second_layer"])
    v = trusted_verdicts("ex1", list(cells.items()))
    assert all(x.ok for x in v.values())


def test_forged_answer_reports_only_cost_the_forger():
    """A learner can only report an answer through its own statements: there is no channel
    within reach (no os, no file descriptors), so a forged report is impossible, and the
    attempt costs its statement only."""
    src = "import os\nos.write(5, b'x' * 100)\n" + RIGHT_DLOGITS
    assert trusted_verdicts("ex2", [("ex2_dlogits", src)])["logits"].ok


def test_honest_styles_keep_working_in_the_restricted_language():
    """Loops, comprehensions, lambdas, helper functions, einsum, F.one_hot, index_add_,
    scatter_add_, numpy and `+=` on a slice, all in one honest Exercise 2 answer."""
    src = """
import math
import numpy as np
def softmax(x):
    e = (x - x.max(1, keepdim=True).values).exp()
    return e / e.sum(1, keepdim=True)
onehot = F.one_hot(Yb, num_classes=vocab_size).float()
rows = [softmax(logits)[i] for i in range(n)]
p = torch.stack(rows)
scale = (lambda k: 1.0 / k)(n)
dlogits = torch.einsum('ij,ij->ij', p - onehot, torch.ones_like(p)) * scale
check = torch.zeros((n, vocab_size)).scatter_add_(1, Yb.view(n, 1), torch.ones(n, 1))
acc = torch.zeros(vocab_size).index_add_(0, Yb, torch.ones(n))
dlogits[0:1] += 0.0
dlogits = dlogits * float(np.float32(1.0)) * math.exp(0.0)
"""
    v = trusted_verdicts("ex2", [("ex2_dlogits", src)])["logits"]
    assert v.ok, v.message


def test_a_whole_honest_class_member_is_untouched_by_a_hostile_one():
    answers = {ex: list(solution_cells(ex).items()) for ex in ("ex1", "ex2", "ex3", "ex4")}
    answers["ex2"] = [("ex2_dlogits", STEALS["gc"])]
    verdicts = trusted_verdicts_many(answers)
    assert not verdicts["ex2"]["logits"].ok
    assert all(v.ok for ex in ("ex1", "ex3", "ex4") for v in verdicts[ex].values())
