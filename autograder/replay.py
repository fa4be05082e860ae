"""Run a learner's answer statements on the exercise's cases and collect what they define.

This is the only module that executes learner code: in the learner's own kernel (the check
cells and the in-kernel score) as plain Python, and in the trusted grader's sandboxed child
(grader/child.py), which passes Rules of RestrictedPython's language (grader/restricted.py).
Every top-level statement runs on its own: one that raises, or that was refused before the
replay (a syntax error, a banned construct), costs the gradients it defines and nothing else.
A gradient is answered at the learner's last write of it: the replay records its value
there, then puts in the namespace the value the grader gives for it (autograd's, or a random
one), so that every later step reads a known upstream and is judged on its own formula.
"""
import contextlib
import os
import re
import signal
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .statements import Statement, misspelled

CONTAINERS = (list, dict, set, np.ndarray)  # a numerical statement may have filled them in place
INERT = (int, bool, str, type(None), range)  # ... and what carries no number of a gradient
STATEMENT_SECONDS = 10  # one statement of an answer (or one call of backward) at most
WATCH_EVERY = 10  # Exercise 4's short training run: the steps the finite-difference watch sees


class PlainPython:
    """The language of the learner's own kernel: plain Python (nothing to protect there)."""

    @staticmethod
    def compile_answer(source, filename):
        return compile(source, filename, "exec", dont_inherit=True)

    @staticmethod
    def globals_for(ns):
        return ns

    @staticmethod
    def why(error):
        return f"SyntaxError: {error.msg}"


@dataclass(frozen=True)
class Rules:
    """How answers run, passed to every function here that runs one: the language
    (compile_answer, globals_for, why) and one statement's time limit in seconds (one call
    of backward's too). The trusted child passes its own (RestrictedPython, the sandbox's)."""
    language: object = PlainPython
    seconds: float = STATEMENT_SECONDS


PLAIN = Rules()  # the learner's own kernel


class StatementTimeout(Exception):
    pass


PUBLIC = "notebook"  # the notebook's own batch: the learner's, its errors are quoted as they are


class Failure(str):
    """An error message of learner code, with the grader's category of it (`kind`, one of
    KINDS), decided by the exception's real type: on a hidden case, only the kind leaves the
    replay (the message, its line, the exception's name are the learner's to choose)."""
    kind = "error"


KINDS = ("error", "time", "tensor", "sizes")  # raised; the time limit; no tensor; backward's gradients' sizes


def failure(text, e=None, kind=None):
    f = Failure(text)
    f.kind = kind or ("time" if type(e) is StatementTimeout else "error")
    return f


@contextlib.contextmanager
def time_limit(seconds):
    """Raise StatementTimeout in the block after `seconds` of wall time (main thread only)."""
    def stop(signum, frame):
        raise StatementTimeout(f"stopped after {seconds} s")
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def silenced():
    """Discard what learner code prints (however much), and its warnings."""
    with open(os.devnull, "w") as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def execute(st, ns, rules=PLAIN):
    """Run one statement in ns (in rules' language, within its time): '' or its error, a
    Failure 'Type: message (line N)' whose kind is the grader's category of it."""
    if st.error:
        return st.error
    with silenced(), time_limit(rules.seconds):
        try:
            code = rules.language.compile_answer(st.source, f"<{st.cell}>")
        except SyntaxError as e:
            return rules.language.why(e)
        except (ValueError, RecursionError, MemoryError) as e:
            return f"{type(e).__name__}: cannot compile this statement"
        try:
            exec(code, ns)
            return ""
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: one statement, one error
            tb, line = e.__traceback__, st.line
            while tb is not None:  # the innermost line of the learner's own cell
                if tb.tb_frame.f_code.co_filename == f"<{st.cell}>":
                    line = tb.tb_lineno
                tb = tb.tb_next
            return failure(f"{type(e).__name__}: {_text(e)} (line {line})", e)


