"""What the notebooks' graded test cells call, inside the learner's kernel.

`grade` replays the learner's answer cells, read from the saved notebook, on the notebook's
batch and on hidden inputs, and returns the points of one gradient (nbgrader's partial
credit). The trusted score is recomputed outside the kernel (see autograder.trusted); this
in-kernel score is what a learner's own run of the instructor tests would show.
"""
import os
from pathlib import Path

import torch

from . import model, score
from .compare import compare
from .exercises import EXERCISES

_cache = {}


def answer_sources(nb, cell_ids):
    """[(grade_id, source)] of the answer cells, in the given order; missing ones are skipped."""
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    return [(i, by_id[i]) for i in cell_ids if i in by_id]


def verdicts(exercise, notebook=None):
    """{name: Verdict} for the saved notebook of an exercise (cached until the file changes)."""
    path = Path(notebook or EXERCISES[exercise].notebook)
    stamp = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    if _cache.get(exercise, (None,))[0] != stamp:
        import nbformat  # here, not at the top: importing it takes 1.5 s (jsonschema's formats),
        # which every notebook's kernel would pay at its first cell, graded or not
        nb = nbformat.read(path, as_version=4)
        sources = answer_sources(nb, EXERCISES[exercise].answer_cells)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: more threads only contend
        try:
            result = score.grade(exercise, sources)
        finally:
            torch.set_num_threads(threads)
        _cache[exercise] = (stamp, result)
    return _cache[exercise][1]


TRUSTED = "BACKPROP_NINJA_TRUSTED"  # set by nbgrader_config.py: TrustedScores rewrites the scores


def grade(exercise, name):
    """Points earned by one graded item (a gradient name, or 'training'); prints why."""
    if os.environ.get(TRUSTED) and os.environ.get("NBGRADER_EXECUTION"):
        print("scored outside this kernel by the trusted grader")
        return 0.0
    try:
        v = verdicts(exercise)[name]
    except FileNotFoundError:
        print(f"Cannot grade: {EXERCISES[exercise].notebook} is not in {os.getcwd()}. Save the notebook.")
        return 0.0
    print(v.summary())
    return float(v.points)


class NotYet(AssertionError):
    """A check that fails under `nbgrader validate`, shown as its one-line message (IPython
    shows `_render_traceback_` instead of a traceback)."""

    def _render_traceback_(self):
        return [str(self)]


def require(var, ns):
    """Under `nbgrader validate`, fail with one line if `var` (a gradient, or Exercise 4's
    `backward`) is not defined yet or its own step is wrong on the notebook's batch (judged as
    the grader does: given the learner's upstream gradients); otherwise do nothing, so that
    Run All in the learner's notebook never stops here."""
    if not os.environ.get("NBGRADER_VALIDATING"):
        return
    if var == "backward":
        problems = [f"d{r.name}: " + ("not returned" if r.shape is None else "wrong") for r in _check_backward(ns) if not r.ok]
    elif "ref" in ns:
        from .check import own_step
        from .diagnose import diagnose
        k, dt, ref = var[1:], ns.get(var), ns["ref"]
        expected = own_step(k, ns, ref)
        expected = ref[k] if expected is None else expected
        row = compare(k, dt, expected)
        problems = [] if row.ok else [f"{var}: " + ("not defined yet" if row.shape is None else
                                                    "wrong: " + (diagnose(dt, expected, ns.get("n", 32)) or str(row).split("| ", 2)[-1]))]
    else:
        problems = []
    if problems:
        raise NotYet("; ".join(problems))


def _check_backward(ns):
    """cmp rows of the learner's backward against autograd on the notebook's batch."""
    if not callable(ns.get("backward")):
        raise NotYet("backward: not defined yet")
    params = [p.detach() for p in ns["parameters"]]
    try:
        with torch.no_grad():
            _, cache = model.forward_ex4(ns["Xb"], ns["Yb"], params)
            grads = ns["backward"](ns["Xb"], ns["Yb"], params, cache)
    except Exception as e:
        raise NotYet(f"backward raised {type(e).__name__}: {e}") from None
    grads = list(grads) if isinstance(grads, (list, tuple)) else [None] * 7
    return [compare(k, g, r) for k, g, r in zip(model.PARAM_NAMES, grads, model.autograd_step_grads(params, ns["Xb"], ns["Yb"]))]
