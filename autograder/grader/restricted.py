"""The language answers are replayed in: RestrictedPython, where an answer reaches only what
the exercises need, as objects (an allowlist, not a list of denied names).

An answer statement is compiled by RestrictedPython (no exec, eval, open or globals; no name
or attribute that begins and ends with `_`: dunders such as `__class__` and the hooks below,
`_getattr_`, `_write_`, ...; a learner's own `_helper`, `_` or `_1` is an ordinary name) and imports only torch, torch.nn(.functional), torch.linalg,
math and numpy(.linalg). Every attribute access goes through `_getattr` at run time, which
looks at the object it is asked about and allows only:

- on the allowed modules (by identity), the functions and constants of an explicit list
  (TORCH, FUNCTIONAL, NUMPY, ...: what learners use to write gradients by hand);
- on tensors, numpy arrays, the values torch's functions return (`.values`, `.indices`) and
  Python's own data (lists, dicts, strings, numbers), the methods and properties of a list;
- on the answer's own classes and their instances, what the answer itself defined.

Anything else is refused with a message naming it, however it was reached: `getattr` with a
computed name, a function's or a module's other attributes, lists of functions such as
`torch.overrides.get_ignored_functions()` (torch.overrides is not on the list), descriptors,
`type()` and `object` (not builtins here), `str.format`/`format_map` (not on the list of
string methods: a format string could read attributes), `vars`, `dir`, `__dict__`.

Every callable handed out is wrapped: it refuses `requires_grad=True` and checks what it
returns (`checked`): only plain data, and tensors that are dense, strided, on the CPU and do
not require grad (no meta, sparse, nested or quantized tensors, no tensor subclasses such as
MaskedTensor or Parameter). Nothing on the list switches grad mode on (`set_grad_enabled`,
`enable_grad`, `inference_mode`, `torch._C`, autograd, graphs and `grad_fn` are unreachable),
and the sandboxed child turns it off before any answer runs (child.py): autograd is not
something an answer can switch on.

Writes (`x.a = v`, `x[i] = v`, `del`, `setattr`) are allowed only on tensors, numpy arrays,
lists, dicts and sets, and on instances of the answer's own classes; never on a module, a
function, a class or anything the grader owns. The module-level containers of torch, numpy
and math are not on the lists, so an answer never holds one; the real guarantee that nothing
survives from one exercise to the next is that each exercise is replayed in a fresh process
(child.py's fork server).

The finite-difference watch (detect.py) sees what torch's mode cannot: the compiled answer
calls `_binop_` for `+ - * / **` (a RestrictedPython policy rewrites them; the answer cannot
name `_binop_`), `_getiter_` for its loops, `_getitem_` for its indexing, and the builtins that
read a sequence (sum, max, min, sorted, zip, enumerate, map, ...) are wrapped to show it their
arguments. Complex numbers are refused wherever one can appear (a `1j` literal, a result of
arithmetic, `pow`, anything a wrapped function returns, a torch operation: detect.py), and
`complex` is not a builtin here: nothing needs them but a complex-step derivative.

Honest code in every style learners use (loops, einsum, F.one_hot, index_add_, helper
functions, lambdas, comprehensions, `+=` on slices, numpy and its dtypes (`np.float64` is a
NumpyType: a dtype to numpy, a wrapped call to the answer), `with torch.no_grad()`, names
that begin with `_`, print, which prints nowhere) keeps working: tests/test_honest_idioms.py.
"""
import ast
import builtins
import contextvars
import copy
import importlib
import math
import operator
import types

import numpy as np
import torch
import torch.nn.functional as F
from RestrictedPython import RestrictingNodeTransformer, compile_restricted
from RestrictedPython.transformer import ALLOWED_FUNC_NAMES
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

ALLOWED_IMPORTS = {"torch", "torch.nn", "torch.nn.functional", "torch.linalg", "math", "numpy", "numpy.linalg"}