def _text(e):
    """An exception's text, at most 300 characters ('' if str() of it raises)."""
    try:
        return str(e)[:300]
    except BaseException:
        return ""


NUMERICAL = "a numerical gradient (the loss evaluated on perturbed inputs) is not a hand-derived one"


def run_statements(statements, ns, answered=(), give=None, watch=None, rules=PLAIN):
    """Execute the statements in ns, in order, each on its own.

    answered: the variables the grader judges (e.g. "dprobs"). Each is recorded at the last
    statement that may write it; one the learner never writes is recorded (as missing) just
    before a statement first reads it. After recording, give(name, answer) may return a tensor
    that the namespace holds under that name from then on (restored after every statement, so
    an alias changed in place cannot alter it); the learner's code never sees it earlier.
    watch (the trusted child's finite-difference detector, or None): told of the namespace's
    tensors and of each value given; a statement during which it trips, or that reads a name
    such a statement wrote (or a list, dict, set or array it read: it may have filled it in
    place; not a whole number, a string or a flag), marks the judged variables it writes as
    numerical. The grader's own work here (recording, handing out values) is not watched.
    Returns ({name: tensor, or the type name of a non-tensor, or None}, {name: error}, [errors
    of statements that define no judged variable], {name: why numerical})."""
    last = {}
    for i, st in enumerate(statements):
        for name in st.writes & set(answered):
            last[name] = i
    answers, errors, other, given, unrun = {}, {}, [], {}, {}
    numerical, tainted = {}, set()
    if watch is not None:
        watch.run(ns)

    written = {n for st in statements for n in st.writes} - set(answered)
    quiet = watch.quiet if watch is not None else contextlib.nullcontext  # the grader's own work

    def record(name):
        with quiet():
            _record(name)

    def _record(name):
        if name not in last:
            close = misspelled(name, written)
            errors.setdefault(name, f"no line of yours assigns {name}" + (
                f" (you wrote {close}: a typo?)" if close else ""))
        v = ns.get(name)
        answers[name] = v.detach().clone() if isinstance(v, torch.Tensor) else (
            None if v is None else type(v).__name__)
        t = give(name, answers[name]) if give else None
        if isinstance(t, torch.Tensor):
            given[name] = t
            ns[name] = t.clone()
            if watch is not None:
                watch.source(t)
            if isinstance(v, torch.Tensor):  # the learner's other names for the same tensor
                for other in written:          # (`dlogprobs = dlp`, then `dprobs = dlp / probs`)
                    if ns.get(other) is v:
                        ns[other] = ns[name]

    for i, st in enumerate(statements):
        for name in answered:
            if name not in answers and name not in last and name in st.reads:
                record(name)
        if watch is not None:
            watch.begin()
        error = execute(st, ns, rules)
        if watch is not None:
            why = watch.tripped() or (f"it uses {sorted(st.reads & tainted)[0]}" if st.reads & tainted else "")
            if why:  # what it wrote, and the containers it read (it may have filled them: g.append(...));
                # not whole numbers, strings or flags (a loop's index carries no gradient)
                tainted |= {k for k in st.writes - set(answered) if k not in ns or type(ns[k]) not in INERT}
                tainted |= {k for k in st.reads - set(answered) if type(ns.get(k)) in CONTAINERS}
                for name in st.writes & set(answered):
                    numerical.setdefault(name, f"{NUMERICAL} ({why}, line {st.line})")
        if error:
            missing = re.match(r"NameError: name '(\w+)' is not defined", error)
            if missing and missing.group(1) in unrun:  # say why that name is missing
                error += f"; {missing.group(1)} was not defined: {unrun[missing.group(1)]}"
            for name in st.writes:
                unrun.setdefault(name, error)
            mine = [n for n in answered if n in st.writes]
            for name in mine:
                errors.setdefault(name, error)
            if not mine:
                other.append(error)
        for name in answered:
            if last.get(name) == i:
                record(name)
        with quiet():
            for name, t in given.items():
                ns[name] = t.clone()
    for name in answered:
        if name not in answers:
            record(name)
    return answers, errors, other, numerical


