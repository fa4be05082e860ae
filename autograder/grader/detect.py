"""A numerical gradient is not a hand-derived one: spot answers that evaluate the forward
pass (or any function of the exercise's tensors) at perturbed inputs, as finite differences do.

While an exercise is replayed in the sandboxed child, every torch operation goes through a
TorchFunctionMode (operators, methods and functions alike; an answer cannot reach the mode
stack to leave it). restricted.py reports the rest here: every numpy function or array method
an answer calls, its Python arithmetic (`+ - * / **` are calls in its language), its loops
over and indexing of lists and arrays, and the builtins that read a sequence (sum, max, min,
sorted, zip, ...). The grader's own work (the forward pass, recording and handing out
gradients, updates) runs `quiet()`, unwatched.

References. A *reference* is a tensor whose values the watch keeps as they were when it
became one: every source of the run (the case's inputs and the gradients handed to the
answer), and every tensor an answer copies, views, repeats, stacks, writes a few elements
into, or adds a constant or a mostly-zero tensor to (the result remembers where its values
came from: its origin). A tensor or array an operation reads is compared with the sources of
its shape (or of its number of elements: `x.view(-1)`), with its origin, with what it held
before it was written to in place, and, as a *batch*, with the references whose shape it holds
K times over (a stack or repeat, a `cat` along one dimension, an extra dimension first or
last: `x.unsqueeze(0) + h * torch.eye(N).view(N, n, m)`). It, or one slice of a batch, is a
*perturbed copy* when it equals the reference except at a few elements (at most two, or at
most a tenth of them changed by one step h up to its sign), each changed by more than
rounding (a recomputation's rounding noise is not a perturbation) and by at most half the
reference's largest value, or when it is the reference moved as a whole by one constant of at
most a tenth of its largest value.

What trips the watch (the statement running is then numerical):

- a reference evaluated at two different sparse perturbations (two elements, +h and -h at one
  element; a batch of them at once), or shifted by +h and -h (or by three constants);
- a subtraction of two nearly equal tensors (they agree to 1%) where one of them was computed
  from a perturbed copy: how a forward difference `(f(x + h) - f(x)) / h` ends;
- Python numbers. Once an answer takes numbers out of a tensor or array (`.item()`,
  `.tolist()`, `float(t)`, `.numpy()`), the numbers of that tensor's reference are looked up
  by value: a list, tuple or 1-D array of at least 8 numbers the answer reads that is a
  segment of it (a row, a column) with one element (or a tenth) moved, read at two different
  such perturbations of the same segment (or shifted by +h and -h); or one of those numbers,
  or a 0-d tensor of one, moved by +h and by -h (`v + d`, `v - d`, `t[i, j] += h`);
- a division by a step h (or 2h) of the perturbations seen, or a multiplication by 1/h (or
  1/(2h)), in Python or torch: how every finite difference ends. A step counts once seen
  twice (finite differences use one h again and again) or as a whole tensor's shift, and only
  below 0.5 and not a whole number (`x / 2` is never one);
- a complex number, array or tensor (restricted.py refuses it too): nothing in an answer needs
  one but a complex-step derivative, `Im f(x + ih) / h`.

The replay asks, statement by statement, whether the watch tripped (replay.run_statements):
the gradients written by that statement, or by any later one that reads what it wrote or a
container it read, are then scored 0 with NUMERICAL's message. Honest code never evaluates
anything at perturbed copies of its inputs: reading and writing elements is not evaluating
(`dlogits[i, j] += v` in an accumulation loop, `p[y] -= 1` on a clone of a row), nor is one
small constant added once (`probs + 1e-8`, `(bnvar + 1e-5) ** -0.5`), taking every number out
with `.item()` or `.tolist()` and working on them, `torch.stack` of per-row gradients, or
`torch.eye` in a formula.

What it does not catch (an answer written to evade it can, and the rules are heuristics):
perturbations beyond the bounds above (steps above half the largest value, or several
elements moved at once by different amounts); a multiplicative perturbation (`x * (1 + h)`)
evaluated on Python numbers and ended by something else than a division by h; numbers taken
out of a tensor the answer computed by arithmetic (`(2 * logits).tolist()` is compared with
nothing: only copies, views and small additions carry an origin) and Python numbers that never
pass through a list of 8 or more, an element move by +-h, or a division by the step; numpy
arrays derived by numpy (numpy arrays carry no origin: they are compared with the run's
sources only); perturbations the answer hides behind its own encoding of the values (e.g. a
hand-written lookup table); finite differences whose points are evaluated in different runs
(each case starts the watch afresh). It sees Exercise 4's backward on the cases and on every
tenth step of the short training run.
"""
import functools
import math

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import restricted