# What of torch, torch.nn.functional, math and numpy an answer may use (module -> names).
_MATH_OPS = """abs absolute add addmm all allclose amax amin any arange argmax argmin argsort baddbmm bincount
    bmm broadcast_tensors broadcast_to cat ceil chunk clamp clamp_max clamp_min clip clone column_stack concat
    concatenate cos cosh count_nonzero cummax cummin cumprod cumsum diag diag_embed diagflat diagonal diff div
    divide dot dsplit einsum empty empty_like eq equal erf exp exp2 expand_copy expm1 eye flatten flip fliplr
    flipud float_power floor floor_divide fmax fmin fmod frac full full_like gather ge ger gt hsplit hstack
    index_add index_copy index_fill index_put index_reduce index_select inner isclose isfinite isinf isnan
    kron le lerp linspace log log10 log1p log2 log_softmax logaddexp logical_and logical_not logical_or
    logical_xor logspace logsumexp lt masked_fill masked_scatter masked_select matmul max maximum mean median
    min minimum mm moveaxis movedim mul multiply mv nan_to_num nanmean nansum narrow ne neg negative nonzero
    norm numel ones ones_like outer permute pow prod rand rand_like randint randn randn_like range ravel
    reciprocal relu remainder repeat_interleave reshape roll rot90 round rsqrt scatter scatter_add
    scatter_reduce select sgn sigmoid sign signbit sin sinh softmax sort split sqrt square squeeze stack std
    std_mean sub subtract sum swapaxes swapdims t take take_along_dim tan tanh tensor tensordot tile topk trace
    transpose tril tril_indices triu triu_indices true_divide trunc unbind unflatten unique unique_consecutive
    unsqueeze var var_mean vsplit vstack where xlogy zeros zeros_like""".split()
TORCH = set(_MATH_OPS) | {
    "as_tensor", "from_numpy", "addcmul", "addcdiv", "addmv", "addr", "addbmm", "cdist", "cross", "flatten", "no_grad", "is_tensor", "is_floating_point", "is_grad_enabled", "Size",
    "float", "float16", "float32", "float64", "double", "half", "bfloat16", "int", "int8", "int16", "int32",
    "int64", "long", "uint8", "bool", "pi", "e", "inf", "nan", "nn", "linalg"}
FUNCTIONAL = set("""one_hot softmax log_softmax softmin cross_entropy nll_loss relu relu6 leaky_relu elu gelu silu
    tanh sigmoid logsigmoid softplus linear embedding batch_norm layer_norm normalize pad mse_loss l1_loss
    hardtanh threshold""".split())
NUMPY = set("""abs absolute add all allclose amax amin any arange argmax argmin argsort array array_equal asarray
    ascontiguousarray atleast_1d atleast_2d bincount broadcast_to ceil clip column_stack concatenate copy cos
    cosh cumprod cumsum diag diagonal diff divide dot einsum empty empty_like equal exp exp2 expand_dims expm1
    eye flip float16 float32 float64 float_ floor full full_like hstack identity inner int16 int32 int64 int8
    int_ isclose isfinite isinf isnan kron linalg linspace log log10 log1p log2 logaddexp matmul max maximum
    mean median min minimum moveaxis multiply nan inf pi e nan_to_num nansum ndim negative newaxis nonzero
    ones ones_like outer power prod ravel reciprocal repeat reshape round rint shape sign sin sinh size sort
    split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot tile
    trace transpose tril triu true_divide uint8 unique var vstack where zeros zeros_like bool_""".split())
LINALG = {"norm", "inv", "pinv", "det", "solve", "matrix_norm", "vector_norm", "svd", "eigh", "qr", "cholesky"}
MODULES = {torch: ("torch", TORCH), torch.nn: ("torch.nn", {"functional"}), F: ("torch.nn.functional", FUNCTIONAL),
           torch.linalg: ("torch.linalg", LINALG), np: ("numpy", NUMPY), np.linalg: ("numpy.linalg", LINALG),
           math: ("math", {n for n in dir(math) if not n.startswith("_")})}

_COMMON = {"T", "all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumprod", "cumsum",
           "diagonal", "dot", "dtype", "fill", "flatten", "item", "max", "mean", "min", "ndim", "nonzero",
           "prod", "ravel", "repeat", "reshape", "round", "shape", "size", "sort", "squeeze", "std", "sum",
           "swapaxes", "tolist", "trace", "transpose", "var"}