def replay_exercise(statements, ns, answered, give=None, watch=None, rules=PLAIN):
    """{name: answer}, {name: error} of one run of Exercises 1 to 3's answers (a numerical
    answer's error is its NUMERICAL message, under "numerical:<name>")."""
    answers, errors, other, numerical = run_statements([Statement.from_dict(s) for s in statements], ns,
                                                       answered, give, watch, rules)
    errors.update({f"numerical:{k}": v for k, v in numerical.items()})
    for name, v in answers.items():
        if isinstance(v, str):  # a non-tensor: say what it is
            errors[name] = failure(f"{name} is a {v}, not a tensor", kind="tensor")
            answers[name] = None
    if other:
        errors["*"] = other[0]
    return answers, errors


def define_backward(statements, ns, rules=PLAIN):
    """Run Exercise 4's answer cell in ns (the notebook's names): its `backward`, or None, and errors."""
    _, errors, other, _ = run_statements([Statement.from_dict(s) for s in statements], ns, ["backward"], rules=rules)
    fn = ns.get("backward")
    if not callable(fn):
        return None, errors.get("backward") or (other[0] if other else "the answer cell does not define a function `backward`")
    return fn, ""


def call_backward(fn, ns, params, Xb, Yb, forward, names, watch=None, rules=PLAIN):
    """The learner's gradients for one step: a list of 7 (None where missing), or an error
    (NUMERICAL's if the watch tripped during the call).
    The notebook's globals are set to this step's parameters and batch first, so a backward
    that reads them (instead of its arguments) sees what the notebook would give it."""
    ns.update(dict(zip(names, params)), parameters=list(params), Xb=Xb, Yb=Yb)
    if watch is not None:
        watch.run({"Xb": Xb, "Yb": Yb, **dict(zip(names, params))})
    with watch.quiet() if watch is not None else contextlib.nullcontext():
        _, cache = forward(Xb, Yb, list(params))
    if watch is not None:
        for v in cache.values():
            watch.source(v)
        watch.begin()
    with silenced(), time_limit(rules.seconds):
        try:
            grads = fn(Xb, Yb, list(params), {k: v.clone() for k, v in cache.items()})
        except BaseException as e:
            return None, failure(f"{type(e).__name__}: {_text(e)}", e)
    if watch is not None and watch.tripped():
        return None, f"{NUMERICAL} ({watch.tripped()})"
    grads = list(grads) if isinstance(grads, (list, tuple)) else []
    grads += [None] * (len(names) - len(grads))
    with watch.quiet() if watch is not None else contextlib.nullcontext():
        return [g.detach().clone() if isinstance(g, torch.Tensor) else None for g in grads[:len(names)]], ""


