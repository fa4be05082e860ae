"""cmp-style comparison of a gradient with a reference: approximate, maxdiff (and exact).

Unlike the lecture's `cmp`, shapes are compared first, so broadcasting cannot turn a wrong
shape into a match. A shape without the reference's leading size-1 dimensions (the lecture's (64,) for
(1, 64): both broadcast the same way) is accepted, with a note, as the lecture's own
solutions need; (1, 64) for (64,) and (32,) for (32, 1) are not.
"""
from dataclasses import dataclass

import torch

# Tolerances, in one place. "approximate" is torch.allclose with its defaults, as in the
# lecture; a gradient "matches" if it is approximately equal to the reference.
RTOL = 1e-5
ATOL = 1e-8
# A right float32 answer differs from autograd's by rounding alone: measured at most 2.2e-8 on
# the notebooks' batches and 4.8e-7 on any batch the grader uses. How much, and whether the
# last bits agree at all (the lecture's `exact:` column), depends on the CPU's instruction set
# (AVX2, AVX-512, ...): a printed row shows "maxdiff: < 1e-6" for such an answer, not the
# figure, so that it reads the same on every machine. A wrong answer's maxdiff is printed.
ROUNDING = 1e-6


@dataclass
class Row:
    """One comparison: the figures of the lecture's cmp row, plus a shape verdict."""
    name: str
    shape: tuple = None      # the learner's shape, None when missing
    ref_shape: tuple = None
    exact: bool = False
    approximate: bool = False
    maxdiff: float = float("nan")
    note: str = ""

    @property
    def ok(self):
        return self.approximate

    @property
    def rounding_only(self):
        """Right up to float32 rounding (the printed maxdiff is then a bound, not a figure)."""
        return self.approximate and self.maxdiff < ROUNDING

    def __str__(self):
        if self.shape is None:
            return f"{self.name:15s} | missing: {self.note}"
        shape = "x".join(map(str, self.shape)) or "scalar"
        text = f"{self.name:15s} | {shape:>8s} | approximate: {str(self.approximate):5s}"
        if self.rounding_only:
            text += f" | maxdiff: < {ROUNDING:.0e}".replace("e-0", "e-")
        elif not self.note.startswith("wrong shape"):  # (a wrong shape has no maxdiff)
            text += f" | maxdiff: {self.maxdiff:.1e}"
        return text + (f" | {self.note}" if self.note else "")


def accepted_shape(shape, ref_shape):
    """Is a gradient of `shape` accepted for a tensor of `ref_shape`? Its own shape, or the
    same without leading dimensions of size 1, which broadcasts the same way: the lecture's
    (64,) for (1, 64). Not (1, 64) for a (64,) parameter: `b1 -= lr * db1` would fail; nor
    (32,) for (32, 1), which broadcasts as a row, not a column."""
    shape, ref = tuple(shape), tuple(ref_shape)
    while shape != ref and ref and ref[0] == 1:
        ref = ref[1:]
    return shape == ref


def compare(name, dt, t):
    """Compare the learner's gradient dt with the reference t (both tensors or dt None)."""
    ref_shape = tuple(t.shape)
    if dt is None:
        return Row(name, ref_shape=ref_shape, note=f"d{name} is not defined yet")
    if not isinstance(dt, torch.Tensor):
        return Row(name, ref_shape=ref_shape, note=f"d{name} is a {type(dt).__name__}, not a tensor")
    shape, note = tuple(dt.shape), ""
    if shape != ref_shape:
        if not accepted_shape(shape, ref_shape):
            return Row(name, shape, ref_shape, note=f"wrong shape, expected {ref_shape}")
        note = f"{shape} accepted for {ref_shape}"
        dt = dt.reshape(ref_shape)
    dt = dt.detach().to(t.dtype)
    maxdiff = (dt - t).abs().max().item() if t.numel() else 0.0
    return Row(name, shape, ref_shape, exact=bool(torch.equal(dt, t)),
               approximate=bool(torch.allclose(dt, t, rtol=RTOL, atol=ATOL)),
               maxdiff=maxdiff, note=note)


def cmp(name, dt, t):
    """Print the lecture's comparison row for dt against t; return the Row."""
    row = compare(name, dt, t)
    print(row)
    return row