# Tensor methods and properties: the maths above, in place or not, and the tensor's own shape business.
TENSOR = _COMMON | {n for n in _MATH_OPS if n not in {"tensor", "zeros", "ones", "empty", "full", "eye", "arange",
                                                      "linspace", "logspace", "rand", "randn", "randint",
                                                      "range", "tril_indices", "triu_indices"}} | {
    n + "_" for n in _MATH_OPS} | set("""H mT mH data device layout is_contiguous is_floating_point is_complex
    contiguous cpu detach double float half bfloat16 int long bool short byte char to type type_as view view_as
    reshape_as expand expand_as repeat new_zeros new_ones new_full new_empty new_tensor numpy dim nelement
    element_size stride storage_offset fill_ zero_ copy_ fill_diagonal_ index_put_ put_ masked_fill_ sum_to_size
    unfold apply_ map_ resize_as_ div_ mul_ add_ sub_ pow_ neg_ exp_ log_ tanh_ sqrt_ abs_ clamp_ real imag
    itemsize nbytes addmm_ addmv addr addcmul addcdiv addcmul_ addcdiv_ argwhere square_ sign_""".split())
TENSOR -= {"map_", "apply_"}  # they call back into Python per element with grader-made arguments: not needed
NDARRAY = _COMMON | {"itemsize", "nbytes", "T", "real", "imag", "conj", "cumsum", "choose", "compress", "ptp",
                     "searchsorted", "argpartition", "partition"}
RETURN_TYPES = {"values", "indices", "mean", "std", "var", "eigenvalues", "eigenvectors", "U", "S", "Vh", "Q", "R",
                "L", "count", "index"}
PYTHON = {
    list: {"append", "extend", "pop", "insert", "index", "count", "reverse", "sort", "copy", "clear", "remove"},
    dict: {"items", "keys", "values", "get", "update", "setdefault", "pop", "copy", "clear", "popitem"},
    set: {"add", "update", "discard", "remove", "pop", "union", "intersection", "difference", "issubset",
          "issuperset", "copy", "clear", "symmetric_difference", "isdisjoint"},
    frozenset: {"union", "intersection", "difference", "issubset", "issuperset", "copy", "isdisjoint"},
    tuple: {"index", "count"}, torch.Size: {"index", "count", "numel"},
    str: {"join", "split", "rsplit", "strip", "lstrip", "rstrip", "upper", "lower", "replace", "startswith",
          "endswith", "find", "rfind", "count", "isdigit", "isalpha", "isspace", "splitlines", "title", "zfill",
          "center", "ljust", "rjust", "partition", "rpartition", "index"},  # no format, format_map
    int: {"real", "imag", "bit_length"}, float: {"real", "imag", "is_integer"}, bool: set(),
    complex: {"real", "imag"}, range: {"start", "stop", "step", "index", "count"},
    slice: {"start", "stop", "step"}, torch.dtype: {"is_floating_point", "is_complex", "itemsize"},
    torch.device: {"type"},
}
BUILTINS = """abs all any bool callable chr divmod enumerate filter float frozenset hash hex int isinstance
    issubclass iter len list map max min next oct ord pow range repr reversed round set slice sorted str sum
    tuple zip dict ArithmeticError AssertionError AttributeError Exception IndexError KeyError
    LookupError NameError NotImplementedError OverflowError RuntimeError StopIteration TypeError ValueError
    ZeroDivisionError""".split()  # no type, object, vars, dir, getattr (ours), format, open, super, complex, ...
PLAIN = (int, float, bool, str, complex, type(None), torch.dtype, torch.device, torch.Size, range, slice,
         type(Ellipsis), np.dtype)


class NotAllowed(Exception):
    """Something an answer may not do."""


RESERVED = "Python's or the grader's, not an answer's (it begins and ends with _)"


