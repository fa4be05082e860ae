"""What the learner's check cells print: the lecture's cmp row for each gradient (end to end,
against the notebook's autograd reference), and beside it the grade's own verdict on the
learner's step, from the same scorer as the grade (autograder.hidden): each step judged on
the true upstream gradients, on the notebook's batch and on hidden batches of other sizes,
answers that read the autograd reference refused, typos named. A right step whose cmp row
differs (an earlier gradient of the learner's is wrong) is said to be right. Under a wrong
gradient, a small picture shows which of its entries differ (in the learner's kernel only)."""
import io
import sys
import textwrap

from .compare import compare
from .exercises import EXERCISES


WIDTH = 100  # characters a line: a check's output fits JupyterLab's output area on a 1366 px screen


def _wrap(text, first="", rest=""):
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)


def report(names, ns, ref, exercise=None, *, history=None, ran=None, notebook=None):
    """Print the cmp row of each d<name> in namespace ns against autograd's ref[name] and, for
    a gradient the exercise grades, the grade's verdict on the learner's step (under a wrong
    one, why); then a tally. Returns the rows. history, ran, notebook: where the answer cells'
    sources come from (the kernel's, by default; see hidden.answer_sources_live)."""
    rows = [compare(k, ns.get("d" + k), ref[k]) for k in names]
    verdicts, notes = {}, []
    if exercise is not None:
        from .hidden import live_verdicts
        try:
            verdicts, notes = live_verdicts(exercise, history, ran, notebook)
        except Exception as e:  # a check cell never stops Run All: the cmp rows still print
            notes = [f"the grade's verdicts could not be computed here ({type(e).__name__}: {e})"]
    graded = [k for k in names if k in verdicts and k in EXERCISES[exercise].grads]
    inherited = 0
    for k, row in zip(names, rows):
        v = verdicts.get(k) if k in graded else None
        if v is None:
            print(row)
            continue
        line, why = str(row), []
        if "accepted for" in row.note and line.endswith(f" | {row.note}"):
            line = line[:-len(f" | {row.note}")]  # the verdict's message says it (below)
        steps = EXERCISES[exercise].kind == "steps"
        order = list(EXERCISES[exercise].grads) if steps else []  # (a function: one answer)
        if v.ok and not row.ok and row.shape is not None and order and not all(
                verdicts[j].ok for j in order[:order.index(k)]):
            inherited += 1
            why.append("right: your value differs only because an earlier gradient is wrong")
        elif v.ok and not row.ok and not steps:
            why.append("right as graded: this kernel's backward differs (run its cell again?)")
        elif v.ok and not row.ok and row.shape is not None:
            why.append("right: your value here differs (did a later line change it in place, "
                       "an alias without .clone()?)")
        elif v.ok and not row.ok:
            why.append("right as graded: not defined here (did a line above it raise?)")
        if v.message or not v.ok:
            why.append(v.message or "does not match")
        print(f"{line} | " + ("step: right" if v.ok else f"step: WRONG ({v.points:g}/{v.max_points:g})"))
        for text in why:
            print(_wrap(text, " " * 18 + "^ ", " " * 20))
        if not v.ok and not row.ok and row.shape is not None and not row.note.startswith("wrong shape"):
            show(picture(k, ns.get("d" + k), ref[k]))
    matched = sum(r.ok for r in rows)
    if graded:
        right = sum(verdicts[k].ok for k in graded)
        print(f"{matched}/{len(rows)} gradients match; {right}/{len(graded)} right, as graded")
    else:
        print(f"{matched}/{len(rows)} gradients match")
    if inherited:
        print(_wrap(f"{inherited} right step(s) differ end to end only because an earlier gradient "
                    "is wrong: fix the first WRONG one"))
    for k in EXERCISES[exercise].extra_tests if verdicts else ():  # Exercise 4's training run
        print(_wrap(verdicts[k].summary(), "", "    "))
    for note in notes:
        print(_wrap("note: " + note, "", "    "))
    return rows


def picture(name, dt, t):
    """A small PNG of which entries of a wrong gradient dt differ from t (red), or None: a
    pattern (some rows, one column per row, everything) often says the mistake faster."""
    import torch
    from matplotlib.figure import Figure
    from .score import GRADE_ATOL, GRADE_RTOL
    if not isinstance(dt, torch.Tensor) or dt.numel() != t.numel() or not 0 < t.numel() <= 10**6:
        return None
    t = t.detach().float()
    off = (dt.detach().reshape(t.shape).float() - t).abs() > GRADE_ATOL + GRADE_RTOL * t.abs().max()
    off = off.reshape(t.shape[0] if t.dim() > 1 else 1, -1)
    rows, cols = off.shape
    fig = Figure(figsize=(min(4.0, 2.0 + cols / 40), min(2.0, 1.0 + rows / 40)), dpi=72)
    ax = fig.subplots()
    ax.imshow(off.numpy(), cmap="Reds", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_title(f"d{name}: {int(off.sum())}/{off.numel()} differ (red)", fontsize=7)
    ax.set_xlabel("column", fontsize=6)
    ax.set_ylabel("row", fontsize=6)
    ax.tick_params(labelsize=5)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def show(png):
    """Display a picture in the learner's kernel (nothing outside one: the grader's verdicts
    are text)."""
    ipython = sys.modules.get("IPython")
    if png is None or ipython is None or ipython.get_ipython() is None:
        return
    from IPython.display import Image, display
    display(Image(png))
