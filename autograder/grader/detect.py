"""A numerical gradient is not a hand-derived one: spot answers that evaluate the forward
pass (or any function of the exercise's tensors) at perturbed inputs, as finite differences do.

While an exercise is replayed in the sandboxed child, every torch operation goes through a
TorchFunctionMode (operators, methods and functions alike; an answer cannot reach the mode
stack to leave it), and every numpy function or array method an answer calls through
restricted.py's allowlist reports its array arguments here. Each tensor or array argument is
compared with the run's source tensors (the case's inputs and the gradients handed to the
answer) of the same shape: it is a *perturbed copy* of one when it equals it except at a few
elements (at most a tenth of them) that differ by little (at most 1% of the source's largest
value, and by one step h, up to its sign, where more than two differ: rounding noise of a
recomputation does not), or when it is the source shifted as a whole by one small constant. Finite
differences need the function evaluated at several such points: a source evaluated at two
sparse perturbations (two elements, two rows, +h and -h at one element), or shifted by
+h and -h, or at three different shifts, trips the watch. One small shift of a source, as
the forward pass's own `bnvar + 1e-5` or a learner's `probs + 1e-8`, does not.

Besides, a subtraction of two nearly equal tensors (they agree to 1%) where one of them was
computed from a perturbed copy is how a forward difference `(f(x + h) - f(x)) / h` ends:
that trips it too.

The replay asks, statement by statement, whether the watch tripped (replay.run_statements):
the gradients written by that statement, or by any later one that reads what it wrote, are
then scored 0 with NUMERICAL's message. Honest code never evaluates anything at perturbed
copies of its inputs, so honest loops, einsum, one_hot, index_add_ and the rest are untouched.
"""
import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import restricted

NUMERICAL = "a numerical gradient (the loss evaluated on perturbed inputs) is not a hand-derived one"
CLOSE = 1e-2       # a perturbation is at most this much of the source's largest value
SPARSE = 0.1       # ... and touches at most this share of its elements (or all of them, by one constant)
SAMPLE = 16        # elements compared first, to skip what is plainly not a copy
SUBTRACTIONS = {torch.sub, torch.subtract, torch.Tensor.sub, torch.Tensor.sub_, torch.Tensor.__sub__,
                torch.Tensor.__rsub__, torch.Tensor.__isub__, torch.Tensor.subtract, torch.rsub}


_samples = {}  # number of elements -> the positions compared first


class _Source:
    """A source tensor, made ready for comparison when first needed."""

    def __init__(self, t):
        self.t, self._flat = t, None
        self.sparse, self.shifts = set(), set()

    def ready(self):
        if self._flat is None:
            self._flat = self.t.detach().reshape(-1).to(torch.float64).numpy()
            size = self._flat.size
            self.scale = float(np.abs(self._flat).max()) if size else 0.0
            if size not in _samples:
                _samples[size] = np.linspace(0, max(size - 1, 0), min(SAMPLE, size)).astype(np.int64)
            self.sample = _samples[size]
        return self._flat