def reserved(name):
    """Whether a name is Python's or the grader's, never an answer's: it begins and ends with
    `_` (dunders such as `__class__`, `__globals__`, `__builtins__`, and RestrictedPython's
    hooks `_getattr_`, `_write_`, ...). `_`, `__`, `_1` and `_helper` are an answer's own."""
    return len(name) > 2 and name.startswith("_") and name.endswith("_")


COMPLEX = ("complex numbers are not allowed in an answer (nothing here needs them: a complex-step "
           "derivative is a numerical gradient)")


def _complex():
    """An answer made a complex number, array or tensor: refused (and the finite-difference
    watch told: a complex step is a numerical derivative)."""
    watch = WATCH.get()
    if watch is not None:
        watch.complex()
    raise NotAllowed(COMPLEX)


def _is_complex(value):
    return type(value) is complex or isinstance(value, np.complexfloating) or (
        type(value) is np.ndarray and value.dtype.kind == "c") or (
        isinstance(value, torch.Tensor) and value.is_complex())


def _named(obj):
    """What obj is, for a message."""
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, types.FunctionType) and "ninja_wraps" in obj.__dict__:
        return obj.__dict__["ninja_wraps"]
    return getattr(obj, "__qualname__", None) if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) \
        else type(obj).__name__


def _tensor_ok(t, what):
    with torch._C.DisableTorchFunction():  # the watch need not see the grader's own checks
        return _tensor_checked(t, what)


def _tensor_checked(t, what):
    if type(t) is not torch.Tensor:
        raise NotAllowed(f"{what} gave a {type(t).__name__}: only plain tensors are allowed in an answer")
    if t.requires_grad:
        raise NotAllowed(f"{what} gave a tensor that requires grad: gradients must be computed by hand")
    if t.layout != torch.strided or t.is_nested or t.device.type != "cpu" or t.is_quantized:
        kind = "nested" if t.is_nested else "quantized" if t.is_quantized else str(t.layout).replace("torch.", "")
        raise NotAllowed(f"{what} gave a {kind} tensor on {t.device.type}: only dense tensors on the CPU "
                         "are allowed in an answer")
    return t


def checked(value, what, depth=0):
    """value if it is something an answer may hold (plain data, a plain CPU tensor, a numpy
    array of numbers, a tuple or list of those), else NotAllowed naming `what`."""
    kind = type(value)
    if _is_complex(value):
        _complex()
    if kind in PLAIN or isinstance(value, np.dtype) or isinstance(value, np.generic) and not isinstance(value, np.object_):
        return value
    if isinstance(value, torch.Tensor):
        return _tensor_ok(value, what)
    if kind is np.ndarray:
        if value.dtype.kind not in "biuf":
            raise NotAllowed(f"{what} gave a numpy array of {value.dtype} (only numbers are allowed in an answer)")
        return value
    if isinstance(value, (tuple, list)) and depth < 4:
        for x in value:
            if type(x) not in PLAIN:
                checked(x, what, depth + 1)
        return value
    if kind is torch.no_grad:
        return value
    if kind is dict and depth < 4:
        for x in value.values():
            checked(x, what, depth + 1)
        return value
    raise NotAllowed(f"{what} gave a {_named(value)}, which is not allowed in an answer")


# the detect.Watch of the replay running now (set by the watch itself, as a context): it sees
# numpy's array arguments, Python's arithmetic and element reads; None outside a replay
WATCH = contextvars.ContextVar("ninja_watch", default=None)


def _wrap(fn, what, owner=None):
    """fn, refusing requires_grad and checking what it returns (and showing numpy arrays and
    sequences of numbers to the finite-difference watch, which sees torch's operations on its own)."""
    def call(*args, **kwargs):
        watch = WATCH.get()
        if watch is not None:
            watch.arguments(args if owner is None else (owner, *args), what)
        if kwargs.get("requires_grad"):
            raise NotAllowed(f"`{what}(requires_grad=True)` is not allowed in an answer: gradients must be computed by hand")
        return checked(fn(*args, **kwargs), what)
    call.ninja_wraps = what
    return call