def run_job(job, give, watch=None, rules=PLAIN):
    """Replay one exercise's answers on every case of `job` (plain data, built by the grader,
    see score.build_job), reporting through give(case, run, name, value), which records the
    value and returns what the namespace holds under that name from then on (or None).
    watch: see run_statements (the trusted child's; None in the learner's kernel); rules: see Rules.
    Returns {"<case>/<run>/<name>": error}, a numerical answer's under
    "numerical/<case>/<run>/<name>"; a hidden case's error is only its kind (_hidden_kinds)."""
    import torch.nn.functional as F
    errors = {}
    base = rules.language.globals_for({"torch": torch, "F": F, **job["constants"]})
    if job["kind"] == "steps":  # Exercises 1 to 3
        for case in job["cases"]:
            for run in case["runs"]:
                if watch is not None:
                    watch.price(case.get("forward_cost"), job.get("cost_bound"))
                with watch.quiet() if watch is not None else contextlib.nullcontext():
                    ns = {**base, **{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case["ns"].items()}}
                _, errs = replay_exercise(job["statements"], ns, job["answered"],
                                          lambda name, value: give(case["name"], run, name, value), watch, rules)
                errors.update({(f"numerical/{case['name']}/{run}/{k[10:]}" if k.startswith("numerical:") else
                                f"{case['name']}/{run}/{k}"): v for k, v in errs.items()})
        return _hidden_kinds(errors)
    # Exercise 4: the answer cell defines backward, called on each case and for a short run
    from .forward import forward_ex4
    names = job["param_names"]
    ns = {**base, "forward": forward_ex4}
    fn, error = define_backward(job["statements"], ns, rules)
    for case in job["cases"]:
        if watch is not None:
            watch.price(case.get("forward_cost"), job.get("cost_bound"))
        grads, err = call_backward(fn, ns, case["params"], case["Xb"], case["Yb"], forward_ex4, names,
                                   watch, rules) if fn else (None, error)
        for name, g in zip(names, grads or [None] * len(names)):
            give(case["name"], "step", name, g)
        if err:
            errors[f"{case['name']}/step/backward"] = err
        if err.startswith(NUMERICAL):
            errors.update({f"numerical/{case['name']}/step/{name}": err for name in names})
    train = job["training"]
    if watch is not None:  # its batches are the notebook's size: the notebook case's forward pass
        watch.price(next((c.get("forward_cost") for c in job["cases"] if c["name"] == PUBLIC), None),
                    job.get("cost_bound"))
    with watch.quiet() if watch is not None else contextlib.nullcontext():
        params = [p.clone() for p in train["params"]]
    for step, (Xb, Yb) in enumerate(zip(train["Xb"], train["Yb"]) if fn else []):
        # the watch sees every WATCH_EVERY-th step (to save time): a backward pass right on the
        # steps it sees is right on all of them, numerical or not, and the steps it does not
        # see gain a numerical backward nothing it did not have
        watched = watch if step % WATCH_EVERY == 0 else None
        with watch.quiet() if watch is not None and watched is None else contextlib.nullcontext():
            grads, err = call_backward(fn, ns, params, Xb, Yb, forward_ex4, names, watched, rules)
        if err.startswith(NUMERICAL):
            errors["numerical/training/final/training"] = err
        with watch.quiet() if watch is not None else contextlib.nullcontext():  # the grader's own checks
            sizes = err or any(g is None or g.numel() != p.numel() for g, p in zip(grads, params))
        if sizes:
            errors["training/final/backward"] = err or failure(
                "backward did not return 7 gradients of the parameters' sizes", kind="sizes")
            return _hidden_kinds(errors)
        with torch.no_grad(), watch.quiet() if watch is not None else contextlib.nullcontext():
            for p, g in zip(params, grads):
                p -= train["lr"] * g.reshape(p.shape)
    for name, p in zip(names, params if fn else [None] * len(names)):
        give("training", "final", name, p)
    if not fn:
        errors["training/final/backward"] = error
    for case in job["cases"] if fn else []:  # last: what it reports is never an answer
        with watch.quiet() if watch is not None else contextlib.nullcontext():
            try:
                replay_backward_steps(job["statements"], ns, case["params"], case["Xb"], case["Yb"], forward_ex4,
                                      names, lambda run, name, value: give(case["name"], "body/" + run, name, value),
                                      job.get("upstream"), rules)
            except Exception:  # it only says where a wrong gradient goes wrong: never costs a point
                pass
    return _hidden_kinds(errors)


def _hidden_kinds(errors):
    """errors {"<case>/<run>/<name>": message}, where a hidden case's message (any case but
    PUBLIC, the training run's too) is only its kind (KINDS): what the grader may say of it.
    A numerical answer's message stays (the grader words a hidden one itself: score.redacted)."""
    return {key: message if key.split("/")[0] in (PUBLIC, "numerical") else getattr(message, "kind", "error")
            for key, message in errors.items()}


