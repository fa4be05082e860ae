"""Run a learner's answer cells on the exercise's cases and collect the tensors they define.

This is the only module that executes learner code. It returns plain tensors keyed by name
(plus error messages), so that it can run in a separate, sandboxed process.
"""
import ast
import contextlib
import math
import os
import signal
import threading
import warnings

import torch

from . import model
from .compare import broadcast_equal
from .exercises import CASES, EXERCISES, case_inputs, namespace, sgd_run, training_batches

STATEMENT_SECONDS = 10  # one statement of an answer (or one call of backward) at most


class StatementTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    """Raise StatementTimeout in the block after `seconds` of wall time (main thread only)."""
    def stop(signum, frame):
        raise StatementTimeout(f"stopped after {seconds} s")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def silenced():
    """Discard what learner code prints (however much), and its warnings."""
    with open(os.devnull, "w") as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def strip_magics(src):
    """Drop IPython-only lines (%magics, !shell), which plain Python cannot run."""
    return "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))


def _statements(cell_id, src):
    """The cell's top-level statements, each compiled on its own."""
    tree = ast.parse(strip_magics(src), f"<{cell_id}>")
    return [compile(ast.Module([stmt], type_ignores=[]), f"<{cell_id}>", "exec") for stmt in tree.body]


def run_cells(sources, ns, stages=None, shapes=None, stand_ins=None):
    """Execute each (cell_id, source) in ns, one top-level statement at a time, silencing
    output; a statement that raises is recorded and the next one runs.

    Returns ({cell_id: error}, {variable: the learner's answer}). With stages = {cell_id:
    [variables it must define]}, shapes = {variable: expected shape} and stand_ins = {variable:
    a random tensor of that shape}:
    - a variable's answer is its last value up to the end of its own cell;
    - so that later steps are judged on their own, not thrown off by an earlier mistake, the
      namespace gets a misshapen answer reshaped (right number of elements) or else replaced
      by its random stand-in, as are a NaN/inf answer and, once its cell is done, a missing
      one. Stand-ins are random, not the reference, so they give nothing away."""
    stages, shapes, stand_ins = stages or {}, shapes or {}, stand_ins or {}
    errors, answers, seen, open_vars = {}, {}, {}, [v for vs in stages.values() for v in vs]
    for cell_id, src in sources:
        try:
            statements = _statements(cell_id, src)
        except SyntaxError as e:
            errors[cell_id] = f"SyntaxError: {e.msg} (line {e.lineno})"
            statements = []
        for code in statements:
            with silenced(), time_limit(STATEMENT_SECONDS):
                try:
                    exec(code, ns)
                except BaseException as e:  # SystemExit and KeyboardInterrupt too: one answer, one error
                    errors.setdefault(cell_id, f"{type(e).__name__}: {e}")
            for var in open_vars:
                v = ns.get(var)
                if not isinstance(v, torch.Tensor) or (var in seen and v.shape == seen[var].shape
                                                        and torch.equal(v, seen[var])):
                    continue
                answers[var] = v.detach().clone()
                if not broadcast_equal(v.shape, shapes[var]):
                    ns[var] = (v.detach().reshape(shapes[var]).clone() if v.numel() == math.prod(shapes[var])
                               else stand_ins[var].clone())
                if not torch.isfinite(ns[var]).all():
                    ns[var] = stand_ins[var].clone()
                seen[var] = ns[var].detach().clone()
        for var in stages.get(cell_id, []):  # this cell's answers are final
            open_vars.remove(var)
            v = ns.get(var)
            if not (isinstance(v, torch.Tensor) and broadcast_equal(v.shape, shapes[var])):
                ns[var] = stand_ins[var].clone()
    return errors, answers


def _defined(ns, name):
    v = ns.get(name)
    return v.detach().clone() if isinstance(v, torch.Tensor) else None


def prepare(exercise):
    """The inputs of every case, with autograd's reference (computed before learner code runs,
    since the sandbox then turns autograd off): [(case name, params, Xb, Yb, ref, values)]."""
    ex = EXERCISES[exercise]
    cases = []
    for case in CASES:
        params, Xb, Yb = case_inputs(case, ex.n_hidden)
        ref, values = (None, None) if ex.key == "ex4" else model.reference_grads(params, Xb, Yb)
        cases.append((case[0], params, Xb, Yb, ref, values))
    return cases


