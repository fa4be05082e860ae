"""The replay's trust, round 3 (issue 18): hostile answers through the trusted path
(trusted_verdicts_many: the sandboxed fork server, a fresh child per exercise, the restricted
language, the finite-difference watch), each class of attack with its siblings, and the honest
styles beside them keeping their points."""
import io
import json
import os
import struct
import sys

import pytest
import torch

from autograder import score
from autograder.grader import replay_server, restricted, sandbox, wire
from autograder.grader.trusted import trusted_verdicts, trusted_verdicts_many
from conftest import judged_in_batches, solution_cells

RIGHT = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"
NUMERICAL = "a numerical gradient (the loss evaluated on perturbed inputs) is not a hand-derived one"


def ex2(src):
    return trusted_verdicts("ex2", [("ex2_dlogits", src)])["logits"]


def restricted_run(src, **ns):
    """Run src in the restricted language in this process (grad mode off, as in the child)."""
    g = restricted.globals_for({"torch": torch, "F": torch.nn.functional, **ns})
    with torch.no_grad():
        exec(restricted.compile_answer(src, "<answer>"), g)
    return g


# -- 1. allow, don't deny ---------------------------------------------------------------------

# Each reaches autograd, a file or the interpreter through something the old denylist let by.
ROUTES = {
    "ignored_functions": "fs = torch.overrides.get_ignored_functions()",
    "overridable_functions": "fs = torch.overrides.get_overridable_functions()",
    "from_overrides": "from torch.overrides import get_ignored_functions\nfs = get_ignored_functions()",
    "from_torch_import": "from torch import overrides",
    "set_grad_enabled_by_name": "f = getattr(torch, 'set_' + 'grad_enabled')\nf(True)",
    "enable_grad_from_import": "from torch import inference_mode",
    "C_module": "c = getattr(torch, '_' + 'C')",
    "object_getattribute": "g = object.__getattribute__",
    "getattr_dunder": "k = getattr(logits, '__cl' + 'ass__')",
    "type_builtin": "t = type(logits)",
    "vars_builtin": "d = vars(torch)",
    "dir_builtin": "d = dir(torch)",
    "format_string": "s = '{0.__class__}'.format(logits)",
    "format_map": "s = '{x.__class__}'.format_map({'x': logits})",
    "function_attribute": "f = F.relu\ng = getattr(f, 'glob' + 'als')",
    "a_wrapped_functions_attribute": "w = F.relu.ninja_wraps",
    "grad_fn_by_name": "g = getattr(logits, 'grad' + '_fn')",
    "requires_grad_kwarg": "x = torch.zeros(3, **{'requires' + '_grad': True})",
    "requires_grad_kwarg_on_a_method": "x = logits.new_zeros(3, **{'requires' + '_grad': True})",
    "tensor_kwarg": "x = torch.tensor([1.0], **{'requires' + '_grad': True})",
    "meta_device": "x = torch.zeros(3, device='meta')",
    "to_meta": "x = logits.to('meta')",
    "sparse": "x = logits.to_sparse()",
    "storage": "s = logits.untyped_storage()",
    "numpy_object_array": "import numpy as np\na = np.array([torch], dtype=object)",
    "numpy_module_state": "import numpy as np\nt = np.typecodes",
    "numpy_file": "import numpy as np\nnp.save('x', np.zeros(1))",
    "torch_load": "t = torch.load('x')",
    "generator_object": "g = torch.Generator()",
    "exception_traceback": "try:\n    1/0\nexcept Exception as e:\n    t = getattr(e, 'with_traceback')",
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_only_allowlisted_objects_are_reachable_and_the_refusal_names_them(route):
    with pytest.raises((restricted.NotAllowed, NameError, SyntaxError)) as e:
        restricted_run(ROUTES[route], logits=torch.randn(4, 5))
    if e.type is restricted.NotAllowed:
        assert "allowed in an answer" in str(e.value)


@pytest.mark.parametrize("src, named", [
    ("fs = torch.overrides.get_ignored_functions()", "torch.overrides"),
    ("f = getattr(torch, 'set_' + 'grad_enabled')", "torch.set_grad_enabled"),
    ("w = F.relu.x", "relu"),
    ("x = torch.zeros(3, **{'requires' + '_grad': True})", "requires_grad=True"),
    ("x = logits.to('meta')", "meta"),
    ("s = 'a'.format(1)", "str.format"),
])
def test_a_refusal_says_what_was_refused(src, named):
    with pytest.raises(restricted.NotAllowed, match=named.replace(".", r"\.").replace("(", r"\(")):
        restricted_run(src, logits=torch.randn(4, 5))


def test_no_tensor_an_answer_holds_requires_grad_and_grad_mode_stays_off():
    g = restricted_run("ok = torch.is_grad_enabled()\nwith torch.no_grad():\n    y = logits * 2\n"
                       "z = torch.ones(3)\nw = logits.clone()", logits=torch.randn(4, 5))
    assert g["ok"] is False and not any(g[k].requires_grad for k in "yzw")


@pytest.mark.parametrize("src", [
    "f = getattr(torch, 'enable' + '_grad')\nwith f():\n    x = logits.clone()\n" + RIGHT,
    "from torch.overrides import get_ignored_functions as g\n"
    "s = [f for f in g() if 'set_grad' in str(f)][0]\ns(True)\nl = logits.clone()\n" + RIGHT,
    "x = torch.zeros(n, vocab_size, **{'requires' + '_grad': True})\ndlogits = x",
])
def test_autograd_cannot_be_switched_on_in_the_sandbox(src):
    """The attack's statement is refused; the right answer after it scores, computed by hand."""
    v = ex2(src)
    if "dlogits = x" in src:
        assert not v.ok and "requires_grad" in v.message
    else:
        assert v.ok, v.message


def test_an_augmented_item_whose_index_calls_or_indexes_compiles():
    """`x[i, int(Yb[i])] -= 1` (an honest loop's patch): the read and the write of the item
    are rewritten by RestrictedPython apart, so neither sees the other's rewritten nodes."""
    g = restricted_run("for i in range(3):\n    p[i, int(Y[i])] -= 1.5\nq = [1.0, 2.0]\nq[int(Y[1])] += 1\n"
                       "p[0, Y[1].item()] += 0.25", p=torch.zeros(3, 3), Y=torch.tensor([2, 0, 1]))
    assert g["p"].tolist() == [[0.25, 0.0, -1.5], [-1.5, 0.0, 0.0], [0.0, -1.5, 0.0]] and g["q"] == [2.0, 2.0]


def test_writes_to_modules_functions_and_classes_are_refused():
    for src in ["F.relu.x = 1", "setattr(F.relu, 'x', 1)", "torch.x = 1", "import math\nmath.y = 2",
                "import numpy as np\nnp.typecodes['x'] = 1", "t = torch.zeros\nt.cache = [1]",
                "del F.relu"]:
        with pytest.raises((restricted.NotAllowed, NameError, SyntaxError)):
            restricted_run(src)
    g = restricted_run("class K:\n    pass\nk = K()\nk.a = [1]\nk.a.append(2)\nd = {}\nd['x'] = 1\n"
                       "l = [0]\nl[0] = 3\nt = torch.zeros(2)\nt[0] = 1.0")
    assert g["k"].a == [1, 2] and g["d"] == {"x": 1} and g["l"] == [3] and g["t"][0] == 1.0
    with pytest.raises(restricted.NotAllowed):
        restricted_run("class K:\n    pass\nK.a = 1")


# -- 2. no state survives between exercises ---------------------------------------------------

KEEP = {  # Exercise 1's answer keeps the true dlogits (handed back after its answer) somewhere
    "function_attribute": "F.relu.kept = dlogits",
    "numpy_dict": "import numpy as np\nnp.typecodes['kept'] = dlogits",
    "setattr_on_a_module": "setattr(torch, 'kept', dlogits)",
    "math_module": "import math\nmath.kept = dlogits",
}
READ = {  # ... and Exercise 2's answer reads it back
    "function_attribute": "dlogits = F.relu.kept",
    "numpy_dict": "import numpy as np\ndlogits = np.typecodes['kept']",
    "setattr_on_a_module": "dlogits = getattr(torch, 'kept')",
    "math_module": "import math\ndlogits = math.kept",
}


@pytest.mark.parametrize("route", list(KEEP))
def test_nothing_written_in_one_exercise_is_read_in_another(route):
    cells = solution_cells("ex1")
    cells["ex1_second_layer"] = KEEP[route] + "\n" + cells["ex1_second_layer"]
    verdicts = trusted_verdicts_many({"ex1": list(cells.items()), "ex2": [("ex2_dlogits", READ[route])]})
    assert all(v.ok for v in verdicts["ex1"].values()), "the refused statement costs nothing else"
    assert not verdicts["ex2"]["logits"].ok


def test_each_exercise_runs_in_a_fresh_process():
    """The global random state is shared by everything run in one process: Exercise 1 draws
    from it (a number of times that could carry a message); Exercises 2 and 3 must then see
    the same first draw (each a fresh child of the same pristine server), which they would
    not in one shared process."""
    answers = {"ex1": [("ex1_loss_chain", "for i in range(7):\n    torch.rand(1)\n"
                                          "cache = [torch.rand(1)]\ndef keep(v, store=cache):\n    store.append(v)")],
               "ex2": [("ex2_dlogits", "dlogits = torch.rand(1).expand(n, vocab_size).clone()")],
               "ex3": [("ex3_dhprebn", "dhprebn = torch.rand(1).expand(n, n_hidden).clone()")]}
    cases = {ex: score.make_cases(ex) for ex in answers}
    jobs = {ex: score.build_job(ex, score.statements(src), cases[ex]) for ex, src in answers.items()}
    collectors = {ex: score.Collector(ex, cases[ex]) for ex in answers}
    replay_server.run_many(jobs, collectors)
    first = [collectors[ex].answer("notebook", "true", "d" + k)[0, 0].item() for ex, k in [("ex2", "logits"), ("ex3", "hprebn")]]
    assert first[0] == first[1]


# -- 3. a numerical gradient is not a hand-derived one ----------------------------------------

FINITE_DIFFERENCES = {
    "central_loop_over_elements": """
h = 1e-3
dlogits = torch.zeros_like(logits)
for i in range(n):
    for j in range(vocab_size):
        xp = logits.clone(); xp[i, j] += h
        xm = logits.clone(); xm[i, j] -= h
        dlogits[i, j] = (F.cross_entropy(xp, Yb) - F.cross_entropy(xm, Yb)) / (2 * h)
""",
    "numpy_float64": """
import numpy as np
L = logits.double().numpy()
Y = Yb.numpy()
def loss(a):
    m = a.max(1, keepdims=True)
    return (np.log(np.exp(a - m).sum(1)) + m[:, 0] - a[np.arange(a.shape[0]), Y]).mean()
g = np.zeros_like(L)
for i in range(L.shape[0]):
    for j in range(L.shape[1]):
        a = L.copy(); a[i, j] += 1e-6
        b = L.copy(); b[i, j] -= 1e-6
        g[i, j] = (loss(a) - loss(b)) / 2e-6
dlogits = torch.tensor(g).float()
""",
    "helper_function_whole_columns": """
def numgrad(x, h=1e-4):
    g = torch.zeros_like(x, dtype=torch.float64)
    xd = x.double()
    for j in range(x.shape[1]):
        e = torch.zeros_like(xd); e[:, j] = h
        g[:, j] = (F.cross_entropy(xd + e, Yb, reduction='none') - F.cross_entropy(xd - e, Yb, reduction='none')) / (2 * h)
    return g / x.shape[0]
dlogits = numgrad(logits).float()
""",
    "lambda_float64": """
loss = lambda z: -(z - z.logsumexp(1, keepdim=True))[range(n), Yb].mean()
x = logits.double()
dlogits = torch.zeros_like(x)
for i in range(n):
    for j in range(vocab_size):
        d = torch.zeros_like(x); d[i, j] = 1e-6
        dlogits[i, j] = (loss(x + d) - loss(x - d)) / 2e-6
dlogits = dlogits.float()
""",
    "forward_differences_in_two_statements": """
base = F.cross_entropy(logits.double(), Yb)
vals = torch.zeros(n, vocab_size, dtype=torch.float64)
for i in range(n):
    for j in range(vocab_size):
        x = logits.double().clone(); x[i, j] += 1e-7
        vals[i, j] = F.cross_entropy(x, Yb)
dlogits = ((vals - base) / 1e-7).float()
""",
}


@pytest.mark.parametrize("attack", list(FINITE_DIFFERENCES))
def test_finite_differences_score_nothing_and_say_why(attack):
    v = ex2(FINITE_DIFFERENCES[attack])
    assert not v.ok and v.points == 0 and NUMERICAL in v.message, v.message


# The cost rule: a run that costs more than its exercise's bound in forward passes is
# numerical, whatever its scheme, including schemes no pattern of the watch names.
COSTLY = {
    # whatever it computes: here the right formula, evaluated thousands of times over
    "a_statement_that_costs_thousands_of_forward_passes_ex2": ("ex2", "ex2_dlogits", """
for _ in range(3000):
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits = dlogits / n
"""),
    "a_backward_that_evaluates_the_forward_pass_again_and_again": ("ex4", "ex4_backward", """
def backward(Xb, Yb, parameters, cache):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    for _ in range(150):
        forward(Xb, Yb, [p + 0.001 * torch.randn_like(p) for p in parameters])
    n = Xb.shape[0]
    dlogits = F.softmax(cache['logits'], 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dW2 = cache['h'].T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - cache['h']**2) * (dlogits @ W2.T)
    dbngain = (cache['bnraw'] * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * cache['bnvar_inv'] / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * cache['bnraw'] * (dhpreact * cache['bnraw']).sum(0))
    dembcat = dhprebn @ W1.T
    dW1 = cache['embcat'].T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(cache['emb'].shape)
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
"""),
}


@pytest.fixture(scope="module")
def costly_judged():
    return judged_in_batches({name: (ex, [(cell, src)]) for name, (ex, cell, src) in COSTLY.items()})


@pytest.mark.parametrize("scheme", list(COSTLY))
def test_a_run_that_costs_many_forward_passes_scores_nothing_and_says_so(scheme, costly_judged):
    """Is an answer whose statement (or call of backward) costs far more forward passes of its
    exercise than a backward pass needs scored 0, every gradient it writes, with the cost as
    the reason, though its result is right and no element of an input is moved alone?"""
    verdicts = costly_judged[scheme]
    assert all(not v.ok and v.points == 0 and v.status == "refused" for v in verdicts.values()
               if v.name != "training"), {k: v.message for k, v in verdicts.items()}
    said = [v.message for v in verdicts.values() if v.name != "training"]
    assert all(NUMERICAL in m and "forward passes of the exercise; a backward pass costs a few" in m for m in said), said


def test_the_forward_pass_cost_is_the_exercises_own():
    """Is the cost rule's unit each exercise's own forward pass: the whole network for
    Exercises 1 and 4 (matrix products included), cross-entropy's tensors for 2, BatchNorm's
    for 3; and does it grow with the batch?"""
    from autograder.exercises import EXERCISES
    costs = {k: [score.forward_cost(EXERCISES[k], c.values) for c in score.make_cases(k)] for k in EXERCISES}
    n = [c[3] for c in score.PRACTICE.cases]
    assert costs["ex2"][0] == 2 * (n[0] * 27 * 4 + n[0] * 3)  # four (n, 27) tensors and three (n, 1)
    assert costs["ex1"][0] > 32 * (30 * 64 + 64 * 27) > costs["ex3"][0] > costs["ex2"][0]
    assert all(sorted(c) == [c[2], c[0], c[1]] for c in costs.values()), (n, costs)  # 19 < 32 < 48


@pytest.mark.parametrize("src", [
    "dhpreact = dh * (torch.tanh(hpreact + 1e-3) - torch.tanh(hpreact - 1e-3)) / 2e-3",
    "dhpreact = dh * (torch.tanh(hpreact.double() + 1e-6) - h.double()) / 1e-6",
])
def test_a_whole_tensor_perturbation_is_numerical_too(src):
    cells = solution_cells("ex1")
    cells["ex1_second_layer"] = cells["ex1_second_layer"].replace(
        next(line for line in cells["ex1_second_layer"].splitlines() if line.startswith("dhpreact")), src)
    verdicts = trusted_verdicts("ex1", list(cells.items()))
    assert not verdicts["hpreact"].ok and NUMERICAL in verdicts["hpreact"].message
    assert all(v.ok for k, v in verdicts.items() if k != "hpreact"), "only the numerical step is lost"


def test_finite_differences_through_exercise_4s_forward_score_nothing():
    backward = solution_cells("ex4")["ex4_backward"]
    src = backward + """
honest = backward
def backward(Xb, Yb, parameters, cache):
    grads = honest(Xb, Yb, parameters, cache)
    b2 = parameters[4]
    g = torch.zeros_like(b2)
    for k in range(b2.shape[0]):
        ps = [p.clone() for p in parameters]
        ps[4][k] += 1e-3
        up = forward(Xb, Yb, ps)[0]
        ps[4][k] -= 2e-3
        down = forward(Xb, Yb, ps)[0]
        g[k] = (up - down) / 2e-3
    grads[4] = g
    return grads
"""
    verdicts = trusted_verdicts("ex4", [("ex4_backward", src)])
    assert not verdicts["b2"].ok and NUMERICAL in verdicts["b2"].message
    assert not verdicts["training"].ok and NUMERICAL in verdicts["training"].message


# Siblings of the loops above (issue 18): each computes Exercise 1's dlogits numerically, in a
# learner's submission whose every other step is the instructor's. Each is checked to score
# without the watch (in the learner's kernel) and to score 0, saying why, through the trusted
# path, where every other gradient keeps its point. `step`, not `h`: h is the hidden layer.
SIBLINGS = {
    # 1. perturbed copies batched into one tensor, evaluated once
    "batch_eye_central": """
step = 1e-4
x = logits.double()
N = n * vocab_size
E = step * torch.eye(N, dtype=torch.float64).view(N, n, vocab_size)
def batch_loss(X):
    return -X.log_softmax(2)[:, torch.arange(n), Yb].mean(1)
dlogits = ((batch_loss(x.unsqueeze(0) + E) - batch_loss(x.unsqueeze(0) - E)) / (2 * step)).view(n, vocab_size).float()
""",
    "batch_repeat_index_forward": """
step = 1e-6
x = logits.double()
N = n * vocab_size
X = x.repeat(N, 1, 1)
k = torch.arange(N)
X[k, k // vocab_size, k % vocab_size] += step
f0 = F.cross_entropy(x, Yb)
fk = F.cross_entropy(X.view(N * n, vocab_size), Yb.repeat(N), reduction='none').view(N, n).mean(1)
dlogits = ((fk - f0) / step).view(n, vocab_size).float()
""",
    "batch_stack_of_flat_copies": """
step = 1e-5
x = logits.double().reshape(-1)
N = x.shape[0]
plus = torch.stack([x + step * F.one_hot(torch.tensor(k), N) for k in range(N)]).view(N, n, vocab_size)
minus = torch.stack([x - step * F.one_hot(torch.tensor(k), N) for k in range(N)]).view(N, n, vocab_size)
lse = lambda X: (X.logsumexp(2) - X.gather(2, Yb.view(1, n, 1).expand(N, n, 1)).squeeze(2)).mean(1)
dlogits = ((lse(plus) - lse(minus)) / (2 * step)).view(n, vocab_size).float()
""",
    "batch_cat_scatter": """
step = 1e-5
x = logits.double()
N = n * vocab_size
X = torch.cat([x] * N).view(N, N)
Xp = X.scatter_add(1, torch.arange(N).view(N, 1), torch.full((N, 1), step, dtype=torch.float64))
Xm = X.scatter_add(1, torch.arange(N).view(N, 1), torch.full((N, 1), -step, dtype=torch.float64))
def L(A):
    A = A.view(N, n, vocab_size)
    return (A.logsumexp(2) - A[:, torch.arange(n), Yb]).mean(1)
dlogits = ((L(Xp) - L(Xm)) / (2 * step)).view(n, vocab_size).float()
""",
    "batch_expand_index_put": """
step = 1e-5
x = logits.double()
N = n * vocab_size
k = torch.arange(N)
at = (k, k // vocab_size, k % vocab_size)
Xp = x.expand(N, n, vocab_size).clone().index_put_(at, torch.full((N,), step, dtype=torch.float64), accumulate=True)
Xm = x.expand(N, n, vocab_size).clone().index_put_(at, torch.full((N,), -step, dtype=torch.float64), accumulate=True)
L = lambda A: F.cross_entropy(A.reshape(N * n, vocab_size), Yb.repeat(N), reduction='none').view(N, n).mean(1)
dlogits = ((L(Xp) - L(Xm)) / (2 * step)).view(n, vocab_size).float()
""",
    # 2. pure Python numbers
    "python_tolist_central_copies": """
import math
L = logits.tolist()
Y = Yb.tolist()
def row_loss(r, y):
    m = max(r)
    return (m + math.log(sum(math.exp(v - m) for v in r)) - r[y]) / n
step = 1e-5
g = []
for i in range(n):
    row = []
    for j in range(vocab_size):
        P = L[i][:]; P[j] += step
        Q = L[i][:]; Q[j] -= step
        row.append((row_loss(P, Y[i]) - row_loss(Q, Y[i])) / (2 * step))
    g.append(row)
dlogits = torch.tensor(g)
""",
    "python_tolist_forward_in_place": """
import math
L = logits.double().tolist()
def row_loss(r, y):
    return (math.log(sum(math.e ** v for v in r)) - r[y]) / n
step = 1e-6
g = [[0.0] * vocab_size for i in range(n)]
for i in range(n):
    y = int(Yb[i])
    f0 = row_loss(L[i], y)
    for j in range(vocab_size):
        L[i][j] += step
        g[i][j] = (row_loss(L[i], y) - f0) * (1 / step)
        L[i][j] -= step
dlogits = torch.tensor(g, dtype=torch.float32)
""",
    "python_item_streaming": """
import math
step = 1e-5
def row_loss(i, pj, d):
    s = 0.0
    for j in range(vocab_size):
        v = logits[i, j].item()
        if j == pj:
            v = v + d
        s += math.exp(v)
        if j == Yb[i].item():
            t = v
    return (math.log(s) - t) / n
dlogits = torch.zeros(n, vocab_size)
for i in range(n):
    for j in range(vocab_size):
        dlogits[i, j] = (row_loss(i, j, step) - row_loss(i, j, -step)) / (2 * step)
""",
    "python_float_of_elements_forward": """
import math
step = 1e-6
dlogits = torch.zeros(n, vocab_size)
for i in range(n):
    r = [float(logits[i, j]) for j in range(vocab_size)]
    y = int(Yb[i])
    base = math.log(sum(math.exp(v) for v in r)) - r[y]
    for j in range(vocab_size):
        p = list(r)
        p[j] = p[j] + step
        dlogits[i, j] = (math.log(sum(math.exp(v) for v in p)) - p[y] - base) / step / n
""",
    "numpy_rows_central": """
import numpy as np
A = logits.double().numpy()
step = 1e-5
G = np.zeros_like(A)
for i in range(n):
    y = int(Yb[i])
    for j in range(vocab_size):
        r = A[i].copy(); r[j] += step
        q = A[i].copy(); q[j] -= step
        G[i, j] = ((np.log(np.exp(r).sum()) - r[y]) - (np.log(np.exp(q).sum()) - q[y])) / (2 * step) / n
dlogits = torch.from_numpy(G).float()
""",
    "rows_of_list_of_tensors": """
import math
rows = [r.tolist() for r in list(logits.double())]
step = 1e-5
g = []
for i, r in enumerate(rows):
    y = int(Yb[i])
    out = []
    for j in range(vocab_size):
        up = [v + (step if c == j else 0.0) for c, v in enumerate(r)]
        dn = [v - (step if c == j else 0.0) for c, v in enumerate(r)]
        f = lambda q: math.log(math.fsum([math.exp(v) for v in q])) - q[y]
        out.append((f(up) - f(dn)) / (2 * step) / n)
    g.append(out)
dlogits = torch.tensor(g).float()
""",
    # 3. larger steps
    "central_step_0_05": """
step = 0.05
x = logits.double()
dlogits = torch.zeros_like(x)
for i in range(n):
    for j in range(vocab_size):
        xp = x.clone(); xp[i, j] += step
        xm = x.clone(); xm[i, j] -= step
        dlogits[i, j] = (F.cross_entropy(xp, Yb) - F.cross_entropy(xm, Yb)) / (2 * step)
dlogits = dlogits.float()
""",
    "four_point_step_0_3_batched": """
step = 0.3
x = logits.double()
N = n * vocab_size
E = torch.eye(N, dtype=torch.float64).view(N, n, vocab_size)
L = lambda X: (X.logsumexp(2) - X[:, torch.arange(n), Yb]).mean(1)
x0 = x.unsqueeze(0)
g = 8 * L(x0 + step * E) - 8 * L(x0 - step * E) - L(x0 + 2 * step * E) + L(x0 - 2 * step * E)
dlogits = (g / (12 * step)).view(n, vocab_size).float()
""",
    # 4. other siblings
    "perturbed_recomputed_norm_logits": """
z = logits.double() - logits.double().max(1, keepdim=True).values
step = 1e-6
def loss_of(q):
    return (q.exp().sum(1).log() - q[torch.arange(n), Yb]).mean()
dlogits = torch.zeros(n, vocab_size)
for i in range(n):
    for j in range(vocab_size):
        e = torch.zeros_like(z); e[i, j] = step
        dlogits[i, j] = (loss_of(z + e) - loss_of(z - e)) / (2 * step)
""",
    "derived_tensor_perturbed_in_place": """
z = logits.double() * 0.5
step = 1e-6
loss_of = lambda q: F.cross_entropy(2 * q, Yb)
dlogits = torch.zeros(n, vocab_size)
for i in range(n):
    for j in range(vocab_size):
        z[i, j] += step
        up = loss_of(z)
        z[i, j] -= 2 * step
        down = loss_of(z)
        z[i, j] += step
        dlogits[i, j] = (up - down) / (4 * step)
""",
    "where_on_a_derived_tensor": """
z = (logits.double() + 1.0) * 2.0
step = 1e-6
loss_of = lambda q: F.cross_entropy(q / 2.0, Yb)
idx = torch.arange(n * vocab_size).view(n, vocab_size)
dlogits = torch.zeros(n, vocab_size)
for i in range(n):
    for j in range(vocab_size):
        m = idx == i * vocab_size + j
        dlogits[i, j] = (loss_of(torch.where(m, z + step, z)) - loss_of(torch.where(m, z - step, z))) / step
""",
    "complex_step_batched": """
x = logits.double()
N = n * vocab_size
Z = x.unsqueeze(0) + 1e-30j * torch.eye(N, dtype=torch.float64).view(N, n, vocab_size)
L = (Z.exp().sum(2).log() - Z[:, torch.arange(n), Yb]).mean(1)
dlogits = (L.imag / 1e-30).view(n, vocab_size).float()
""",
    "complex_step_numpy": """
import numpy as np
A = logits.double().numpy().astype('complex128')
I = np.sqrt(np.array([-1.0]).astype('complex128'))[0]
G = np.zeros((n, vocab_size))
for i in range(n):
    for j in range(vocab_size):
        r = A[i].copy(); r[j] = r[j] + 1e-30 * I
        G[i, j] = (np.log(np.exp(r).sum()) - r[int(Yb[i])]).imag / 1e-30 / n
dlogits = torch.from_numpy(G).float()
""",
}
LOSS_CHAIN_TAIL = ("dlogits = dnorm_logits.clone()\ndlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)\n"
                   "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes")


def with_numerical_dlogits(attack):
    cells = solution_cells("ex1")
    assert LOSS_CHAIN_TAIL in cells["ex1_loss_chain"]
    cells["ex1_loss_chain"] = cells["ex1_loss_chain"].replace(
        LOSS_CHAIN_TAIL, "dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)\n" + SIBLINGS[attack])
    return cells


@pytest.mark.parametrize("attack", list(SIBLINGS))
def test_each_sibling_is_a_right_numerical_gradient_where_nothing_watches(attack):
    """The premise of the next test: replayed as the learner's own kernel replays it (plain
    Python, no watch), each sibling's dlogits is right, and would earn its point."""
    verdicts = score.grade("ex1", list(with_numerical_dlogits(attack).items()))
    assert verdicts["logits"].ok, verdicts["logits"].message


@pytest.fixture(scope="module")
def siblings_judged():
    return judged_in_batches({a: ("ex1", list(with_numerical_dlogits(a).items())) for a in SIBLINGS})


@pytest.mark.parametrize("attack", list(SIBLINGS))
def test_each_sibling_of_finite_differences_scores_nothing_and_the_rest_keeps_its_points(attack, siblings_judged):
    verdicts = siblings_judged[attack]
    v = verdicts["logits"]
    assert not v.ok and v.points == 0 and NUMERICAL in v.message, v.message
    assert {k: x.message for k, x in verdicts.items() if k != "logits" and not x.ok} == {}, \
        "only the numerical gradient is lost"


def test_batched_finite_differences_in_exercise_4s_backward_score_nothing():
    """db2 from one vectorised evaluation at every perturbed b2 at once (a batch of copies)."""
    src = solution_cells("ex4")["ex4_backward"] + """
honest = backward
def backward(Xb, Yb, parameters, cache):
    grads = honest(Xb, Yb, parameters, cache)
    b2, W2, k, step = parameters[4], parameters[3], parameters[4].shape[0], 1e-5
    base = (cache['h'] @ W2).double()
    eye = torch.eye(k, dtype=torch.float64)
    L = lambda B: F.cross_entropy((base.unsqueeze(0) + B.unsqueeze(1)).reshape(-1, k), Yb.repeat(k),
                                  reduction='none').view(k, -1).mean(1)
    grads[4] = ((L(b2.double() + step * eye) - L(b2.double() - step * eye)) / (2 * step)).float()
    return grads
"""
    assert score.grade("ex4", [("ex4_backward", src)])["b2"].ok, "right where nothing watches"
    verdicts = trusted_verdicts("ex4", [("ex4_backward", src)])
    assert not verdicts["b2"].ok and NUMERICAL in verdicts["b2"].message, verdicts["b2"].message


@pytest.mark.parametrize("src", ["z = logits + 1e-20j", "z = logits.double() * complex(1, 0)",
                                 "import numpy as np\nz = logits.numpy().astype('complex128')",
                                 "z = torch.tensor([(-1.0) ** 0.5])", "z = pow(-1.0, 0.5)",
                                 "import numpy as np\nz = np.sqrt(np.array([-1.0]).astype('complex64'))"])
def test_complex_numbers_are_refused_wherever_they_appear(src):
    """Nothing in an answer needs them but a complex-step derivative (see SIBLINGS)."""
    with pytest.raises((restricted.NotAllowed, NameError)) as e:
        restricted_run(src, logits=torch.randn(4, 5))
    assert e.type is NameError or "complex numbers are not allowed" in str(e.value)


# Honest answers that come close to the rules above: numbers taken out with .item() or
# .tolist() and worked on in Python, numpy rows, a stack of per-row gradients, clones of a
# source patched, an epsilon added once, torch.eye in a formula, an accumulation loop on a
# clone, and a learner's own numerical check of a hand-derived gradient (it defines no
# gradient: it costs nothing). Each keeps every point.
HONEST_NEAR_THE_RULES = {  # (exercise, {cell: source} edits of the instructor's solution, or a whole answer)
    "item_loop_in_python": ("ex2", {"ex2_dlogits": """
import math
dlogits = torch.zeros_like(logits)
for i in range(n):
    m = logits[i].max().item()
    es = [math.exp(logits[i, j].item() - m) for j in range(vocab_size)]
    s = sum(es)
    for j in range(vocab_size):
        dlogits[i, j] = (es[j] / s - (1.0 if j == Yb[i].item() else 0.0)) / n
"""}),
    "tolist_rows_in_python": ("ex2", {"ex2_dlogits": """
import math
rows = []
for r, y in zip(logits.tolist(), Yb.tolist()):
    m = max(r)
    e = [math.exp(v - m) for v in r]
    s = math.fsum(e)
    p = [v / s for v in e]
    p[y] -= 1
    rows.append([v / n for v in p])
dlogits = torch.tensor(rows)
"""}),
    "numpy_rows": ("ex2", {"ex2_dlogits": """
import numpy as np
A = logits.double().numpy()
G = np.zeros_like(A)
for i in range(n):
    r = A[i]
    e = np.exp(r - r.max())
    p = e / e.sum()
    p[int(Yb[i])] -= 1
    G[i] = p / n
dlogits = torch.from_numpy(G).float()
"""}),
    "stack_of_per_row_gradients": ("ex2", {"ex2_dlogits": """
def row_grad(i):
    return (F.softmax(logits[i], 0) - F.one_hot(Yb[i], vocab_size)) / n
dlogits = torch.stack([row_grad(i) for i in range(n)])
"""}),
    "row_clones_patched": ("ex2", {"ex2_dlogits": """
dlogits = torch.zeros_like(logits)
for i in range(n):
    p = probs[i].clone()
    p[Yb[i]] -= 1
    dlogits[i] = p / n
"""}),
    "epsilon_once_and_one_hot": ("ex2", {"ex2_dlogits": """
safe = probs + 1e-8
dlogits = (safe / safe.sum(1, keepdim=True) - F.one_hot(Yb, vocab_size)) / n
"""}),
    "own_numerical_check_beside_the_hand_derived_gradient": ("ex2", {"ex2_dlogits": """
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
worst = 0.0
for i, j in [(0, 0), (1, 3), (5, 7)]:
    xp = logits.double().clone(); xp[i, j] += 1e-6
    xm = logits.double().clone(); xm[i, j] -= 1e-6
    num = (F.cross_entropy(xp, Yb) - F.cross_entropy(xm, Yb)) / 2e-6
    worst = max(worst, abs(num.item() - dlogits[i, j].item()))
"""}),
    "eye_jacobian_per_feature": ("ex3", {"ex3_dhprebn": """
I = torch.eye(n)
cols = []
for k in range(n_hidden):
    r = bnraw[:, k]
    J = bngain[0, k] * bnvar_inv[0, k] * (I - 1.0 / n - torch.outer(r, r) / (n - 1))
    cols.append(J @ dhpreact[:, k])
dhprebn = torch.stack(cols, 1)
"""}),
    "ex1_accumulation_loop_on_a_clone": ("ex1", {"ex1_loss_chain": [
        ("dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
         "am = logits.max(1).indices\nfor i in range(n):\n    dlogits[i, am[i]] += dlogit_maxes[i, 0]")]}),
    "ex1_item_loops_with_epsilons": ("ex1", {"ex1_loss_chain": [
        ("dprobs = (1.0 / probs) * dlogprobs",
         "dprobs = torch.zeros_like(probs)\nfor i in range(n):\n    for j in range(vocab_size):\n"
         "        dprobs[i, j] = dlogprobs[i, j].item() / (probs[i, j].item() + 1e-12)")],
        "ex1_second_layer": [
        ("dhpreact = (1.0 - h**2) * dh",
         "dhpreact = torch.tensor([[(1 - v * v) * g for v, g in zip(hr, gr)] for hr, gr in zip(h.tolist(), dh.tolist())])")]}),
    "ex1_eye_in_dC_and_epsilons_in_batchnorm": ("ex1", {"ex1_first_layer": [
        ("dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n    for j in range(Xb.shape[1]):\n        ix = Xb[k, j]\n        dC[ix] += demb[k, j]",
         "dC = torch.eye(vocab_size)[Xb.view(-1)].T @ demb.view(-1, n_embd)")],
        "ex1_batchnorm": [("dbndiff = bnvar_inv * dbnraw", "dbndiff = (bnvar + 1e-5) ** -0.5 * dbnraw"),
                          ("dbnvar = (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv",
                           "dbnvar = -0.5 * ((bnvar + 1e-5) ** -0.5) ** 3 * dbnvar_inv")]}),
}


def honest_cells(exercise, edits):
    cells = solution_cells(exercise)
    for cell, edit in edits.items():
        if isinstance(edit, str):
            cells[cell] = edit
            continue
        for old, new in edit:
            assert old in cells[cell], old
            cells[cell] = cells[cell].replace(old, new, 1)
    return cells


@pytest.fixture(scope="module")
def honest_near_the_rules_judged():
    return judged_in_batches({style: (ex, list(honest_cells(ex, edits).items()))
                              for style, (ex, edits) in HONEST_NEAR_THE_RULES.items()})


@pytest.mark.parametrize("style", list(HONEST_NEAR_THE_RULES))
def test_honest_answers_near_the_rules_keep_every_point(style, honest_near_the_rules_judged):
    verdicts = honest_near_the_rules_judged[style]
    assert {k: v.message for k, v in verdicts.items() if not v.ok} == {}


HONEST_EX1 = {  # honest variants that add small constants, clone and patch, loop, and so on
    "ex1_loss_chain": [("dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs / (probs + 1e-12)"),
                       ("(-counts_sum**-2)", "(-(counts_sum + 1e-6)**-2)")],
    "ex1_batchnorm": [("bnvar_inv", "(bnvar + 1e-5) ** -0.5")],
}


def test_honest_answers_keep_every_point_under_the_watch():
    """The instructor's solutions, the fairness fixture's big cell in another style, and
    honest variants that add small constants (`probs + 1e-12`, `(bnvar + 1e-5) ** -0.5`)
    twice, in one learner's replay: no honest answer is taken for a numerical one."""
    from test_fairness import EMPTY, ONE_BIG_CELL
    cells = solution_cells("ex1")
    for cell, edits in HONEST_EX1.items():
        for old, new in edits:
            if old in cells[cell]:
                cells[cell] = cells[cell].replace(old, new, 1)
    cells["ex1_loss_chain"] += "\nprobs_again = logits.softmax(1)\ncheck = torch.log(probs + 1e-8) + torch.log(probs_again + 1e-9)\n"
    answers = {"ex1": list(cells.items()), "ex2": [("ex2_dlogits", RIGHT)],
               "ex3": list(solution_cells("ex3").items()), "ex4": list(solution_cells("ex4").items())}
    verdicts = trusted_verdicts_many(answers)
    assert {(ex, k): v.message for ex in verdicts for k, v in verdicts[ex].items() if not v.ok} == {}
    big = trusted_verdicts("ex1", list({"ex1_loss_chain": ONE_BIG_CELL, **EMPTY}.items()))
    assert {k: v.message for k, v in big.items() if not v.ok} == {}


# -- 4. answers must be dense, strided, on the CPU, of a float dtype --------------------------

def _unusual():
    t = torch.randn(4, 5)
    out = {"meta": torch.zeros(4, 5, device="meta"), "sparse": t.to_sparse(), "int": t.long(),
           "bool": t > 0, "complex": torch.complex(t, t), "csr": t.to_sparse_csr(),
           "nested": torch.nested.nested_tensor([torch.randn(2), torch.randn(3)]),
           "parameter": torch.nn.Parameter(t.clone()),
           "quantized": torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)}
    try:
        from torch.masked import masked_tensor
        out["masked"] = masked_tensor(t, t > 0)
    except Exception:  # pragma: no cover (older torch)
        pass
    return out


