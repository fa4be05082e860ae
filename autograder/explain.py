"""An error in an answer cell, explained under its traceback in the learner's terms: the line
that raised, the tensors it uses and their shapes, and the likely slip (a sum without
keepdim=True, a transposed tensor, a broadcast that does not fit, a typo in a name).

Registered in the learner's kernel by the notebooks' import cell (`watch`), as an IPython
`post_run_cell` callback, for the course's answer cells only: by cell id where the front end
sends one, else by what the cell assigns (a gradient, or `backward`). After explaining, the
cell is reported as finished (`error_in_exec` cleared: ipykernel's reply is then "ok"), so
that Run All goes on to the check cell below, which says which gradient raised. Under nbgrader
(NBGRADER_EXECUTION or NBGRADER_VALIDATING set) nothing is registered and nothing changes.
"""
import ast
import difflib
import os
import re
import sys
import textwrap

WIDTH = 100  # as the check cells' lines


def _shell():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _answers():
    """(answer cell ids, the names an answer cell assigns)."""
    from .exercises import EXERCISES
    ids = {cell for ex in EXERCISES.values() for cell in ex.answer_cells}
    names = {"d" + k for ex in EXERCISES.values() for k in ex.grads} | {"backward"}
    return ids, names


def _statements(source):
    try:
        return ast.parse(source).body
    except SyntaxError:
        return []