NUMERICAL = "a numerical gradient (the loss evaluated on perturbed inputs) is not a hand-derived one"
SHIFT_CLOSE = 0.1   # a shift of a whole reference is at most this share of its largest value
SPARSE_CLOSE = 0.5  # a sparse perturbation changes each element by at most this share
SPARSE = 0.1        # ... and touches at most this share of its elements (or two)
NOISE = 8           # a change within this many machine epsilons of an element is rounding
STEP_MAX = 0.5      # a step h an answer divides by is below this (and not a whole number)
SAMPLE = 16         # elements compared first, to skip what is plainly not a copy
MAX_INDEXED = 500_000  # numbers of references looked up by value (Python numbers), at most
SEGMENT = 8         # a list of Python numbers compared with a segment of a reference has at least these
T = torch.Tensor
SUBTRACTIONS = {torch.sub, torch.subtract, T.sub, T.sub_, T.__sub__, T.__rsub__, T.__isub__, T.subtract, torch.rsub}
ADDS = {torch.add, torch.sub, torch.subtract, T.add, T.add_, T.sub, T.sub_, T.subtract, T.__add__, T.__radd__,
        T.__iadd__, T.__sub__, T.__isub__}
COMMUTING = {torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__}
DIVISIONS = {torch.div, torch.divide, torch.true_divide, T.div, T.div_, T.divide, T.true_divide, T.__truediv__,
             T.__itruediv__}
MULTIPLICATIONS = {torch.mul, torch.multiply, T.mul, T.mul_, T.multiply, T.__mul__, T.__rmul__, T.__imul__}
# The output holds the values of the first tensor argument (a copy, a view, copies of it).
COPIES = {T.clone, torch.clone, T.detach, T.double, T.float, T.half, T.bfloat16, T.to, T.type, T.type_as,
          T.contiguous, T.cpu, torch.tensor, torch.as_tensor, T.new_tensor, T.view, T.view_as, T.reshape,
          T.reshape_as, torch.reshape, T.flatten, torch.flatten, T.unsqueeze, torch.unsqueeze, T.squeeze,
          torch.squeeze, T.expand, T.expand_as, torch.broadcast_to, T.broadcast_to, T.repeat, T.tile,
          torch.tile, T.unflatten, torch.unflatten, torch.stack, torch.cat, torch.concat, torch.concatenate,
          torch.vstack, torch.hstack, T.data.__get__,
          # ... except at the elements it writes
          T.index_put, torch.index_put, T.index_add, torch.index_add, T.index_copy, torch.index_copy,
          T.index_fill, torch.index_fill, T.scatter, torch.scatter, T.scatter_add, torch.scatter_add,
          T.masked_fill, torch.masked_fill, T.masked_scatter, torch.masked_scatter, T.put}
# Writes into the first argument: it becomes a reference first (its values before the write).
WRITES = {T.__setitem__, T.index_put_, T.index_add_, T.index_copy_, T.index_fill_, T.scatter_, T.scatter_add_,
          T.masked_fill_, T.masked_scatter_, T.put_, T.fill_diagonal_}
INDEXING = {T.__getitem__, T.__setitem__}  # reading or writing elements is not evaluating there
EXTRACTIONS = {T.tolist, T.item, T.__float__, T.numpy, T.__array__}  # numbers leave torch
NUMBERS = (float, np.floating)
WHERE = {torch.where, T.where}


def _key(x):
    return float(f"{x:.3g}")


FLOATS = {torch.float16, torch.bfloat16, torch.float32, torch.float64}


def _plain_float(t):
    return type(t) is torch.Tensor and t.dtype in FLOATS and t.layout is torch.strided and t.device.type == "cpu"


_samples = {}  # number of elements -> the positions compared first


class _Ref:
    """A reference: the values of a tensor (or array) when it became one, and what
    perturbations of it were seen evaluated."""

    def __init__(self, t, source=False):
        self.source = source
        if type(t) is torch.Tensor:
            self.snap, self.eps, self.version = t.detach().clone(), float(torch.finfo(t.dtype).eps), t._version
        else:
            self.snap, self.eps, self.version = np.array(t, copy=True), float(np.finfo(t.dtype).eps), None
        self.shape = tuple(t.shape)
        self.size = math.prod(self.shape)
        self.sparse, self.shifts, self.segments = set(), set(), {}
        self._flat, self.indexed = None, False

    def ready(self):
        """The values as a float64 numpy vector (made when first needed)."""
        if self._flat is None:
            s = self.snap
            self._flat = s.reshape(-1).to(torch.float64).numpy() if type(s) is torch.Tensor else \
                s.reshape(-1).astype(np.float64)
            self.scale = float(np.abs(self._flat).max()) if self.size else 0.0
            if not np.isfinite(self.scale):
                self.scale = 0.0
            if self.size not in _samples:
                _samples[self.size] = np.linspace(0, max(self.size - 1, 0), min(SAMPLE, self.size)).astype(np.int64)
            self.sample = _samples[self.size]
            self.first = [float(self._flat[i]) for i in self.sample[::5]]  # for _unlike
        return self._flat