# Exercise 4, step by step: the body of the learner's backward function replayed statement by
# statement on the true upstream gradients, as Exercise 1's cells are (only to say which step
# is wrong: the points are those of the whole function's gradients, above).
RETURNED = "_returned"  # what a top-level `return x` of the body assigns in this replay


def backward_body(statements):
    """(argument names, [Statement], {variable: position in the returned list}) of the body of
    the answer's last top-level `def backward`: each top-level statement of the body on its
    own, with the cell's line numbers; `return x` becomes `_returned = x`; a docstring is
    left out. None if the answer defines no such function."""
    import ast
    import textwrap
    from .statements import reads, writes
    found = None
    for st in statements:
        if st.error or "backward" not in st.writes:
            continue
        try:
            tree = ast.parse(st.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "backward"]
        if fn:
            found = st, fn[-1]
    if found is None:
        return None
    st, fn = found
    lines = st.source.splitlines()
    body, returned = [], {}
    for node in fn.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        text = textwrap.dedent("\n".join(lines[node.lineno - 1:node.end_lineno]))
        if isinstance(node, ast.Return):
            text = re.sub(r"^return\b", f"{RETURNED} =", text) if node.value is not None else "pass"
            if isinstance(node.value, (ast.List, ast.Tuple)):
                returned = {e.id: i for i, e in enumerate(node.value.elts) if isinstance(e, ast.Name)}
        source = "\n" * (node.lineno - 1) + text
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            body.append(Statement(st.cell, node.lineno, source, error=f"{type(e).__name__}: cannot replay this line"))
            continue
        body.append(Statement(st.cell, node.lineno, source, writes(tree), reads(tree)))
    return [a.arg for a in fn.args.args], body, returned


def stands_for(body, returned, names, upstream):
    """{variable: the gradient it stands for} of a body's variables with names of the learner's
    own: the returned list's places (`[gC, gW1, ...]`), and the one variable of the learner's
    that a lecture-named step reads where its one upstream gradient is meant (`dbngain =
    (bnraw * g).sum(0)` reads g for dhpreact); a variable claimed twice otherwise is left out.
    upstream: {"dX": "dY"} for each tensor X whose only consumer is Y."""
    found = {v: "d" + names[i] for v, i in returned.items() if i < len(names)}
    own = {n for st in body for n in st.writes} - set(upstream) - set(upstream.values()) - set(found)
    claims = {}
    for st in body:
        for target in st.writes & set(upstream):
            up, candidates = upstream[target], sorted(st.reads & own)
            if up not in st.reads and len(candidates) == 1:
                claims.setdefault(candidates[0], set()).add(up)
    return {**{v: ups.pop() for v, ups in claims.items() if len(ups) == 1}, **found}


def replay_backward_steps(statements, ns, params, Xb, Yb, forward, names, give, upstream=None, rules=PLAIN):
    """Run the body of backward on one case with every gradient it names given its true value
    once written, so that each step is judged on the true upstream. Each variable the body
    writes (a tensor) is reported as give(f"{line}/{gradient or ''}", name, value),
    the gradient being the one it stands for if its name is not the lecture's (see
    stands_for); give returns the value the namespace holds from then on (the true gradient
    it stands for, or None)."""
    found = backward_body([Statement.from_dict(s) for s in statements])
    if found is None:
        return
    args, body, returned = found
    _, cache = forward(Xb, Yb, list(params))
    local = {**ns, **dict(zip(names, params))}
    local.update(zip(args, [Xb, Yb, list(params), {k: v.clone() for k, v in cache.items()}]))
    inputs = set(args) | set(names) | set(cache)
    answered = sorted({n for st in body for n in st.writes} - inputs - {RETURNED})
    lines = {n: max((st.line for st in body if n in st.writes), default=0) for n in answered}
    meant = stands_for(body, returned, names, upstream or {})

    def reported(name, value):
        if not isinstance(value, torch.Tensor):
            return None
        hint = meant.get(name, "")
        return give(f"{lines[name]}/{hint}", name[:90], value)

    run_statements(body, local, answered, reported, rules=rules)
