"""Name the likely mistake behind a wrong gradient, without revealing the solution."""
import torch

from .compare import accepted_shape
from .reason import Reason


def _close(a, b):
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-7 + 1e-4 * b.abs().max().item()))


def _factor_name(r, n):
    names = {n: "n", 1 / n: "1/n", n - 1: "n-1", 1 / (n - 1): "1/(n-1)", n / (n - 1): "n/(n-1)",
             (n - 1) / n: "(n-1)/n", 2: "2", 0.5: "1/2", 32 / n: "32/n", n / 32: "n/32"}
    for value, name in names.items():
        if abs(r - value) <= 1e-3 * abs(value):
            return name
    return None


def diagnose(dt, t, n, bessel=None, alternatives=(), repeated=None, logits=None, figures=True):
    """A short description of how the learner's dt differs from the expected t (batch size n):
    the likely mistake, else what is known (where it differs, by how much). `bessel`, where
    given, is the answer a missing Bessel correction would give; alternatives [(tensor, why)]
    the answers other named mistakes would give; repeated: for an embedding table's gradient,
    the rows the batch uses more than once; logits: for dlogits, the forward pass's logits
    (where the max's gradient belongs). figures=False (a hidden case): the mistake is named
    without any figure of dt (its shape, a factor that is none of the named ones, which rows
    are wrong, by how much): dt is the learner's to shape, and so could carry a hidden value;
    t's shape and n are the grader's to say."""
    if dt is None:
        return Reason("not defined")
    dt = dt.detach().to(t.dtype)
    if not torch.isfinite(dt).all():
        return Reason("contains NaN or inf", "nan")
    if dt.shape != t.shape:
        if not accepted_shape(dt.shape, t.shape):
            return _shape(dt, t) if figures else Reason(f"wrong shape, expected {tuple(t.shape)}", "shape")
        dt = dt.reshape(t.shape)
    if t.abs().max().item() < 1e-6:  # zero up to rounding: no sign or factor to name
        return Reason("the expected gradient is zero up to rounding; yours is not", "zero_step")
    if bessel is not None and _close(dt, bessel.to(t.dtype)):
        return Reason("Bessel's correction: BatchNorm's variance here divides by n-1, and your formula "
                      "is the one for a variance over n (a factor n/(n-1) is missing)", "bessel")
    if _close(-dt, t):
        return Reason("sign flipped", "sign")
    denom = (t * t).sum().item()
    if denom > 0:
        r = (dt * t).sum().item() / denom
        if 1e-3 < abs(r) < 1e3 and abs(r - 1) > 1e-3 and _close(dt, r * t):
            named = _factor_name(r, n)
            name = named or (f"{r:.3g}" if figures else None)
            return Reason("off by a constant factor" + (f" of {name}" if name else ""), FACTORS.get(named, "factor_other"))
    for alt, why in alternatives:  # why: a Reason
        if alt.shape == t.shape and _close(dt, alt.to(t.dtype)):
            return why
    off = (dt - t).abs() > 1e-4 * t.abs().max().item() + 1e-7  # the entries that differ
    if repeated is not None and off.any():
        rows = set(off.reshape(off.shape[0], -1).any(1).nonzero().flatten().tolist())
        if rows <= set(repeated):
            if not figures:
                return Reason("wrong only in rows the batch uses more than once: repeated entries overwritten, "
                              "not accumulated (+=)?", "accumulate")
            return Reason(f"wrong only in rows the batch uses more than once ({len(rows)} of them, e.g. row "
                          f"{min(rows)}): repeated entries overwritten, not accumulated (+=)?", "accumulate")
    wrong_max = _max_position(off, logits) if logits is not None and off.any() and off.shape == logits.shape else ""
    if wrong_max:
        return wrong_max
    if figures:
        return Reason(_known(dt, t, off))
    rows = off.reshape(off.shape[0], -1).any(1) if off.dim() >= 1 else off.reshape(1)
    return Reason("right except for some rows" if 0 < int(rows.sum()) < rows.numel() else "differs from the expected gradient")


def _max_position(off, logits):
    """Where the max's gradient went, if not to the max: the smallest logit, or every one."""
    rows = off.any(1)
    top, low = logits.argmax(1), logits.argmin(1)
    ix = torch.arange(off.shape[0])
    at_top = torch.zeros_like(off)
    at_top[ix, top] = True
    if bool((off | at_top)[rows].all()):  # (the max's own position may be right)
        return Reason("the max's gradient went to every position of its row: it belongs to the max's "
                      "position alone (F.one_hot of the argmax)", "max_position")
    allowed = torch.zeros_like(off)
    allowed[ix, top] = allowed[ix, low] = True
    if bool((off <= allowed).all()) and bool(off[ix, low][rows].all()):
        return Reason("the max's gradient went to the smallest logit (argmin), not to the largest (argmax)",
                      "max_position")
    return ""