@functools.lru_cache(maxsize=4096)
def _probes(s, view, axis, k):
    """Where, in a tensor laid out as `view` (None: as s), the first and the last copy hold
    the reference's elements Watch._unlike compares first."""
    size = math.prod(s)
    sample = np.linspace(0, max(size - 1, 0), min(SAMPLE, size)).astype(np.int64)[::5]
    out = []
    for row in ((0, k - 1) if k > 1 else (0,)):
        if view is None:
            out.append([int(i) for i in sample])
        else:
            at = []
            for i in sample:
                coords = list(np.unravel_index(int(i), s))
                coords.insert(axis, row)
                at.append(int(np.ravel_multi_index(coords, view)))
            out.append(at)
    return tuple(tuple(r) for r in out)


@functools.lru_cache(maxsize=4096)
def _fits(x, s):
    """How a tensor of shape x holds copies of one of shape s: [(view, axis, K)], where x's
    values viewed as `view` hold K copies along `axis`; [(None, 0, 1)] if it holds one copy
    (the same shape, or the same values in another shape: `x.view(-1)`)."""
    ns, nx = math.prod(s), math.prod(x)
    if x == s or (nx == ns and ns > 1):
        return ((None, 0, 1),)
    if ns == 0 or nx % ns or nx // ns < 2:
        return ()
    k, out = nx // ns, []
    for p in range(len(s) + 1):
        view = s[:p] + (k,) + s[p:]
        if x == view or (p < len(s) and x == s[:p] + (k * s[p],) + s[p + 1:]) or \
                (p == 0 and x in ((k, ns), (nx,))) or (p == len(s) and x == (ns, k)):
            out.append((view, p, k))
    return tuple(out)


def _classify(d, src, eps, scale):
    """("shift", key, step), ("sparse", key, step) or None: what the difference d (float64)
    of a copy from the reference values src is, in a dtype of machine epsilon eps."""
    if d.size == 0 or not np.isfinite(d).all():
        return None
    nz = np.flatnonzero(d)
    if nz.size == 0 or np.abs(d[nz]).max() > SPARSE_CLOSE * max(scale, 1e-30):
        return None
    shift = float(np.median(d[nz]))
    rounding = 4 * eps * np.maximum(np.abs(src), abs(shift))
    if shift != 0 and abs(shift) <= SHIFT_CLOSE * scale and \
            (np.abs(d - shift) <= 1e-3 * abs(shift) + rounding)[nz].all() and \
            (nz.size == d.size or (np.abs(src[d == 0]) * eps >= abs(shift) / 4).all()):
        return "shift", _key(shift), abs(shift)
    big = nz[np.abs(d[nz]) > NOISE * eps * np.maximum(np.abs(src[nz]), np.abs(src[nz] + d[nz]))]
    if big.size == 0:
        return None
    mags = np.abs(d[big])
    top = float(mags.max())
    if big.size <= 2 or big.size <= SPARSE * d.size and (np.abs(mags - top) <= 1e-3 * top + rounding[big]).all():
        return "sparse", (tuple(big[:16].tolist()), tuple(np.sign(d[big[:16]]).tolist())), top
    return None


# The cost rule. A backward pass costs a small constant multiple of its forward pass (the cheap
# gradient principle: Baur and Strassen 1983; Griewank and Walther 2008); differentiating
# numerically costs one forward evaluation per perturbed direction. Every operation of an
# answer (never the grader's own work) is charged: a torch operation the elements it reads and
# writes (a matrix product m*n*k more), a numpy call its arrays' elements, a Python operation 1.
# A statement of an answer (Exercise 4: a call of backward) that costs more than its
# exercise's bound (Exercise.cost_bound, COST_BOUND by default) in forward passes of the
# exercise (score.forward_cost) is numerical, whatever its scheme: what it writes scores 0, and
# what reads that (the watch's taint), as for any other finding of the watch.
COST_BOUND = 100
COSTLY = object()  # why a statement tripped, for the cost rule (tripped() words it with the cost)
MATMULS = {torch.matmul, torch.mm, torch.bmm, T.__matmul__, T.__rmatmul__, T.matmul, T.mm, T.bmm,
           torch.nn.functional.linear, torch.addmm, T.addmm}


