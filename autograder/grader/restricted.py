"""The language answers are replayed in: RestrictedPython, with what the exercises need.

An answer statement is compiled by RestrictedPython (no name or attribute starting with `_`,
no exec, eval, getattr, open or globals), imports only torch, torch.nn.functional, math and
numpy, and every attribute access goes through a guard at run time that refuses autograd
(`.grad`, `.backward`, `requires_grad`, `torch.autograd`, `torch.func`, `enable_grad`,
`nn.Parameter`) and the ways out (`torch.load`, `torch.ops`, `numpy.ctypeslib`, ...),
whatever the spelling that reached them. Honest code in every style learners use (loops,
einsum, F.one_hot, index_add_, helper functions, lambdas, comprehensions, `+=` on slices)
keeps working.
"""
import ast
import builtins
import operator
import types

from RestrictedPython import compile_restricted, safe_builtins, utility_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "math", "numpy", "numpy.linalg"}
# Attributes no answer may touch, on any object: autograd, and what reaches files, processes,
# compiled code or the interpreter.
DENIED_ATTRIBUTES = {
    "grad", "backward", "requires_grad", "requires_grad_", "retain_grad", "retains_grad", "grad_fn",
    "register_hook", "autograd", "func", "functorch", "enable_grad", "set_grad_enabled", "Parameter",
    "detect_anomaly", "set_detect_anomaly", "jit", "compile", "compiler", "ops", "library", "utils",
    "hub", "multiprocessing", "distributed", "load", "save", "from_file", "storage", "untyped_storage",
    "testing", "backends", "cuda", "mps", "xpu", "export", "fx", "onnx", "package", "profiler",
    "set_default_dtype", "set_default_device", "set_num_threads", "manual_seed", "seed",
    "ctypeslib", "ctypes", "lib", "f2py", "distutils", "memmap", "fromfile", "tofile", "savez",
    "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "DataSource", "os", "sys",
    "gi_frame", "gi_code", "f_back", "f_globals", "f_locals", "tb_frame", "cr_frame",
}
EXTRA_BUILTINS = ["sum", "min", "max", "enumerate", "map", "filter", "any", "all", "reversed", "list",
                  "dict", "set", "frozenset", "iter", "next", "type", "object", "Exception", "StopIteration"]


class NotAllowed(Exception):
    """Something an answer may not do."""


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    wanted = {name, *(f"{name}.{f}" for f in fromlist or ())}
    if level != 0 or name not in ALLOWED_IMPORTS:
        raise NotAllowed(f"`import {name}` is not allowed in an answer (only torch, torch.nn.functional, math, numpy)")
    return builtins.__import__(name, globals, locals, [f for f in fromlist or () if f"{name}.{f}" in ALLOWED_IMPORTS
                                                       or "." not in f], level) if wanted else None


def _getattr(obj, name, *default):
    if not isinstance(name, str) or name.startswith("_") or name in DENIED_ATTRIBUTES:
        raise NotAllowed(f"`.{name}` is not allowed in an answer" + (
            ": gradients must be computed by hand" if name in {"grad", "backward", "autograd", "func",
                                                                "requires_grad", "requires_grad_", "enable_grad",
                                                                "set_grad_enabled", "Parameter", "grad_fn"} else ""))
    if isinstance(obj, types.ModuleType) and obj.__name__.split(".")[0] not in {"torch", "math", "numpy"}:
        raise NotAllowed(f"module {obj.__name__} is not allowed in an answer")
    return getattr(obj, name, *default)


def _write(obj):
    """Item and attribute assignment: on data, not on modules or classes (no monkeypatching)."""
    if isinstance(obj, (types.ModuleType, type)):
        raise NotAllowed(f"changing {getattr(obj, '__name__', 'a module')} is not allowed in an answer")
    return obj


INPLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
           "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "@=": operator.imatmul,
           "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor, "<<=": operator.ilshift,
           ">>=": operator.irshift}


def _inplacevar(op, x, y):
    return INPLACE[op](x, y)


def _noop_print(*args, **kwargs):
    pass


def builtins_dict():
    b = dict(safe_builtins)
    b.update({k: getattr(builtins, k) for k in EXTRA_BUILTINS})
    b.update(set=set, frozenset=frozenset, math=utility_builtins["math"])
    b.update(__import__=_import, getattr=_getattr, print=_noop_print)
    return b


def globals_for(ns):
    """The names restricted code needs to run, added to namespace ns."""
    ns.update(__builtins__=builtins_dict(), _getattr_=_getattr, _getitem_=operator.getitem,
              _write_=_write, _getiter_=iter, _iter_unpack_sequence_=guarded_iter_unpack_sequence,
              _unpack_sequence_=guarded_unpack_sequence, _inplacevar_=_inplacevar,
              _apply_=lambda f, *a, **k: f(*a, **k), __name__="answer", __metaclass__=type)
    return ns


class _AugItems(ast.NodeTransformer):
    """`x[i] += v` and `x.a += v` as three statements RestrictedPython accepts, with the same
    effect: take the item, update it in place, put it back (as Python itself does)."""
    count = 0

    def visit_AugAssign(self, node):
        if not isinstance(node.target, (ast.Subscript, ast.Attribute)):
            return node
        _AugItems.count += 1
        tmp = f"ninja_item{_AugItems.count}"
        load = ast.copy_location(type(node.target)(**{**{f: getattr(node.target, f) for f in node.target._fields},
                                                      "ctx": ast.Load()}), node)
        return [ast.copy_location(ast.Assign([ast.Name(tmp, ast.Store())], load), node),
                ast.copy_location(ast.AugAssign(ast.Name(tmp, ast.Store()), node.op, node.value), node),
                ast.copy_location(ast.Assign([node.target], ast.Name(tmp, ast.Load())), node)]


def compile_answer(source, filename):
    """RestrictedPython's code object for one statement's source; NotAllowed with its reasons."""
    tree = ast.fix_missing_locations(_AugItems().visit(ast.parse(source)))
    result = compile_restricted(tree, filename, "exec")
    return result


def why(error):
    """RestrictedPython's compile errors, as one line."""
    found = error.args[0] if error.args and isinstance(error.args[0], tuple) else (error.msg,)
    return "not allowed in an answer: " + "; ".join(str(f) for f in found)[:300]
