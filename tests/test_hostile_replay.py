"""The replay's trust, round 3 (issue 18): hostile answers through the trusted path
(trusted_verdicts_many: the sandboxed fork server, a fresh child per exercise, the restricted
language, the finite-difference watch), each class of attack with its siblings, and the honest
styles beside them keeping their points."""
import io
import os
import struct
import sys

import pytest
import torch

from autograder import score
from autograder.grader import restricted, sandbox, wire
from autograder.grader.trusted import trusted_verdicts, trusted_verdicts_many
from conftest import solution_cells

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
    sandbox.run_many(jobs, collectors)
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


@pytest.mark.parametrize("body", [b"not a torch.save at all", b"PK\x03\x04 broken zip", b""])
def test_a_garbage_message_is_a_wire_error(body):
    fd = _pipe_with(struct.pack(">Q", len(body) + 1) + body + b"x")
    with pytest.raises(wire.WireError):
        wire.receive(fd)
    os.close(fd)


@pytest.mark.parametrize("message", [[1, 2], {"value": torch.zeros(2, device="meta")}, {1: "x"},
                                     {"value": torch.zeros(2).to_sparse()}, {"value": torch.nn.Parameter(torch.zeros(2))},
                                     {"value": {"deep": torch.zeros(2, requires_grad=True)}}])
def test_a_message_that_is_not_plain_data_is_a_wire_error(message):
    buf = io.BytesIO()
    torch.save(message, buf)
    fd = _pipe_with(struct.pack(">Q", buf.getbuffer().nbytes) + buf.getvalue())
    with pytest.raises(wire.WireError):
        wire.receive(fd)
    os.close(fd)


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
    assert "ValueError on a hidden case (line 3)" in v.message and "leak" not in v.message, v.message
    answers = {"ex2": [("ex2_dlogits", "raise ValueError('leak ' + str(n) + str(Yb.tolist()))")]}
    jobs = {"ex2": score.build_job("ex2", score.statements(answers["ex2"]), cases)}
    errors = sandbox.run_many(jobs, {"ex2": score.Collector("ex2", cases)})["ex2"]
    assert "leak 32" in errors["notebook/true/*"], "the notebook's own batch may be quoted"
    for c in hidden:
        assert errors[f"{c.name}/true/*"] == "ValueError on a hidden case (line 1)"


def test_redaction_keeps_the_graders_own_messages():
    errors = score.redacted({"notebook/true/dlogits": "ValueError: 1, 2 (line 1)",
                               "hidden_a/true/dlogits": "NameError: name 'q' is not defined (line 3)",
                               "hidden_b/true/*": "TypeError: [0.25, 0.5]",
                               "numerical/hidden_a/true/dlogits": NUMERICAL, "process": "the process crashed"})
    assert errors == {"notebook/true/dlogits": "ValueError: 1, 2 (line 1)",
                      "hidden_a/true/dlogits": "NameError on a hidden case (line 3)",
                      "hidden_b/true/*": "TypeError on a hidden case",
                      "numerical/hidden_a/true/dlogits": NUMERICAL, "process": "the process crashed"}