@pytest.mark.parametrize("kind", list(_unusual()))
def test_an_unusual_tensor_gets_a_verdict_never_an_exception(kind):
    value = _unusual()[kind]
    cases = score.make_cases("ex2")
    collector = score.Collector("ex2", cases)
    for c in cases:
        collector.give(c.name, "true", "dlogits", value)
    assert isinstance(collector.answer("notebook", "true", "dlogits"), str)
    v = score.score("ex2", collector, {})["logits"]
    assert not v.ok and "not judged" in v.message and "dense float tensor on the CPU" in v.message


@pytest.mark.parametrize("src, said", [("dlogits = logits.long()", "int64"), ("dlogits = logits > 0", "bool"),
                                       ("dlogits = torch.zeros(n, vocab_size, device='meta')", "meta")])
def test_an_unusual_answer_through_the_sandbox_gets_a_clear_verdict(src, said):
    v = ex2(src)
    assert not v.ok and said in v.message, v.message


def _pipe_with(data):
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def _torch_save(message):
    buf = io.BytesIO()
    torch.save(message, buf)
    return buf.getvalue()


@pytest.mark.parametrize("body", [b"not a message at all", b"PK\x03\x04 broken zip", b"", b"\x00\x00\x00\x05{\"v\":",
                                  b"\xff\xff\xff\xff{}", _torch_save({"op": "give"}), b"\x00\x00\x00\x04\xff\xfe{}"])