class NumpyType:
    """numpy's scalar type (np.float64, np.int64, ...) as an answer holds it: a dtype wherever
    numpy takes one (`x.astype(np.float64)`, `dtype=np.float64`, `x.dtype == np.float64`: it
    has the `dtype` numpy reads), and, called, numpy's own call wrapped like every function
    (the watch sees its arguments, its result is checked). Nothing else of the class is reachable."""

    def __init__(self, kind, what):
        self.dtype, self.call = np.dtype(kind), _wrap(kind, what)

    def __call__(self, *args, **kwargs):
        return self.call(*args, **kwargs)

    def __eq__(self, other):
        try:
            return self.dtype == (other.dtype if isinstance(other, NumpyType) else np.dtype(other))
        except (TypeError, ValueError):
            return False

    def __hash__(self):
        return hash(self.dtype)


_module_cache = {}


def _answer_class(cls):
    return isinstance(cls, type) and cls.__module__ == "answer"


def _own_attribute(obj, name):
    """Whether `name` is something the answer itself defined on its own object or class."""
    cls = obj if isinstance(obj, type) else type(obj)
    if not _answer_class(cls):
        return False
    if not isinstance(obj, type) and name in getattr(obj, "__dict__", {}):
        return True
    return any(name in vars(c) for c in cls.__mro__ if _answer_class(c))


def _getattr(obj, name, *default):
    """obj.name if the allowlist has it for this kind of object, else NotAllowed naming it."""
    if not isinstance(name, str):
        raise NotAllowed("an attribute name must be a string")
    if reserved(name):
        raise NotAllowed(f"`.{name}` ({_named(obj)}) is not allowed in an answer")
    if isinstance(obj, types.ModuleType):
        entry = MODULES.get(obj)
        if entry is None:
            raise NotAllowed(f"module {obj.__name__} is not allowed in an answer")
        modname, allowed = entry
        if name not in allowed:
            raise NotAllowed(f"`{modname}.{name}` is not allowed in an answer" + _autograd_hint(name))
        key = (modname, name)
        if key not in _module_cache:
            value = getattr(obj, name)
            if isinstance(value, types.ModuleType):
                _module_cache[key] = value  # one of MODULES: its attributes go through _getattr too
            elif isinstance(value, type) and issubclass(value, np.generic):
                _module_cache[key] = NumpyType(value, f"{modname}.{name}")
            elif callable(value) and type(value) not in PLAIN:
                _module_cache[key] = _wrap(value, f"{modname}.{name}")
            else:
                _module_cache[key] = checked(value, f"{modname}.{name}")
        return _module_cache[key]
    if isinstance(obj, torch.Tensor):
        allowed, what = TENSOR, "Tensor"
    elif type(obj) is np.ndarray or isinstance(obj, np.generic):
        allowed, what = NDARRAY, "ndarray"
    elif isinstance(obj, tuple) and type(obj).__module__ == "torch.return_types":
        allowed, what = RETURN_TYPES, type(obj).__name__
    elif type(obj) in PYTHON:
        allowed, what = PYTHON[type(obj)], type(obj).__name__
    elif isinstance(obj, BaseException) and not isinstance(obj, type):
        allowed, what = {"args"}, type(obj).__name__
    elif _own_attribute(obj, name):
        return getattr(obj, name)
    else:
        raise NotAllowed(f"`.{name}` of a {_named(obj)} is not allowed in an answer" + _autograd_hint(name))
    if name not in allowed:
        raise NotAllowed(f"`{what}.{name}` is not allowed in an answer" + _autograd_hint(name))
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default:
            return default[0]
        raise
    if callable(value) and not isinstance(value, (torch.Tensor, np.ndarray)):
        return _wrap(value, f"{what}.{name}", obj if type(obj) is np.ndarray else None)
    return checked(value, f"{what}.{name}")


AUTOGRAD = {"grad", "backward", "requires_grad", "requires_grad_", "retain_grad", "grad_fn", "autograd", "func",
            "enable_grad", "set_grad_enabled", "inference_mode", "Parameter", "overrides", "functorch"}


def _autograd_hint(name):
    return ": gradients must be computed by hand" if name in AUTOGRAD else ""


def _hasattr(obj, name):
    try:
        _getattr(obj, name)
        return True
    except Exception:
        return False


