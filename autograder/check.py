"""What the learner's check cells print: the lecture's cmp row for each gradient (end to end,
against autograd), and whether the learner's own step is right given their own upstream
gradients, so that one early mistake does not make every later right step look wrong."""
import torch

from . import model
from .compare import accepted_shape, compare
from .diagnose import diagnose


def own_step(name, ns, ref):
    """The gradient `name` (a tensor name of Exercise 1's forward pass) should have, given
    the learner's own upstream gradients in ns (autograd's where theirs is missing or
    misshapen), or None where the step has no learner upstream (parameters of Exercise 4)."""
    if name not in model.GRAD_NAMES:
        return None
    values = {k: ns[k] for k in model.GRAD_NAMES if isinstance(ns.get(k), torch.Tensor)}
    if len(values) < len(model.GRAD_NAMES) or not all(isinstance(ns.get(k), torch.Tensor) for k in ("Xb", "Yb")):
        return None
    up = {k: (ns["d" + k].reshape(ref[k].shape).detach().to(ref[k].dtype)
              if isinstance(ns.get("d" + k), torch.Tensor) and accepted_shape(ns["d" + k].shape, ref[k].shape)
              else ref[k]) for k in ref}
    with torch.enable_grad():
        return model.local_grad(name, values, up, ns["Xb"], ns["Yb"])


def report(names, ns, ref):
    """Print the lecture's cmp row for each d<name> in namespace ns against autograd's ref[name],
    with whether the learner's own step is right given their upstream gradients, and under a
    wrong one the likely mistake; then a tally. Returns the rows."""
    rows, inherited = [], 0
    for k in names:
        dt = ns.get("d" + k)
        row = compare(k, dt, ref[k])
        rows.append(row)
        if row.shape is None:
            print(row)
            continue
        expected = own_step(k, ns, ref)
        if expected is None:  # no upstream of the learner's: end to end is the step
            expected = ref[k]
        step_ok = compare(k, dt, expected).ok
        print(f"{row} | own step: {'right' if step_ok else 'WRONG'}")
        if not step_ok:
            why = diagnose(dt, expected, ns.get("n", 32))
            print(f"{'':15s}   ^ " + (why or "does not match, given your upstream gradients"))
        elif not row.ok:
            inherited += 1
    print(f"{sum(r.ok for r in rows)}/{len(rows)} gradients match")
    if inherited:
        print(f"{inherited} of the others differ only because an earlier gradient is wrong "
              "(their own step is right): fix the first WRONG one")
    return rows