def replay_case(ex, sources, params, Xb, Yb, ref, values):
    """The learner's gradients {name: tensor or None} on one case, and cell errors (Exercises 1-3)."""
    ns = namespace(values, Xb, Yb, ex.n_hidden)
    if ex.key == "ex3":
        ns["dhpreact"] = ref["hpreact"].clone()  # given: the gradient flowing into BatchNorm
    stages = {cell: ["d" + k for k in names] for cell, names in ex.answer_cells.items()}
    g = torch.Generator().manual_seed(0)
    stand_ins = {"d" + k: torch.randn(ref[k].shape, generator=g) * ref[k].abs().mean() for k in ex.grads}
    errors, answers = run_cells(sources, ns, stages, {"d" + k: tuple(values[k].shape) for k in ex.grads}, stand_ins)
    grads = {k: answers.get("d" + k) for k in ex.grads}
    # what later steps saw, where a misshapen answer was reshaped (see run_cells)
    grads.update({f"seen:{k}": _defined(ns, "d" + k) for k in ex.grads})
    return grads, errors


def _learner_backward(sources):
    ns = {"torch": torch, "F": torch.nn.functional, "forward": model.forward_ex4}
    errors, _ = run_cells(sources, ns)
    fn = ns.get("backward")
    if not callable(fn):
        errors.setdefault("ex4_backward", "the answer cell does not define a function `backward`")
        return None, errors
    return fn, errors


def _call_backward(fn, params, Xb, Yb):
    """The learner's gradients for one step, as a list (None where missing), or an error."""
    _, cache = model.forward_ex4(Xb, Yb, params)
    with silenced(), time_limit(STATEMENT_SECONDS):
        try:
            grads = fn(Xb, Yb, list(params), {k: v.clone() for k, v in cache.items()})
        except BaseException as e:
            return None, f"{type(e).__name__}: {e}"
    grads = list(grads) if isinstance(grads, (list, tuple)) else []
    grads += [None] * (len(model.PARAM_NAMES) - len(grads))
    return [g.detach().clone() if isinstance(g, torch.Tensor) else None for g in grads[:7]], None


def replay_ex4_step(fn, params, Xb, Yb):
    """The learner's backward on one case: {name: tensor or None}, and its error if any."""
    grads, err = _call_backward(fn, list(params.values()), Xb, Yb) if fn else (None, None)
    return dict(zip(model.PARAM_NAMES, grads or [None] * len(model.PARAM_NAMES))), err


def replay_ex4_training(fn, errors):
    """Parameters after a short run driven by the learner's backward pass (None if it fails)."""
    params, _, _ = case_inputs(CASES[1], 200)

    def grad_fn(ps, Xb, Yb):
        grads, err = _call_backward(fn, ps, Xb, Yb)
        if err:
            errors["ex4_backward"] = err
        return grads

    with torch.no_grad():
        return sgd_run(grad_fn, list(params.values()), training_batches())


def replay(exercise, sources, prepared=None):
    """Everything the grader needs from learner code for one exercise:
    ({"<case>/<name>": tensor}, {"<case>/<cell>": error}). Missing gradients are absent."""
    ex = EXERCISES[exercise]
    tensors, errors = {}, {}
    fn, cell_errors = _learner_backward(sources) if exercise == "ex4" else (None, {})  # run the cell once
    for name, *inputs in prepared or prepare(exercise):
        if exercise == "ex4":
            grads, err = replay_ex4_step(fn, *inputs[:3])
            errs = {**cell_errors, **({"ex4_backward": err} if err else {})}
        else:
            grads, errs = replay_case(ex, sources, *inputs)
        tensors.update({f"{name}/{k}": v for k, v in grads.items() if v is not None})
        errors.update({f"{name}/{k}": v for k, v in errs.items()})
    if exercise == "ex4":
        train_errors = dict(cell_errors)
        trained = replay_ex4_training(fn, train_errors) if fn else None
        if trained is not None:
            tensors.update({f"training/{k}": v for k, v in zip(model.PARAM_NAMES, trained)})
        errors.update({f"training/{k}": v for k, v in train_errors.items()})
    return tensors, errors