def test_a_garbage_message_is_a_wire_error(body):
    fd = _pipe_with(struct.pack(">Q", len(body) + 1) + body + b"x")
    with pytest.raises(wire.WireError):
        wire.receive(fd)
    os.close(fd)


def _framed(header, data=b""):
    """A message as a lying sender could write it: any header, any data."""
    head = json.dumps(header).encode()
    body = struct.pack(">I", len(head)) + head + data
    return struct.pack(">Q", len(body)) + body


def _deep(n):
    node = 1
    for _ in range(n):
        node = {"l": [node]}
    return node


@pytest.mark.parametrize("header, data", [
    ({"v": {"l": [1, 2]}, "x": []}, b""),  # not a dict
    ({"v": {"d": {"a": {"q": 1}}}, "x": []}, b""),  # no such container
    ({"v": {"d": {"a": {"d": {}, "l": []}}}, "x": []}, b""),  # two at once
    ({"v": {"d": {"a": _deep(12)}}, "x": []}, b""),  # too deep
    ({"v": {"d": {"a": {"x": 1}}}, "x": [["torch.float32", [2], 8]]}, bytes(8)),  # no tensor 1
    ({"v": {"d": {"a": {"x": True}}}, "x": [["torch.float32", [2], 8]]}, bytes(8)),
    ({"v": {"d": {}}, "x": [["torch.complex64", [2], 16]]}, bytes(16)),  # not real
    ({"v": {"d": {}}, "x": [["torch.qint8", [2], 2]]}, bytes(8)),  # quantized
    ({"v": {"d": {}}, "x": [["os.system", [2], 8]]}, bytes(8)),
    ({"v": {"d": {}}, "x": [["torch.float32", [2], 4]]}, bytes(8)),  # size not the shape's
    ({"v": {"d": {}}, "x": [["torch.float32", [-2], 8]]}, bytes(8)),
    ({"v": {"d": {}}, "x": [["torch.float32", [True, 2], 8]]}, bytes(8)),
    ({"v": {"d": {}}, "x": [["torch.float32", [2], 8]]}, bytes(16)),  # data beyond the header's
    ({"v": {"d": {}}, "x": [["torch.float32", [4], 16]]}, bytes(8)),  # data short of it
    ({"v": {"d": {}}, "x": [["torch.float32", [2**62, 2**62], 0]]}, b""),
    ({"v": {"d": {}}}, b""), ({"v": {"d": {}}, "x": [], "y": 1}, b""), ([], b"")])