def _known(dt, t, off):
    """What is known of a wrong gradient no named mistake explains: which entries differ, by
    how much, and whether its sign or its scale is off."""
    flat, want = dt.reshape(-1), t.reshape(-1)
    if t.dim() >= 2:
        grid = off.reshape(off.shape[0], -1)
        rows, cols = grid.any(1), grid.any(0)
        i, j = [int(x) for x in grid.nonzero()[0]]
        where = (f"differs in {int(rows.sum())} of {grid.shape[0]} rows and {int(cols.sum())} of "
                 f"{grid.shape[1]} columns (e.g. row {i}, column {j})")
    else:
        where = f"differs in {int(off.sum())} of {off.numel()} entries (e.g. entry {int(off.reshape(-1).nonzero()[0])})"
    text = (f"{where}; the largest difference is {(flat - want).abs().max().item():.1e}, where the expected "
            f"entries reach {want.abs().max().item():.1e}")
    cos = (flat @ want / (flat.norm() * want.norm()).clamp_min(1e-30)).item()
    if cos < -0.5:
        text += "; mostly of the opposite sign"
    elif cos > 0.9:
        r = (flat @ want / (want @ want)).item()
        if abs(r - 1) > 0.05:
            text += f"; about {r:.2g} times the expected values"
    return text


def _shape(dt, t):
    """Why a shape is wrong, with the likely slip."""
    got, want = tuple(dt.shape), tuple(t.shape)
    if got == (1, *want):
        return Reason(f"shape {got}, expected {want}: sum without keepdim=True "
                      f"(a {got} gradient cannot update a {want} parameter in place)", "keepdim")
    if dt.dim() == 2 and got == want[::-1]:
        return Reason("transposed: " + ("the values are right, the shape is swapped" if _close(dt.T, t)
                                        else f"shape {got}, expected {want}"), "transposed")
    if dt.dim() == t.dim() - 1 and 1 in want and list(got) == [d for d in want if d != 1]:
        return Reason(f"shape {got}, expected {want}: a sum over dimension {want.index(1)} without keepdim=True?",
                      "keepdim")
    if dt.dim() > t.dim() and got[dt.dim() - t.dim():] == want:
        dims = tuple(range(dt.dim() - t.dim()))
        return Reason(f"shape {got}, expected {want}: the forward pass broadcast this parameter over "
                      f"dimension {dims[0] if len(dims) == 1 else dims} (the batch), so its gradient "
                      "needs a sum over that dimension", "broadcast")
    extra = [i for i, (a, b) in enumerate(zip(got[::-1], want[::-1])) if a != b and b == 1]
    if dt.dim() >= t.dim() and extra:
        dim = t.dim() - 1 - extra[0]
        return Reason(f"shape {got}, expected {want}: the forward pass broadcast this tensor along "
                      f"dimension {dim}, so its gradient needs a sum over that dimension (keepdim=True)", "broadcast")
    return Reason(f"wrong shape {got}, expected {want}", "shape")


# The mistakes the course names, as stable codes (Reason.code), each with the description the
# class report's misconception view shows, in its order.
MISCONCEPTIONS = [
    ("bessel", "Bessel's correction (n where n-1 is meant, or back)"),
    ("factor_n", "off by a factor of n (the mean's 1/n forgotten or doubled)"),
    ("factor_other", "off by another constant factor"),
    ("sign", "sign flipped"),
    ("keepdim", "a sum without keepdim=True"),
    ("broadcast", "a broadcast tensor's gradient not summed over the broadcast dimension"),
    ("transposed", "transposed"),
    ("second_path", "the path through a second use of a tensor left out (a tensor used twice "
     "gets the sum of both paths)"),
    ("accumulate", "repeated entries overwritten, not accumulated (+=)"),
    ("max_position", "the max's gradient sent to the wrong positions (not only the argmax)"),
    ("tanh", "tanh's derivative written otherwise than 1 - h**2 of its output"),
    ("raises_hidden", "raises on other batch sizes"),
    ("hard_coded", "batch size hard-coded (32 for n)"),
    ("zero_step", "a gradient that is zero up to rounding written as a constant"),
    ("shape", "another wrong shape"),
    ("typo", "a typo in the gradient's name"),
    ("reference", "copied autograd's gradient (ref, .grad, autograd)"),
    ("numerical", "differentiated numerically (finite differences), not by hand"),
    ("nan", "NaN or inf"),
]
CODES = {code for code, _ in MISCONCEPTIONS}

# The named factors (diagnose's _factor_name) and the mistake each stands for.
FACTORS = {**dict.fromkeys(["n-1", "1/(n-1)", "n/(n-1)", "(n-1)/n"], "bessel"),
           **dict.fromkeys(["n", "1/n", "32/n", "n/32"], "factor_n")}
