"""Name the likely mistake behind a wrong gradient, without revealing the solution."""
import torch

from .compare import broadcast_equal


def _close(a, b):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-7 + 1e-4 * b.abs().max().item()))


def _factor_name(r, n):
    names = {n: "n", 1 / n: "1/n", n - 1: "n-1", 1 / (n - 1): "1/(n-1)", n / (n - 1): "n/(n-1)",
             (n - 1) / n: "(n-1)/n", 2: "2", 0.5: "1/2", 32 / n: "32/n", n / 32: "n/32"}
    for value, name in names.items():
        if abs(r - value) <= 1e-3 * abs(value):
            return name
    return f"{r:.3g}"


def diagnose(dt, t, n):
    """A short description of how the learner's dt differs from the expected t (batch size n)."""
    if dt is None:
        return "not defined"
    dt = dt.detach().to(t.dtype)
    if not torch.isfinite(dt).all():
        return "contains NaN or inf"
    if dt.shape != t.shape:
        if broadcast_equal(dt.shape, t.shape):
            return ""
        if dt.dim() == 2 and dt.shape == t.shape[::-1]:
            return "transposed: " + ("the values are right, the shape is swapped" if _close(dt.T, t)
                                     else f"shape {tuple(dt.shape)}, expected {tuple(t.shape)}")
        if dt.dim() == t.dim() - 1 and 1 in t.shape and broadcast_equal(dt.shape, [d for d in t.shape if d != 1]):
            dim = list(t.shape).index(1)
            return f"shape {tuple(dt.shape)}, expected {tuple(t.shape)}: a sum over dimension {dim} without keepdim=True?"
        extra = [i for i, (a, b) in enumerate(zip(dt.shape[::-1], t.shape[::-1])) if a != b and b == 1]
        if dt.dim() >= t.dim() and extra:
            dim = t.dim() - 1 - extra[0]
            return (f"shape {tuple(dt.shape)}, expected {tuple(t.shape)}: the forward pass broadcast this "
                    f"tensor along dimension {dim}, so its gradient needs a sum over that dimension (keepdim=True)")
        return f"wrong shape {tuple(dt.shape)}, expected {tuple(t.shape)}"
    if _close(-dt, t):
        return "sign flipped"
    denom = (t * t).sum().item()
    if denom > 0:
        r = (dt * t).sum().item() / denom
        if r != 0 and _close(dt, r * t):
            return f"off by a constant factor of {_factor_name(r, n)}"
    if dt.dim() >= 1 and dt.shape[0] > 1:
        rows = [bool(_close(a, b)) for a, b in zip(dt, t)]
        bad = [i for i, ok in enumerate(rows) if not ok]
        if 0 < len(bad) < len(rows):
            return (f"right except for {len(bad)} of {len(rows)} rows (e.g. row {bad[0]}): "
                    "are repeated entries accumulated (+=), not overwritten?")
    return ""