def test_a_message_that_lies_about_what_it_holds_is_a_wire_error(header, data):
    fd = _pipe_with(_framed(header, data))
    with pytest.raises(wire.WireError):
        wire.receive(fd)
    os.close(fd)


def _deep_list(n):
    node = 1
    for _ in range(n):
        node = [node]
    return node


@pytest.mark.parametrize("message", [{"value": torch.zeros(2, device="meta")}, {1: "x"}, {"value": {1, 2}},
                                     {"value": torch.zeros(2).to_sparse()}, {"value": torch.nn.Parameter(torch.zeros(2))},
                                     {"value": {"deep": torch.zeros(2, requires_grad=True)}},
                                     {"value": torch.zeros(2, dtype=torch.complex64)}, {"value": _deep_list(12)}])
def test_a_message_that_is_not_plain_data_is_never_sent(message):
    r, w = os.pipe()
    with pytest.raises(wire.WireError):
        wire.send(w, message)
    os.close(r)
    os.close(w)


def test_plain_data_comes_back_as_it_was_sent_and_any_corruption_is_a_wire_error_or_plain_data():
    """Every kind of plain data survives the wire exactly (tuples stay tuples, a lone
    surrogate, NaN, -0.0, a big integer, empty and 0-d tensors, bfloat16, bool, a transposed
    view); and a message with any of its bytes changed decodes to plain data or is a
    WireError, never anything else."""
    import math
    import random
    message = {"t": (1, 2.5, None, True, "x\ud800"), "l": [float("nan"), -0.0, 2**70, []], "d": {"k": {}},
               "f": torch.randn(32, 27), "e": torch.zeros(0, 5, dtype=torch.int64), "b": torch.tensor([True, False]),
               "bf": torch.randn(3).bfloat16(), "s": torch.tensor(3.0), "v": torch.randn(4, 5).T, "i": torch.arange(7)}
    back = wire.decode(wire.encode(message))
    assert set(back) == set(message) and back["t"] == message["t"] and type(back["t"]) is tuple
    assert math.isnan(back["l"][0]) and str(back["l"][1]) == "-0.0" and back["l"][2:] == [2**70, []]
    assert back["d"] == {"k": {}}
    for k in "febsvi":
        assert back[k].dtype == message[k].dtype and back[k].shape == message[k].shape and torch.equal(back[k], message[k])
    body = bytearray(wire.encode(message))
    rng = random.Random(0)
    for _ in range(3000):
        broken = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            broken[rng.randrange(len(broken))] = rng.randrange(256)
        try:
            out = wire.decode(bytes(broken))
        except wire.WireError:
            continue
        wire.encode(out)  # plain data: it can be sent on