class Watch(TorchFunctionMode):
    """The finite-difference detector of one exercise's replay (a context manager)."""

    def __init__(self, job=None):
        super().__init__()
        self.sources, self.ids = {}, set()
        self.tripped_at, self.found = None, {}

    # -- set up by the replay ------------------------------------------------------------
    def run(self, ns):
        """A new run (one case, one namespace): its tensors are the sources."""
        self.sources, self.ids = {}, set()
        for v in ns.values():
            self.source(v)

    def source(self, v):
        if type(v) is torch.Tensor and v.is_floating_point() and v.numel():
            self.sources.setdefault(tuple(v.shape), []).append(_Source(v))
            self.ids.add(id(v))

    def quiet(self):
        """A block of the grader's own work, not watched (its forward pass, its updates)."""
        return torch._C.DisableTorchFunction()

    def begin(self):
        self.tripped_at = None

    def tripped(self):
        return self.tripped_at

    def record(self, key, why):
        self.found.setdefault(key, why)

    def findings(self):
        return dict(self.found)

    # -- the checks -----------------------------------------------------------------------
    def _trip(self, why):
        if self.tripped_at is None:
            self.tripped_at = why

    def _perturbation(self, flat, shape, eps):
        """(source, kind, key) if flat (a float64 numpy vector of a tensor whose dtype has
        machine epsilon eps) is a perturbed copy of a source: "shift" if it is the source
        plus one constant (up to rounding; where the source is too large for the constant
        to change it in that dtype, it may stay equal), "sparse" if it differs at a few
        elements only."""
        for src in self.sources.get(shape, ()):
            src_flat = src.ready()
            if src_flat.size != flat.size:
                continue
            d = flat[src.sample].astype(np.float64) - src_flat[src.sample]
            limit = CLOSE * max(src.scale, 1e-12)
            if np.abs(d).max(initial=0.0) > limit:
                continue
            d = flat.astype(np.float64) - src_flat
            if not np.isfinite(d).all():
                continue
            nz = np.flatnonzero(d)
            if nz.size == 0 or np.abs(d).max() > limit:
                continue
            shift = float(np.median(d[nz]))
            rounding = 4 * eps * np.maximum(np.abs(src_flat), abs(shift))
            if shift != 0 and (np.abs(d - shift) <= 1e-3 * abs(shift) + rounding)[nz].all() and \
                    (nz.size == d.size or (np.abs(src_flat[d == 0]) * eps >= abs(shift) / 4).all()):
                return src, "shift", float(f"{shift:.3g}")
            if nz.size <= 2 or nz.size <= SPARSE * d.size and (
                    np.abs(np.abs(d[nz]) - abs(shift)) <= 1e-3 * abs(shift) + rounding[nz]).all():
                return src, "sparse", (tuple(nz[:16].tolist()), tuple(np.sign(d[nz[:16]]).tolist()))
        return None

    def _look(self, x):
        """Check one argument; True if it is (or comes from) a perturbed copy."""
        if type(x) is torch.Tensor:
            shape = tuple(x.shape)
            if shape not in self.sources or id(x) in self.ids:
                return getattr(x, "ninja_perturbed", False)
            version = x._version
            if getattr(x, "ninja_seen", None) == version:
                return getattr(x, "ninja_perturbed", False)
            x.ninja_seen = version
            if not x.is_floating_point() or x.layout != torch.strided or x.device.type != "cpu":
                return getattr(x, "ninja_perturbed", False)
            flat = x.detach().reshape(-1)
            if flat.dtype not in (torch.float32, torch.float64):
                flat = flat.to(torch.float64)
            found = self._perturbation(flat.numpy(), shape, torch.finfo(x.dtype).eps)
        elif type(x) is np.ndarray:
            shape = x.shape
            if shape not in self.sources or x.dtype.kind != "f":
                return False
            found = self._perturbation(x.reshape(-1), tuple(shape), float(np.finfo(x.dtype).eps))
        else:
            return False
        if found is None:
            return getattr(x, "ninja_perturbed", False) if type(x) is torch.Tensor else False
        src, kind, key = found
        if type(x) is torch.Tensor:
            x.ninja_perturbed = True
        if kind == "sparse":
            src.sparse.add(key)
            if len(src.sparse) >= 2:
                self._trip("evaluated at several perturbed copies of an input")
        else:
            src.shifts.add(key)
            if len(src.shifts) >= 3 or -key in src.shifts:
                self._trip("evaluated at an input shifted by +h and -h")
        return True

    def arguments(self, args):
        """numpy's calls, from restricted.py: look at their array arguments."""
        for a in args:
            if type(a) is np.ndarray:
                self._look(a)
            elif type(a) in (list, tuple):
                for b in a[:64]:
                    if type(b) is np.ndarray:
                        self._look(b)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        perturbed = False
        tensors = []
        for a in list(args) + list(kwargs.values()):
            if type(a) is torch.Tensor:
                tensors.append(a)
            elif type(a) in (list, tuple):
                tensors.extend(b for b in a[:64] if type(b) is torch.Tensor)
        for t in tensors:
            perturbed = self._look(t) or perturbed
        out = func(*args, **kwargs)
        if perturbed:
            if func in SUBTRACTIONS and len(tensors) == 2 and type(out) is torch.Tensor:
                a, b = tensors
                if getattr(a, "ninja_perturbed", False) != getattr(b, "ninja_perturbed", False) \
                        and a.shape == b.shape and a.is_floating_point() and b.is_floating_point():
                    big = max(float(a.abs().max()), float(b.abs().max())) if a.numel() else 0.0
                    if big > 0 and float((a - b).abs().max()) <= CLOSE * big:
                        self._trip("a difference of the function at a perturbed input and at the input")
            for o in (out if isinstance(out, (tuple, list)) else (out,)):
                if type(o) is torch.Tensor:
                    o.ninja_perturbed = True
        return out

    def __enter__(self):
        restricted.WATCH = self
        return super().__enter__()

    def __exit__(self, *exc):
        restricted.WATCH = None
        return super().__exit__(*exc)
