"""Judge a learner's replayed tensors: one verdict and its points per gradient.

Each gradient of Exercise 1 is judged on its own step: the expected value is that step's
vector-Jacobian product applied to the learner's own upstream gradients, so one early mistake
costs only its own points. The end-to-end comparison with autograd is reported beside it.
"""
from dataclasses import dataclass, field

import torch

from . import model
from .compare import broadcast_equal, compare
from .diagnose import diagnose
from .exercises import CASES, EXERCISES, case_inputs, sgd_run, training_batches

# Scoring tolerances (looser than the lecture's display tolerance: float32 noise of correct
# answers on other batches must pass; every typical mistake is off by far more).
GRADE_RTOL = 1e-4
GRADE_ATOL = 1e-7
TRAIN_RTOL = 1e-5  # Exercise 4: max |learner - twin| / max |twin| after the short run (right: ~3e-7; Bessel n: 4e-4)


@dataclass
class Verdict:
    """The score of one graded item and the comparisons behind it."""
    exercise: str
    name: str
    max_points: float
    ok: bool = False
    message: str = ""
    rows: list = field(default_factory=list)   # (case, "local" | "end-to-end", Row)

    @property
    def points(self):
        return self.max_points if self.ok else 0.0

    @property
    def test_id(self):
        return EXERCISES[self.exercise].test_id(self.name)

    def summary(self):
        mark = "ok" if self.ok else "WRONG"
        label = f"d{self.name}" if self.name in EXERCISES[self.exercise].grads else self.name
        return f"{label}: {mark} ({self.points:g}/{self.max_points:g})" + (
            f": {self.message}" if self.message else "")


def _judge(row):
    return row.shape is not None and row.note[:11] != "wrong shape" and bool(
        row.maxdiff <= GRADE_ATOL + GRADE_RTOL * row.ref_max)


def _compare(name, dt, t):
    row = compare(name, dt, t)
    row.ref_max = t.abs().max().item() if t.numel() else 0.0
    return row


def _upstream(learner, ref):
    """The learner's gradients where usable, the reference's where missing or misshapen."""
    up = dict(ref)
    for k, v in learner.items():
        if v is not None and broadcast_equal(v.shape, ref[k].shape):
            up[k] = v.reshape(ref[k].shape).to(ref[k].dtype)
    return up


def references(ex, case):
    """(forward values, autograd's gradients, (Xb, Yb)) for one case."""
    params, Xb, Yb = case_inputs(case, ex.n_hidden)
    if ex.key == "ex4":
        return None, dict(zip(model.PARAM_NAMES, model.autograd_step_grads(list(params.values()), Xb, Yb))), (Xb, Yb)
    ref, values = model.reference_grads(params, Xb, Yb)
    return values, ref, (Xb, Yb)


def score(exercise, tensors, errors):
    """{name: Verdict} for every graded item of the exercise, from replay's output."""
    ex = EXERCISES[exercise]
    verdicts = {k: Verdict(exercise, k, p) for k, p in {**ex.grads, **ex.extra_tests}.items()}
    failed = {k: [] for k in ex.grads}  # (case, diagnosis) where the gradient was judged wrong
    for case in CASES:
        values, ref, (Xb, Yb) = references(ex, case)
        learner = {k: tensors.get(f"{case[0]}/{k}") for k in ex.grads}
        seen = {k: tensors.get(f"{case[0]}/seen:{k}") for k in ex.grads}
        up = _upstream(seen, ref) if ex.key == "ex1" else None
        for k in ex.grads:
            v = verdicts[k]
            expected = ref[k]
            v.rows.append((case[0], "end-to-end", _compare(k, learner[k], ref[k])))
            if up is not None:  # Exercise 1: judged on its own step, given the learner's upstream
                expected = model.local_grad(k, values, up, Xb, Yb)
                v.rows.append((case[0], "local", _compare(k, learner[k], expected)))
            if not _judge(v.rows[-1][2]):
                failed[k].append((case, diagnose(learner[k], expected, Xb.shape[0])))
    cell_errors = sorted(set(errors.values()))
    for k in ex.grads:
        verdicts[k].ok = not failed[k]
        if failed[k]:
            verdicts[k].message = _message(failed[k], cell_errors)
    if "training" in ex.extra_tests:
        verdicts["training"] = _score_training(tensors, verdicts["training"])
    return verdicts


def _message(failed, cell_errors):
    """Why a gradient is wrong: missing (and the error met), right on the notebook's batch only,
    or the likely mistake on the first case where it failed."""
    (case, why), names = failed[0], [c[0] for c, _ in failed]
    if why == "not defined":
        return "not defined" + (f" (your answer raised {cell_errors[0]})" if cell_errors else "")
    if "notebook" not in names and case[3] != 32:
        return "right on the notebook's batch of 32 but not on other batch sizes: is the batch size hard-coded?"
    where = "on the notebook's batch" if case[0] == "notebook" else f"on a hidden batch of {case[3]}"
    return f"does not match {where}" + (f": {why}" if why else "")


def _score_training(tensors, v):
    trained = [tensors.get(f"training/{k}") for k in model.PARAM_NAMES]
    if any(t is None for t in trained):
        v.message = "the short training run did not complete with your backward pass"
        return v
    params, _, _ = case_inputs(CASES[1], 200)
    twin = sgd_run(lambda ps, Xb, Yb: model.autograd_step_grads(ps, Xb, Yb),
                   list(params.values()), training_batches())
    worst = max(((a.reshape(b.shape) - b).abs().max() / b.abs().max()).item()
                for a, b in zip(trained, twin))
    v.ok = worst <= TRAIN_RTOL
    v.message = f"parameters after the short run differ from autograd's twin by {worst:.1e} (relative)"
    return v