GARBAGE_CHILD = """
import os, struct, sys
fd = int(sys.argv[-1])
os.write(fd, struct.pack(">Q", 20) + b"\\x80\\x04garbage-not-a-save!")
"""


def test_a_child_that_sends_garbage_costs_that_learner_only(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_prefix", lambda *a, **k: [sys.executable, "-c", GARBAGE_CHILD])
    verdicts = trusted_verdicts_many({"ex2": [("ex2_dlogits", RIGHT)], "ex3": list(solution_cells("ex3").items())})
    for ex in ("ex2", "ex3"):
        for v in verdicts[ex].values():
            assert not v.ok and "could not be read" in v.message and not v.grader_error


def test_a_fault_of_the_grader_is_reported_as_the_graders(monkeypatch):
    def broken(*a, **k):
        raise KeyError("a bug of the grader")
    monkeypatch.setattr(score, "score", broken)
    verdicts = trusted_verdicts_many({"ex2": [("ex2_dlogits", RIGHT)]})
    v = verdicts["ex2"]["logits"]
    assert v.grader_error and v.message.startswith("GRADER ERROR") and v.points == 0


def test_a_fault_of_the_grader_is_never_a_row_of_zeros(monkeypatch, tmp_path):
    """score_rows (what --scores-only and the cluster jobs write) raises GraderBroken for a
    grader fault, so the class runner reports the grader's failure instead of a 0 for the learner."""
    import nbformat
    from autograder.grader import trusted
    from autograder.grader.course import ROOT as COURSE
    release = COURSE / "release" / "backprop_ninja"
    (tmp_path / "sub").mkdir()
    nb = nbformat.read(release / "ex2_cross_entropy.ipynb", as_version=4)
    nbformat.write(nb, tmp_path / "sub" / "ex2_cross_entropy.ipynb")
    monkeypatch.setattr(score, "score", lambda *a, **k: (_ for _ in ()).throw(KeyError("a bug of the grader")))
    with pytest.raises(trusted.GraderBroken, match="GRADER ERROR"):
        trusted.score_rows("someone", tmp_path / "sub", release, score.PRACTICE)


# -- 5. hidden cases never leave the grader -----------------------------------------------------

def test_an_error_on_a_hidden_case_quotes_no_value():
    cases = score.make_cases("ex2")
    hidden = [c for c in cases if c.name != "notebook"]
    src = ("def probs():\n    if n != 32:\n        raise ValueError('leak ' + str(Yb.tolist()) + str(logits[0].tolist()))\n"
           "    return F.softmax(logits, 1)\ndlogits = probs()\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n")
    v = ex2(src)
    assert not v.ok
    for c in hidden:
        assert str(c.Yb.tolist()[:3])[1:-1] not in v.message
    assert "raised an error on a hidden case" in v.message and "leak" not in v.message, v.message
    assert "ValueError" not in v.message and "line" not in v.message, v.message
    answers = {"ex2": [("ex2_dlogits", "raise ValueError('leak ' + str(n) + str(Yb.tolist()))")]}
    jobs = {"ex2": score.build_job("ex2", score.statements(answers["ex2"]), cases)}
    errors = replay_server.run_many(jobs, {"ex2": score.Collector("ex2", cases)})["ex2"]
    assert "leak 32" in errors["notebook/true/*"], "the notebook's own batch may be quoted"
    for c in hidden:
        assert errors[f"{c.name}/true/*"] == "raised an error on a hidden case"


def test_redaction_keeps_the_graders_own_messages():
    errors = score.redacted({"notebook/true/dlogits": "ValueError: 1, 2 (line 1)",
                               "hidden_a/true/dlogits": "NameError: name 'q' is not defined (line 3)",
                               "hidden_b/true/*": "TypeError: [0.25, 0.5]",
                               "numerical/hidden_a/true/dlogits": NUMERICAL, "process": "the process crashed"})
    assert errors == {"notebook/true/dlogits": "ValueError: 1, 2 (line 1)",
                      "hidden_a/true/dlogits": "raised an error on a hidden case",
                      "hidden_b/true/*": "raised an error on a hidden case",
                      "numerical/hidden_a/true/dlogits": NUMERICAL + " (on a hidden case)",
                      "process": "the process crashed"}