def _elements(values):
    n = 0
    for v in values:
        if type(v) is torch.Tensor or type(v) is np.ndarray:
            n += v.numel() if type(v) is torch.Tensor else v.size
        elif type(v) in (list, tuple):
            n += sum(b.numel() if type(b) is torch.Tensor else b.size if type(b) is np.ndarray else 1 for b in v[:4096])
    return n


def _products(func, args, out):
    """A matrix product's multiplications (m*n*k), or an einsum's: the product of the sizes of
    all its indices; else 0."""
    if func in MATMULS:
        a = next((x for x in args if type(x) is torch.Tensor and x.dim() >= 1), None)
        if a is not None and type(out) is torch.Tensor:
            return out.numel() * a.shape[-1]
    if func is torch.einsum and args and isinstance(args[0], str):
        operands = args[1] if len(args) == 2 and type(args[1]) in (list, tuple) else args[1:]
        sizes = {}
        for spec, t in zip(args[0].split("->")[0].split(","), operands):
            spec = spec.strip().replace("...", "")
            if type(t) is torch.Tensor:
                for letter, size in zip(spec[::-1], t.shape[::-1]):
                    sizes[letter] = size
        total = 1
        for size in sizes.values():
            total *= size
        return total
    return 0


# What moves no data: charged 1, whatever the tensor's size (a learner's loop over elements may
# call them at every element)
VIEWS = {T.view, T.view_as, T.reshape, T.reshape_as, T.unsqueeze, T.squeeze, T.expand, T.expand_as, T.t,
         T.transpose, T.permute, T.flatten, T.unflatten, T.detach, T.T.__get__, T.mT.__get__, T.data.__get__,
         T.__len__, T.size, T.dim, T.numel, T.shape.__get__, T.dtype.__get__, T.device.__get__}


def price(func, args, kwargs, out):
    """The cost of one torch operation of an answer: the elements it reads and writes, a
    matrix product's multiplications more; reading or writing a few elements costs those."""
    if func in VIEWS:
        return 1
    if func in INDEXING or func in WRITES:  # what is read out or written, not the whole tensor
        return 1 + _elements(args[1:]) + _elements(kwargs.values()) + (_elements((out,)) if func not in WRITES else 0)
    if type(out) is not torch.Tensor and not (type(out) in (list, tuple) and out and type(out[0]) is torch.Tensor):
        return 1 + (_elements((out,)) if type(out) in (list, tuple) else 0)  # numbers out (.item(), .tolist())
    return 1 + _elements(args) + _elements(kwargs.values()) + _elements((out,)) + _products(func, args, out)


class _Quiet:
    """The grader's own work, not watched (torch functions and the answer's Python hooks)."""

    def __init__(self, watch):
        self.watch, self.off = watch, torch._C.DisableTorchFunction()

    def __enter__(self):
        self.was, self.watch.muted = self.watch.muted, True
        self.off.__enter__()
        return self

    def __exit__(self, *exc):
        self.off.__exit__(*exc)
        self.watch.muted = self.was
        return False


