"""Answer cells cut into top-level statements, each with the names it may write and read.

Text analysis only (ast; no torch, nothing executed), so the grader's own process can use it.
A statement is the unit of judgement: one that cannot be parsed, or that uses something
banned, costs the gradients it would define and nothing else, and the replay knows where
each gradient is answered: at the last statement that may write it.
"""
import ast
import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field

from .reason import Reason

# Lines IPython runs but Python cannot parse: magics and shell escapes, at the start of a line.
MAGIC = re.compile(r"^[%!]")
# The first line of a top-level statement (not a continuation of the one before).
CONTINUATION = re.compile(r"^(\s|[)\]}]|else\b|elif\b|except\b|finally\b|#|$)")
ASSIGNED = re.compile(r"^([A-Za-z_]\w*)\s*(?:\[[^=]*\])?\s*(?:[-+*/@%&|^]|//|\*\*)?=(?!=)")


@dataclass
class Statement:
    """One top-level statement of an answer cell."""
    cell: str                 # the answer cell's grade id
    line: int                 # its first line in the cell, from 1
    source: str               # its text, with line - 1 blank lines before it (line numbers hold)
    writes: set = field(default_factory=set)  # names it may assign or change in place
    reads: set = field(default_factory=set)   # names it reads
    error: str = ""           # why it cannot run (then it is not run): a syntax error, a ban

    def to_dict(self):
        return {"cell": self.cell, "line": self.line, "source": self.source,
                "writes": sorted(self.writes), "reads": sorted(self.reads), "error": self.error}

    @classmethod
    def from_dict(cls, d):
        return cls(d["cell"], d["line"], d["source"], set(d["writes"]), set(d["reads"]), d["error"])


def _root(node):
    """The variable at the root of `x`, `x[i]`, `x.a[i].b` (None for anything else)."""
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node):
    if isinstance(node, (ast.Tuple, ast.List)):
        return {n for elt in node.elts for n in _targets(elt)}
    root = _root(node)
    return {root} if root else set()


def writes(tree):
    """Names a statement may assign or modify in place: assignment targets (also through
    subscripts and attributes), loop and `with` targets, imports, definitions, `del`, in-place
    methods (`x.add_(...)`, `x[i].zero_()`), `out=x`, and a nested function's globals."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.Delete)):
            for t in node.targets:
                names |= _targets(t)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr)):
            names |= _targets(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            names |= _targets(node.optional_vars)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names |= set(node.names)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr.endswith("_") \
                    and not node.func.attr.startswith("_"):
                names |= _targets(node.func.value)
            names |= {n for kw in node.keywords if kw.arg == "out" for n in _targets(kw.value)}
    return names - {None}


def reads(tree):
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def split(cell, src):
    """The cell's top-level statements, in order. A part that cannot be parsed becomes one
    statement with its error (the top-level block around the error); the rest is parsed on."""
    lines = ["" if MAGIC.match(line) else line for line in src.splitlines()]
    return _split(cell, lines, 0, len(lines))


def _split(cell, lines, lo, hi):
    text = "\n" * lo + "\n".join(lines[lo:hi])
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        return _broken(cell, lines, lo, hi, e)
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return [Statement(cell, lo + 1, "", error=f"{type(e).__name__}: cannot read this code")]
    out = []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        body = "\n".join(lines[first - 1:node.end_lineno])
        out.append(Statement(cell, first, "\n" * (first - 1) + body, writes(node), reads(node)))
    return out


def _broken(cell, lines, lo, hi, e):
    """Split around the top-level block that holds the syntax error."""
    at = min(max((e.lineno or lo + 1) - 1, lo), hi - 1)
    start = next((i for i in range(at, lo - 1, -1) if not CONTINUATION.match(lines[i])), lo)
    end = next((i for i in range(at + 1, hi) if not CONTINUATION.match(lines[i])), hi)
    block = lines[start:end]
    guess = {m.group(1) for line in block if (m := ASSIGNED.match(line.strip()))}
    bad = Statement(cell, start + 1, "\n" * start + "\n".join(block), writes=guess,
                    error=f"SyntaxError: {e.msg} (line {at + 1})")
    if (start, end) == (lo, hi):
        return [bad]
    return _split(cell, lines, lo, start) + [bad] + _split(cell, lines, end, hi)


# Names that mean autograd, whatever the spelling around them; `.grad`/`.backward` as attributes.
AUTOGRAD_NAMES = {"autograd", "functorch", "requires_grad", "requires_grad_", "enable_grad",
                  "set_grad_enabled", "retain_grad", "grad_fn"}
AUTOGRAD_ATTRS = {"grad", "backward", "func"}
# The notebook's own autograd gradients (for the checks) and the course's functions that compute
# gradients: an answer that reads them copies, it does not backpropagate.
REFERENCE = {"ref", "autograd_step_grads", "reference_grads", "local_grad"}
DYNAMIC = {"eval", "exec", "compile", "getattr", "setattr", "__import__", "importlib", "globals",
           "vars", "__dict__", "__builtins__", "__class__", "__subclasses__"}


def misspelled(name, written):
    """The name among `written` (the learner's own, not the graded ones) that the learner most
    likely meant as `name` (at least 80% alike, as difflib measures it), or None."""
    close = difflib.get_close_matches(name, written, n=1, cutoff=0.8)
    return close[0] if close else None


def forbidden(src):
    """Why the source may not be graded (autograd or dynamic code), or '' if it may."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
        return f"cannot be read ({type(e).__name__})"  # never a pass
    prev = None
    for tok in tokens:
        if tok.type == tokenize.NAME:
            if tok.string in REFERENCE and prev != ".":
                return Reason(f"reads the notebook's autograd reference (`{tok.string}`, line {tok.start[0]}): "
                              "it is there for the checks; compute the gradient by hand", "reference")
            if prev == "." and tok.string == "grad":
                return Reason(f"reads autograd's gradient (`.grad`, line {tok.start[0]}): "
                              "compute the gradient by hand", "reference")
            if tok.string in AUTOGRAD_NAMES or (prev == "." and tok.string in AUTOGRAD_ATTRS):
                return Reason(f"uses autograd (`{tok.string}`, line {tok.start[0]}): gradients must be computed by hand",
                              "reference")
            if tok.string in DYNAMIC:
                return f"uses `{tok.string}` (line {tok.start[0]}), which is not allowed in an answer"
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            prev = tok.string
    return ""