def _writes(stmt):
    """The names a statement assigns, functions it defines included (Exercise 4's `backward`)."""
    return {n.id if isinstance(n, ast.Name) else n.name for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            or isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def is_answer(source, cell_id=None):
    """Is this an answer cell of the course: its id where the front end sent one, else does it
    assign a gradient (or Exercise 4's `backward`)?"""
    ids, names = _answers()
    if cell_id:
        return cell_id in ids
    return any(_writes(st) & names for st in _statements(source))


def _shape(t):
    return _fmt(tuple(t.shape))


def _short(text, width=48):
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _line(err, ns):
    """The line number, in the cell, of the innermost frame of the cell's own code."""
    tb, filename, line = err.__traceback__, None, None
    while tb is not None:
        code = tb.tb_frame.f_code
        if filename is None and tb.tb_frame.f_globals is ns and code.co_name == "<module>":
            filename = code.co_filename
        if filename is not None and code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _tensor(value):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _pure(node):
    """May a sub-expression be evaluated again to learn its shape: no assignment, no lambda,
    no in-place method (a name ending in `_`)?"""
    for n in ast.walk(node):
        if isinstance(n, (ast.NamedExpr, ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name.endswith("_") and not name.endswith("__"):
                return False
    return True


def _value(node, ns):
    if not _pure(node):
        return None
    try:
        return eval(compile(ast.Expression(node), "<shape>", "eval"), ns)
    except Exception:
        return None


def _broadcasts(a, b):
    return all(x == y or x == 1 or y == 1 for x, y in zip(a[::-1], b[::-1]))


def _shape_slip(name, got, want):
    """Why a gradient's shape is not its tensor's, in words, the likely slip first."""
    got, want = tuple(got), tuple(want)
    said = f"`{name}` is {_fmt(got)} where `{name[1:]}` is {_fmt(want)}"
    if len(got) == len(want) - 1 and 1 in want and list(got) == [d for d in want if d != 1]:
        return f"{said}: a sum over dimension {want.index(1)} without keepdim=True?"
    if len(got) == 2 and got == want[::-1]:
        return f"{said}: transposed?"
    stretched = [i for i, (a, b) in enumerate(zip(got, want)) if b == 1 and a > 1]
    if len(got) == len(want) and stretched:
        return (f"{said}: the forward pass broadcast `{name[1:]}` along dimension {stretched[0]}, "
                "so its gradient is summed over that dimension (keepdim=True)")
    return f"{said}: a gradient has the shape of its tensor"


def _fmt(shape):
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _operands(stmt, source, ns):
    """The innermost operation of the statement whose two tensor operands do not fit (shapes
    that do not broadcast, or inner sizes of `@` that differ): (node, (text, left), (text,
    right)), or None. Operands are evaluated again where that changes nothing (`_pure`)."""
    found = None
    for node in ast.walk(stmt):  # outermost first: keep the last (innermost) that does not fit
        if not isinstance(node, ast.BinOp):
            continue
        left, right = _value(node.left, ns), _value(node.right, ns)
        if not (_tensor(left) and _tensor(right)):
            continue
        a, b = tuple(left.shape), tuple(right.shape)
        if not a or not b:
            continue  # a scalar tensor fits everything but `@`, whose message says so
        if isinstance(node.op, ast.MatMult):
            fits = len(a) >= 1 and len(b) >= 1 and a[-1] == b[-2 if len(b) > 1 else 0]
        else:
            fits = _broadcasts(a, b)
        if not fits:
            found = (node, (ast.get_source_segment(source, node.left) or "", left),
                     (ast.get_source_segment(source, node.right) or "", right))
    return found


def _misfit(found):
    """Words for two operands that do not fit, with the likely slip."""
    node, (ltext, left), (rtext, right) = found
    a, b = tuple(left.shape), tuple(right.shape)
    lines = [f"`{_short(ltext)}` is {_fmt(a)} and `{_short(rtext)}` is {_fmt(b)}"]
    if isinstance(node.op, ast.MatMult):
        lines[0] += f": in `@` the inner sizes must match ({a[-1]} and {b[0] if len(b) == 1 else b[-2]})"
        for text, t, other, side in ((rtext, b, a, "right"), (ltext, a, b, "left")):
            if len(t) == 2 and len(other) == 2:
                new = t[::-1]
                ok = other[-1] == new[0] if side == "right" else new[-1] == other[0]
                if ok:
                    lines.append(f"likely slip: `{_short(text)}` transposed "
                                 f"({_fmt(new)}) would fit: a missing or extra `.T`?")
                    break
        return lines
    lines[0] += ": their shapes do not broadcast (each size must match, or be 1)"
    for text, t, other in ((ltext, a, b), (rtext, b, a)):
        call = text.strip()
        reduced = re.search(r"\.(sum|mean|max|min|amax)\(([^)]*)\)$", call)
        if reduced and "keepdim" not in reduced.group(2):
            lines.append(f"likely slip: `{_short(call)}` drops the dimension it reduces: "
                         "a `.{}` over the wrong dimension, or without keepdim=True?".format(reduced.group(1)))
            return lines
    for text, t, other in ((ltext, a, b), (rtext, b, a)):
        if len(t) == 2 and t != t[::-1] and _broadcasts(t[::-1], other):
            lines.append(f"likely slip: `{_short(text)}` transposed ({_fmt(t[::-1])}) would fit: "
                         "a missing or extra `.T`?")
            return lines
    lines.append("likely slip: one of them is not the tensor or the dimension meant (a sum over the "
                 "other dimension?)")
    return lines


def explain(err, source, ns):
    """Lines that explain an exception raised by an answer cell, in the learner's terms."""
    statements = _statements(source)
    line = _line(err, ns)
    at = next((i for i, st in enumerate(statements)
               if line is not None and st.lineno <= line <= (st.end_lineno or st.lineno)), None)
    stmt = statements[at] if at is not None else None
    text = (ast.get_source_segment(source, stmt) or "") if stmt is not None else ""
    out = [f"What went wrong, in line {line}: `{_short(text.splitlines()[0] if text else '', 70)}`"
           if line and text else "What went wrong:"]

    if isinstance(err, NameError) and getattr(err, "name", None):
        name = err.name
        known = [k for k in ns if isinstance(k, str) and not k.startswith("_")]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        later = [st for st in statements[(at or 0) + 1:] if name in _writes(st)]
        if later:
            out.append(f"`{name}` is used before the line that defines it: move that line up")
        elif close:
            out.append(f"`{name}` is not defined: a typo for `{close[0]}`?")
        else:
            out.append(f"`{name}` is not defined: define it above this line (or run the cells above)")
        return out

    if stmt is not None:
        used = []
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in used \
                    and _tensor(ns.get(n.id)):
                used.append(n.id)
        if used:
            out.append("tensors on this line: " + ", ".join(f"`{k}` {_shape(ns[k])}" for k in used))

    slips = []  # gradients this run of the cell already assigned, of another shape than their tensor
    for st in statements[:at if at is not None else 0]:
        for name in sorted(_writes(st)):
            dt, t = ns.get(name), ns.get(name[1:])
            if name.startswith("d") and _tensor(dt) and _tensor(t) and dt.shape != t.shape \
                    and name not in [s[0] for s in slips]:
                slips.append((name, dt.shape, t.shape))
    if slips:
        name, got, want = slips[0]
        out.append("likely slip: " + _shape_slip(name, got, want))
        out += [f"then `{n}` is {_fmt(tuple(g))} where `{n[1:]}` is {_fmt(tuple(w))}" for n, g, w in slips[1:]]
        return out

    found = _operands(stmt, source, ns) if stmt is not None else None
    if found is not None:
        return out + _misfit(found)
    out.append(f"{type(err).__name__}: {_short(str(err).splitlines()[0] if str(err) else '', 90)}")
    return out


def _grading():
    return bool(os.environ.get("NBGRADER_EXECUTION") or os.environ.get("NBGRADER_VALIDATING"))


def _explain(result):
    """post_run_cell: explain an answer cell's error and let Run All go on."""
    err = getattr(result, "error_in_exec", None)
    info = getattr(result, "info", None)
    if not isinstance(err, Exception) or info is None or not isinstance(info.raw_cell, str) or _grading():
        return  # (a kernel forked before nbgrader's variables were set checks them here too)
    try:
        if not is_answer(info.raw_cell, getattr(info, "cell_id", None)):
            return
        shell = _shell()
        lines = explain(err, info.raw_cell, shell.user_ns if shell is not None else {})
    except Exception:  # the explanation never adds an error of its own
        lines = ["What went wrong: see the error above."]
    lines.append("The cells below still run: the check under this cell says what each gradient gives.")
    print("\n".join(textwrap.fill(l, WIDTH, subsequent_indent="    ", break_on_hyphens=False)
                    for l in lines))
    sys.stdout.flush()
    result.error_in_exec = None  # reported as finished: Run All goes on to the check cell


def watch():
    """Register the explanation in this kernel (once; never under nbgrader)."""
    if _grading():
        return
    shell = _shell()
    if shell is not None and _explain not in shell.events.callbacks.get("post_run_cell", []):
        shell.events.register("post_run_cell", _explain)