class Watch(TorchFunctionMode):
    """The finite-difference detector of one exercise's replay (a context manager)."""

    def __init__(self, job=None):
        super().__init__()
        self.tripped_at, self.found, self.muted = None, {}, False
        self.budget, self.unit, self.costly = None, None, False  # the cost rule: set per run (price)
        self._reset()

    def _reset(self):
        self.by_numel, self.layouts = {}, {}
        self.values, self.numbers, self.indexed = {}, False, 0  # Python numbers: value -> [(ref, index)]
        self.arrays = {}     # id -> (array, ref) of numpy arrays numbers were taken from
        self.steps = {}      # step key -> step: the perturbations' h
        self.seen = {}       # step key -> how often a perturbation by it was seen
        self.moved = {}      # (number, step key) -> signs it was moved by
        self.cost = 0        # what the statement's operations cost (the cost rule)
        self.costly = False  # whether they passed the budget

    # -- set up by the replay ------------------------------------------------------------
    def run(self, ns):
        """A new run (one case, one namespace): its tensors are the sources."""
        self._reset()
        for v in ns.values():
            self.source(v)

    def source(self, v):
        with torch._C.DisableTorchFunction():  # the grader's own work
            if _plain_float(v) and v.numel():
                ref = _Ref(v, source=True)
                v.ninja_ref = ref
                self.by_numel.setdefault(ref.size, []).append(ref)
                self.layouts = {}

    def price(self, forward_cost, bound=None):
        """Bound the next runs' cost at `bound` (COST_BOUND) forward passes of `forward_cost`."""
        self.unit = forward_cost
        self.budget = (COST_BOUND if bound is None else bound) * forward_cost if forward_cost else None

    def charge(self, amount):
        """Add an operation's cost to the run's; past the budget, the run is numerical."""
        self.cost += amount
        if self.budget is not None and self.cost > self.budget and not self.costly:
            self.costly = True
            self._trip(COSTLY)

    def quiet(self):
        """A block of the grader's own work, not watched (its forward pass, its updates)."""
        return _Quiet(self)

    def begin(self):
        """A new statement (or call of backward): the cost rule prices each on its own."""
        self.tripped_at, self.cost, self.costly = None, 0, False

    def tripped(self):
        """Why the statement (or call) is numerical, or None; for the cost rule, what it cost
        in all (the replay asks once the statement has run)."""
        if self.tripped_at is COSTLY:
            return f"it costs {self.cost / self.unit:,.0f} forward passes of the exercise; a backward pass costs a few"
        return self.tripped_at

    def record(self, key, why):
        self.found.setdefault(key, why)

    def findings(self):
        return dict(self.found)

    @property
    def active(self):
        return self.tripped_at is None and not self.muted

    # -- tensors and arrays -----------------------------------------------------------------
    def _trip(self, why):
        if self.tripped_at is None:
            self.tripped_at = why

    def _step(self, step, seen=1):
        """A perturbation by step was evaluated: it counts as finite differences' h once seen
        twice (they use one h again and again) or as a whole reference's shift (seen=2)."""
        if 0 < step < STEP_MAX and step != round(step):
            key = _key(step)
            was = self.seen.get(key, 0)
            self.seen[key] = was + seen
            if was + seen >= 2 and key not in self.steps and len(self.steps) < 64:
                self.steps[key] = step

    def _is_step(self, b):
        b = abs(float(b))
        return b != round(b) and any(abs(b - s) <= 1e-3 * s or abs(b - 2 * s) <= 2e-3 * s for s in self.steps.values())

    def _is_reciprocal(self, c):
        c = abs(float(c))
        return 0 < c < float("inf") and self._is_step(1 / c)

    def _layouts(self, shape):
        """[(ref, view, axis, K)]: the run's sources a tensor of this shape may be a copy of."""
        found = self.layouts.get(shape)
        if found is None:
            found = []
            total = math.prod(shape)
            for size, refs in self.by_numel.items():
                if total == size or (size and total % size == 0 and total // size >= 2):
                    for ref in refs:
                        found.extend((ref, *fit) for fit in _fits(shape, ref.shape))
            self.layouts[shape] = found
        return found

    def _root(self, t):
        """The reference t's values come from: the source it is, its origin, its own, or a
        new one made of it."""
        d = t.__dict__
        ref = d.get("ninja_ref")
        if ref is None or not ref.source:
            ref = d.get("ninja_origin") or ref
        if ref is None:
            ref = _Ref(t)
            t.ninja_ref = ref
        return ref

    def _register(self, ref, found, batch=False):
        kind, key, step = found
        self._step(step, 1 if kind == "sparse" else 2)
        if kind == "sparse":
            ref.sparse.add(key)
            if len(ref.sparse) >= 2:
                self._trip("evaluated at a batch of perturbed copies of an input" if batch else
                           "evaluated at several perturbed copies of an input")
        else:
            ref.shifts.add(key)
            if len(ref.shifts) >= 3 or -key in ref.shifts:
                self._trip("evaluated at an input shifted by +h and -h")

    @staticmethod
    def _unlike(flat, ref, probes, eps):
        """True if a few elements already show flat is no copy of ref (nor its first and last
        copies, in a batch): two that differ by more than rounding and not by about one
        constant, or one that differs by more than a perturbation may."""
        limit = SPARSE_CLOSE * max(ref.scale, 1e-30)
        for at in probes:
            moved = []
            for i, v in zip(at, ref.first):
                d = float(flat[i]) - v
                if abs(d) > limit:
                    return True
                if abs(d) > NOISE * eps * max(abs(v), abs(v + d)):
                    moved.append(d)
            if len(moved) >= 2 and max(moved) - min(moved) > 2e-3 * max(abs(max(moved)), abs(min(moved))) + \
                    8 * eps * ref.scale:
                return True
        return False

    def _compare(self, flat, eps, ref, view, axis, k):
        """Whether flat (a numpy vector of a tensor or array) is a perturbed copy of ref, or a
        batch of them; the perturbations are registered with ref."""
        src = ref.ready()
        if self._unlike(flat, ref, _probes(ref.shape, view, axis, k), eps):
            return False
        if k == 1:
            rows = flat.reshape(1, -1)
        elif axis == 0:
            rows = flat.reshape(k, src.size)
        else:
            rows = np.moveaxis(flat.reshape(view), axis, 0).reshape(k, src.size)
        # first the sampled elements: a perturbed copy equals the reference at nearly all of
        # them (up to rounding), or is moved by about one small constant at all that differ
        at = src[ref.sample]
        ds = rows[:, ref.sample].astype(np.float64) - at
        big = np.abs(ds).max(axis=1)
        ok = big <= SPARSE_CLOSE * max(ref.scale, 1e-30)
        if not ok.any():
            return False
        off = np.abs(ds) > NOISE * eps * np.maximum(np.abs(at), np.abs(at + ds))
        sparse = off.sum(axis=1) <= 3
        if not sparse.all():
            top = np.where(off, ds, -np.inf).max(axis=1)
            low = np.where(off, ds, np.inf).min(axis=1)
            shifted = (big <= SHIFT_CLOSE * ref.scale) & (
                top - low <= 2e-3 * np.maximum(np.abs(top), np.abs(low)) + 8 * eps * float(np.abs(at).max(initial=0)))
            ok &= sparse | shifted
        near = np.flatnonzero(ok)
        seen = False
        for i in near:
            found = _classify(rows[i].astype(np.float64) - src, src, eps, ref.scale)
            if found is not None:
                seen = True
                self._register(ref, found, batch=k > 1)
                if self.tripped_at is not None:
                    break
        return seen

    def _look(self, x):
        """Check one argument; True if it is (or comes from) a perturbed copy."""
        if type(x) is torch.Tensor:
            d = x.__dict__
            flag = d.get("ninja_perturbed", False)
            if not _plain_float(x):
                return flag
            shape = tuple(x.shape)
            own = d.get("ninja_ref")
            if own is not None and own.source:  # a source itself: compared only once changed in place
                if x._version == own.version:
                    return flag
                cands = [(own, None, 0, 1)] if own.shape == shape else []
            else:
                cands = self._layouts(shape)
                origin = d.get("ninja_origin")
                if origin is not None and all(c[0] is not origin for c in cands):
                    cands = cands + [(origin, *fit) for fit in _fits(shape, origin.shape)]
                if own is not None and x._version != own.version and own.shape == shape:
                    cands = cands + [(own, None, 0, 1)]  # changed in place since it was copied
            if not cands:
                return flag
            version = x._version
            if d.get("ninja_seen") == version:
                return flag
            x.ninja_seen = version
            flat = x.detach().reshape(-1)
            if flat.dtype not in (torch.float32, torch.float64):
                flat = flat.to(torch.float64)
            flat, eps = flat.numpy(), float(torch.finfo(x.dtype).eps)
        elif type(x) is np.ndarray:
            flag = False
            if x.dtype.kind != "f" or not x.size:
                return False
            shape = tuple(x.shape)
            cands = self._layouts(shape)
            if not cands:
                return False
            flat, eps = x.reshape(-1), float(np.finfo(x.dtype).eps)
        else:
            return False
        hit = False
        for ref, view, axis, k in cands:
            hit = self._compare(flat, eps, ref, view, axis, k) or hit
            if self.tripped_at is not None:
                break
        if hit and type(x) is torch.Tensor:
            x.ninja_perturbed = True
        return hit or flag

    # -- Python numbers -------------------------------------------------------------------------
    def _index(self, ref):
        """Look ref's numbers up by value from now on (numbers were taken out of it)."""
        if ref.indexed or self.indexed + ref.size > MAX_INDEXED:
            return
        ref.indexed = True
        self.indexed += ref.size
        self.numbers = True
        values = self.values
        for i, v in enumerate(ref.ready().tolist()):
            at = values.get(v)
            if at is None:
                values[v] = [(ref, i)]
            elif len(at) < 4:
                at.append((ref, i))

    def _extracted(self, t):
        """Numbers leave torch from t: its base's reference is looked up by value."""
        if not _plain_float(t):
            return
        base = t._base if t._base is not None else t
        if base.numel() >= 2:
            self._index(self._root(base))

    def _array_extracted(self, a):
        if type(a) is not np.ndarray or a.dtype.kind != "f" or a.size < 2:
            return
        base = a.base if type(a.base) is np.ndarray else a
        kept = self.arrays.get(id(base))
        if kept is None or kept[0] is not base:
            kept = self.arrays[id(base)] = (base, _Ref(base))
        self._index(kept[1])

    def sequence(self, obj):
        """A list, tuple or 1-D array of numbers the answer reads: a segment (a row, a column)
        of a reference with a perturbation is registered with it."""
        if not self.numbers or not self.active:
            return
        kind = type(obj)
        if kind in (list, tuple):
            if len(obj) < 2 or not isinstance(obj[0], NUMBERS):
                return
            try:
                vals = np.array(obj, dtype=np.float64)
            except (TypeError, ValueError):
                return
            if vals.ndim != 1:
                return
        elif kind is np.ndarray and obj.ndim == 1 and obj.dtype.kind == "f" and obj.size >= 2:
            vals = obj.astype(np.float64)
        else:
            return
        n = vals.size
        if n < SEGMENT:
            return
        for p in range(min(4, n)):
            cands = self.values.get(float(vals[p]))
            if cands:
                break
        else:
            return
        for ref, idx in cands:
            flat = ref.ready()
            strides = (1, ref.shape[-1]) if len(ref.shape) >= 2 and ref.shape[-1] > 1 else (1,)
            for stride in strides:
                start = idx - p * stride
                stop = start + (n - 1) * stride
                if start < 0 or stop >= flat.size:
                    continue
                seg = flat[start:stop + 1:stride]
                d = vals - seg
                if not d.any():
                    return  # a plain copy of the segment
                found = _classify(d, seg, float(np.finfo(np.float64).eps), ref.scale)
                if found is None or found[0] == "sparse" and len(found[1][0]) > max(1, SPARSE * n):
                    continue
                kind_, key, step = found
                self._step(step)
                seen = ref.segments.setdefault((start, stride, n, kind_), set())
                seen.add(key)
                if kind_ == "sparse" and len(seen) >= 2:
                    self._trip("evaluated at perturbed copies of an input's numbers")
                elif kind_ == "shift" and (len(seen) >= 3 or -key in seen):
                    self._trip("evaluated at an input's numbers shifted by +h and -h")
                return

    def _moved(self, x, d, sign, scale):
        """Number x (of a reference of this scale) moved by sign * d."""
        step = abs(float(d))
        if step == 0 or step > SPARSE_CLOSE * scale:
            return
        self._step(step)
        signs = self.moved.setdefault((float(x), _key(step)), set())
        signs.add(sign if d > 0 else -sign)
        if len(signs) == 2:
            self._trip("a number of an input moved by +h and by -h")

    def arith(self, op, a, b):
        """Python's `a op b` in an answer (op one of + - * /), before it is computed."""
        if self.muted:
            return
        self.charge(1 + 2 * _elements((a, b)))
        if not self.active:
            return
        if op in "+-":
            if not self.numbers:
                return
            pairs = ((a, b, 1), (b, a, 1)) if op == "+" else ((a, b, -1),)
            for x, d, sign in pairs:
                if isinstance(x, NUMBERS) and isinstance(d, (int, float, np.number)) and not isinstance(d, bool) \
                        and float(d) not in self.values:
                    at = self.values.get(float(x))
                    if at:
                        self._moved(x, d, sign, at[0][0].scale)
        elif self.steps:
            if op == "/" and isinstance(b, (int, float, np.number)) and not isinstance(b, bool) and self._is_step(b):
                self._trip("divided by the step h of a perturbation")
            elif op == "*" and any(isinstance(c, (float, np.floating)) and self._is_reciprocal(c) for c in (a, b)):
                self._trip("multiplied by 1/h, h the step of a perturbation")

    def arguments(self, args, what=""):
        """numpy's (and math's) calls, from restricted.py: look at their array arguments, and
        at the sequences of numbers they read."""
        if self.muted:
            return
        self.charge(1 + 2 * _elements(args))
        if not self.active:
            return
        if what in ("ndarray.tolist", "ndarray.item") and args:
            self._array_extracted(args[0])
        for a in args:
            if type(a) is np.ndarray:
                if a.ndim == 1:
                    self.sequence(a)
                self._look(a)
            elif type(a) in (list, tuple):
                self.sequence(a)
                for b in a[:64]:
                    if type(b) is np.ndarray:
                        self._look(b)
        if what in ("numpy.divide", "numpy.true_divide") and len(args) > 1 and self.steps and \
                isinstance(args[1], (int, float, np.number)) and self._is_step(args[1]):
            self._trip("divided by the step h of a perturbation")

    def element(self, obj):
        """Python reads an element or loops over obj (a list, a tuple, an array)."""
        if not self.active:
            return
        if type(obj) is np.ndarray:
            if obj.ndim == 1:
                self.sequence(obj)
            self._look(obj)
        elif self.numbers:
            self.sequence(obj)

    # -- torch ------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs) if self.tripped_at is not None else self._watched(func, args, kwargs)
        self.charge(price(func, args, kwargs, out))
        return out

    def _watched(self, func, args, kwargs):
        if func in WRITES and args and _plain_float(args[0]) and args[0].numel() >= 2 and \
                "ninja_ref" not in args[0].__dict__:
            args[0].ninja_ref = _Ref(args[0])  # what it held before the write
        if func in INDEXING:
            out = func(*args, **kwargs)
            if type(out) is torch.Tensor and args and type(args[0]) is torch.Tensor and \
                    args[0].__dict__.get("ninja_perturbed", False):
                out.ninja_perturbed = True
            return out
        if func in EXTRACTIONS and args and type(args[0]) is torch.Tensor:
            self._extracted(args[0])
        perturbed = False
        tensors = []
        for a in list(args) + list(kwargs.values()):
            if type(a) is torch.Tensor:
                tensors.append(a)
            elif type(a) in (list, tuple):
                tensors.extend(b for b in a[:64] if type(b) is torch.Tensor)
        for t in tensors:
            perturbed = self._look(t) or perturbed
        if self.tripped_at is not None:
            return func(*args, **kwargs)
        scalar = args[1] if len(args) > 1 else kwargs.get("other")
        number = isinstance(scalar, (int, float, np.number)) and not isinstance(scalar, bool)
        if self.steps and number:
            if func in DIVISIONS and self._is_step(scalar):
                self._trip("divided by the step h of a perturbation")
            elif func in MULTIPLICATIONS and isinstance(scalar, (float, np.floating)) and self._is_reciprocal(scalar):
                self._trip("multiplied by 1/h, h the step of a perturbation")
        origin = target = None
        if func in COPIES or func in WHERE:
            first = args[0] if args else None
            if func in WHERE:  # where(condition, a, b): a copy of b except where the condition holds
                first = next((b for b in args[2:0:-1] if type(b) is torch.Tensor), None)
            if type(first) in (list, tuple):
                first = next((b for b in first if type(b) is torch.Tensor), None)
            if _plain_float(first) and first.numel() >= 2:
                origin = self._root(first)
        elif func in ADDS and len(tensors) >= 1 and _plain_float(args[0] if args else None):
            origin, target = self._added(func, args[0], scalar, number)
        elif func is T.copy_ and len(args) > 1 and _plain_float(args[1]) and args[1].numel():
            origin, target = self._root(args[1]), args[0]
        out = func(*args, **kwargs)
        if type(out) is torch.Tensor and out.is_complex():
            self.complex()
        if origin is not None:
            for o in (target,) if target is not None else (out if isinstance(out, (tuple, list)) else (out,)):
                if type(o) is torch.Tensor and "ninja_ref" not in o.__dict__ and o.numel():
                    o.ninja_origin = origin
        if perturbed:
            if func in SUBTRACTIONS and len(tensors) == 2 and type(out) is torch.Tensor:
                a, b = tensors
                if a.__dict__.get("ninja_perturbed", False) != b.__dict__.get("ninja_perturbed", False) \
                        and a.shape == b.shape and a.is_floating_point() and b.is_floating_point():
                    big = max(float(a.abs().max()), float(b.abs().max())) if a.numel() else 0.0
                    if big > 0 and float((a - b).abs().max()) <= 1e-2 * big:
                        self._trip("a difference of the function at a perturbed input and at the input")
            for o in (out if isinstance(out, (tuple, list)) else (out,)):
                if type(o) is torch.Tensor:
                    o.ninja_perturbed = True
        return out

    def _added(self, func, a, b, number):
        """(origin, target) of `a + b` or `a - b` when it is a copy of a (or b) moved by a
        constant or by a sparse tensor; target is a for an operation in place."""
        inplace = func in (T.add_, T.sub_, T.__iadd__, T.__isub__)
        if number and a.numel() == 1 and a._base is not None and _plain_float(a._base):
            ref = self._root(a._base)  # one number of a tensor, moved
            ref.ready()
            self._moved(float(a), b, 1 if func in COMMUTING else -1, ref.scale)
            return None, None
        if number or (type(b) is torch.Tensor and b.numel() == 1):
            base = a
        elif type(b) is torch.Tensor and _plain_float(b) and self._sparse(b):
            base = a
        elif func in COMMUTING and not inplace and type(b) is torch.Tensor and _plain_float(b) and self._sparse(a):
            base = b
        else:
            return None, None
        if base.numel() < 2:
            return None, None
        return self._root(base), (a if inplace else None)

    @staticmethod
    def _sparse(delta):
        """Whether delta is mostly zeros (a few elements moved, or one in each slice of a batch)."""
        n = delta.numel()
        if n < 2:
            return False
        nnz = int(torch.count_nonzero(delta))
        return 0 < nnz <= max(2, SPARSE * n)

    def complex(self):
        """An answer made a complex number, array or tensor: nothing but a complex-step
        derivative needs one (restricted.py refuses it)."""
        if not self.muted:
            self._trip("complex numbers: a complex-step derivative")
            raise restricted.NotAllowed(restricted.COMPLEX)

    def __enter__(self):
        self._current = restricted.WATCH.set(self)
        return super().__enter__()

    def __exit__(self, *exc):
        restricted.WATCH.reset(self._current)
        return super().__exit__(*exc)