def _write(obj):
    """The object of an item or attribute assignment (or `del`), if an answer may change it:
    tensors, numpy arrays, lists, dicts and sets, and instances of the answer's own classes;
    never a module, a function, a class or anything else the grader owns."""
    kind = type(obj)
    if kind in (torch.Tensor, np.ndarray, list, dict, set, bytearray) or (
            _answer_class(kind) and not isinstance(obj, type)):
        return obj
    raise NotAllowed(f"changing {_named(obj)} is not allowed in an answer (only your own tensors, arrays, "
                     "lists, dicts and objects)")


def _setattr(obj, name, value):
    if not isinstance(name, str) or reserved(name):
        raise NotAllowed(f"setting `.{name}` is not allowed in an answer")
    setattr(_write(obj), name, value)


def _delattr(obj, name):
    if not isinstance(name, str) or reserved(name):
        raise NotAllowed(f"deleting `.{name}` is not allowed in an answer")
    delattr(_write(obj), name)


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    """import of an allowed module: the module itself for `import m` (every attribute access
    on it goes through _getattr), a namespace of _getattr's values for `from m import a, b`."""
    if level != 0 or name not in ALLOWED_IMPORTS:
        raise NotAllowed(f"`import {name}` is not allowed in an answer (only torch, torch.nn.functional, math, numpy)")
    module = importlib.import_module(name)
    if not fromlist:
        return importlib.import_module(name.split(".")[0])
    return types.SimpleNamespace(**{f: _getattr(module, f) for f in fromlist})


INPLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
           "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "@=": operator.imatmul,
           "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor, "<<=": operator.ilshift,
           ">>=": operator.irshift}


def _inplacevar(op, x, y):
    watch = WATCH.get()
    if watch is not None and op in ("+=", "-=", "*=", "/="):
        watch.arith(op[0], x, y)
    out = INPLACE[op](x, y)
    if _is_complex(out):
        _complex()
    return out


BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


def _binop(op, a, b):
    """`a op b` (+ - * / **) in an answer: shown to the finite-difference watch first; a
    complex result is refused."""
    watch = WATCH.get()
    if watch is not None:
        watch.arith(op, a, b)
    out = BINARY[op](a, b)
    if _is_complex(out):
        _complex()
    return out


def _pow(*args):
    out = pow(*args)
    if _is_complex(out):
        _complex()
    return out


def _getiter(obj):
    """`for x in obj` and comprehensions in an answer: the watch sees what is looped over."""
    watch = WATCH.get()
    if watch is not None:
        watch.element(obj)
    return iter(obj)


def _getitem(obj, key):
    """`obj[key]` in an answer: the watch sees lists, tuples and arrays read by element."""
    watch = WATCH.get()
    if watch is not None and type(obj) in (list, tuple, np.ndarray):
        watch.element(obj)
    return obj[key]


def _reading(fn):
    """A builtin that reads its arguments as sequences (sum, max, ...): the watch sees them."""
    def call(*args, **kwargs):
        watch = WATCH.get()
        if watch is not None:
            for a in args[:2]:
                watch.element(a)
        return fn(*args, **kwargs)
    call.ninja_wraps = fn.__name__
    return call


READING = ("sum", "max", "min", "sorted", "any", "all", "map", "zip", "enumerate", "filter", "reversed")


def _noop_print(*args, **kwargs):
    pass


class _Printed:
    """RestrictedPython's `print` (`_print_(_getattr_)._call_print(...)`): what an answer
    prints goes nowhere (nothing printed on a case leaves the replay); `printed` is ''."""

    def __init__(self, getattr_=None):
        pass

    def _call_print(self, *args, **kwargs):
        pass

    def __call__(self):
        return ""


def builtins_dict():
    b = {k: getattr(builtins, k) for k in BUILTINS}
    b.update({k: _reading(b[k]) for k in READING}, pow=_pow)
    b.update({"None": None, "True": True, "False": False})
    b.update(math=math, __build_class__=builtins.__build_class__,
             __import__=_import, getattr=_getattr, hasattr=_hasattr, setattr=_setattr, delattr=_delattr,
             print=_noop_print)
    return b


def _apply(f, *args, **kwargs):
    return f(*args, **kwargs)


def globals_for(ns):
    """The names restricted code needs to run, added to namespace ns."""
    ns.update(__builtins__=builtins_dict(), _getattr_=_getattr, _getitem_=_getitem,
              _write_=_write, _getiter_=_getiter, _binop_=_binop, _complex_=_complex, _print_=_Printed,
              _iter_unpack_sequence_=guarded_iter_unpack_sequence,
              _unpack_sequence_=guarded_unpack_sequence, _inplacevar_=_inplacevar,
              _apply_=_apply, __name__="answer", __metaclass__=type)
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
        target = copy.deepcopy(node.target)  # its own nodes: RestrictedPython rewrites them in place
        load = ast.copy_location(type(target)(**{**{f: getattr(target, f) for f in target._fields},
                                                 "ctx": ast.Load()}), node)
        return [ast.copy_location(ast.Assign([ast.Name(tmp, ast.Store())], load), node),
                ast.copy_location(ast.AugAssign(ast.Name(tmp, ast.Store()), node.op, node.value), node),
                ast.copy_location(ast.Assign([node.target], ast.Name(tmp, ast.Load())), node)]


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's checks, and `a + b`, `a - b`, `a * b`, `a / b`, `a ** b` as calls of
    `_binop_` (which the answer cannot name: RestrictedPython refuses names starting with _),
    so the finite-difference watch sees the answer's arithmetic on Python numbers; a complex
    literal (`1j`) becomes a call that refuses it."""
    OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}

    def check_name(self, node, name, allow_magic_methods=False):
        """A name beginning with `_` is the answer's own unless it is reserved() (RestrictedPython
        itself refuses every such name but `_`)."""
        if name is None or not name.startswith("_"):
            return super().check_name(node, name, allow_magic_methods)
        if reserved(name) and not (allow_magic_methods and name in ALLOWED_FUNC_NAMES and node.col_offset != 0):
            self.error(node, f'"{name}" is {RESERVED}')

    def visit_Attribute(self, node):
        """`a._b`, rewritten as RestrictedPython rewrites `a.b` (`_getattr_(a, '_b')`, or
        `_write_(a)._b = v`): whether it is allowed is decided at run time by the object, as
        for every attribute (an answer's own objects only). Reserved ones are refused here."""
        if not node.attr.startswith("_"):
            return super().visit_Attribute(node)
        if reserved(node.attr):
            self.error(node, f'".{node.attr}" is {RESERVED}')
            return node
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            call = ast.Call(ast.Name("_getattr_", ast.Load()), [node.value, ast.Constant(node.attr)], [])
            return ast.fix_missing_locations(ast.copy_location(call, node))
        write = ast.Call(ast.Name("_write_", ast.Load()), [node.value], [])
        node.value = ast.fix_missing_locations(ast.copy_location(write, node.value))
        return node

    def visit_Constant(self, node):
        node = super().visit_Constant(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, complex):  # 1j: refused when run
            name = ast.copy_location(ast.Name("_complex_", ast.Load()), node)
            return ast.copy_location(ast.Call(func=name, args=[], keywords=[]), node)
        return node

    def visit_BinOp(self, node):
        node = self.node_contents_visit(node)
        op = self.OPS.get(type(node.op))
        if op is None:
            return node
        name, sign = ast.copy_location(ast.Name("_binop_", ast.Load()), node), ast.copy_location(ast.Constant(op), node)
        return ast.copy_location(ast.Call(func=name, args=[sign, node.left, node.right], keywords=[]), node)


def compile_answer(source, filename):
    """RestrictedPython's code object for one statement's source; SyntaxError with its reasons."""
    tree = ast.fix_missing_locations(_AugItems().visit(ast.parse(source)))
    return compile_restricted(tree, filename, "exec", policy=_Policy)


def why(error):
    """RestrictedPython's compile errors, as one line."""
    found = error.args[0] if error.args and isinstance(error.args[0], tuple) else (error.msg,)
    return "not allowed in an answer: " + "; ".join(str(f) for f in found)[:300]
