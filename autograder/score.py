"""Judge a learner's answers: one verdict and its points per graded item.

The grader builds a job (plain data: the answers' statements and each case's inputs, see
`build_job`); the replay runs it and reports every answer to a `Collector`, here in the
grader's process. The collector records the answer, then hands back that gradient's value
for the rest of the run: autograd's, so that each step is judged on its own formula given
true upstreams; in a second run of Exercise 1, a random one for the upstream of the steps
whose true gradient is zero up to rounding (`dlogit_maxes`, `db1`), random ones for every
gradient, so a constant zero cannot pass. Each answer is then compared with autograd's gradient (or, in the random run,
with the step's vector-Jacobian product of the random upstream).
"""
import re
from dataclasses import dataclass, field

import torch

from . import data, model
from .compare import compare
from .diagnose import Reason, diagnose
from .exercises import EXERCISES, PRACTICE, case_inputs, sgd_run, training_batches, training_params
from .replay import NUMERICAL, PUBLIC
from .statements import forbidden, misspelled, split
from .verdict import ERROR, NOT_ATTEMPTED, REFUSED, RIGHT, WRONG  # (a verdict as data: verdict.py)

# Scoring tolerances (looser than the lecture's display tolerance: float32 noise of correct
# answers on other batches must pass; every typical mistake is off by far more).
GRADE_RTOL = 1e-4
GRADE_ATOL = 1e-7
TRAIN_RTOL = 1e-5  # Exercise 4: max |learner - twin| / max |twin| after the short run (right: ~3e-7; Bessel n: 4e-4)
TRAIN_LR = 0.1
MAX_ELEMENTS = 10**7  # an answer tensor larger than this is refused unread
BANNED = ("reads ", "uses ")  # how statements.forbidden's reasons start


@dataclass
class Verdict:
    """The score of one graded item and the comparisons behind it."""
    exercise: str
    name: str
    max_points: float
    ok: bool = False
    message: str = ""
    rows: list = field(default_factory=list)   # (case, "own step" | "random upstream", Row)
    grader_error: bool = False                 # not judged: the grader failed, not the learner
    status: str = NOT_ATTEMPTED                # one of verdict.STATUSES, set with the message
    mistake: str = ""                          # the named mistake's code (diagnose.MISCONCEPTIONS)

    @property
    def points(self):
        return self.max_points if self.ok else 0.0

    def judged(self, status, message, ok=False, mistake=""):
        """Set the verdict: its status, its message, and the code of the mistake it names
        (diagnose.MISCONCEPTIONS), given by whoever wrote the message."""
        self.ok, self.status, self.message = ok, status, message
        self.mistake = mistake if status in (WRONG, ERROR, REFUSED) else ""

    def data(self, points=None):
        """The verdict as data, stored with the graded cell: `points` the cell's (default: the
        exercise's); what every consumer reads, never the message's words."""
        most = self.max_points if points is None else float(points)
        return {"exercise": self.exercise, "item": self.name, "status": self.status, "mistake": self.mistake,
                "score": most * self.points / self.max_points, "points": most, "message": self.message}

    @property
    def test_id(self):
        return EXERCISES[self.exercise].test_id(self.name)

    def summary(self):
        mark = "ok" if self.ok else "WRONG"
        label = f"d{self.name}" if self.name in EXERCISES[self.exercise].grads else self.name
        return f"{label}: {mark} ({self.points:g}/{self.max_points:g})" + (
            f": {self.message}" if self.message else "")


@dataclass
class Case:
    """One input the answers are replayed on, with autograd's gradients (grader side only)."""
    name: str
    n: int
    Xb: torch.Tensor
    Yb: torch.Tensor
    values: dict = None      # Exercises 1-3: the forward pass's tensors, parameters included
    params: list = None      # Exercise 4: [C, W1, b1, W2, b2, bngain, bnbias]
    truth: dict = None       # autograd's gradient of each graded item, by tensor name
    random: dict = None      # Exercise 1: a random stand-in for every gradient (the second run)
    inner: dict = None       # Exercise 4: autograd's gradient of every step inside backward, as
                             # "d" + the lecture's name (and dbnmean), parameters included


def make_cases(exercise, setting=PRACTICE):
    """The cases of an exercise, with autograd's answers: computed in the grader's process."""
    ex, cases = EXERCISES[exercise], []
    for i, case in enumerate(setting.cases):
        params, Xb, Yb = case_inputs(case, ex.n_hidden)
        c = Case(case[0], Xb.shape[0], Xb, Yb)
        if ex.kind == "function":
            c.params = list(params.values())
            c.truth = dict(zip(model.PARAM_NAMES, model.autograd_step_grads(c.params, Xb, Yb)))
            inner, c.values = model.reference_grads(params, Xb, Yb)
            c.inner = {"d" + k: t for k, t in {**inner, "bnmean": inner["bnmeani"], **c.truth}.items()}
        else:
            c.truth, c.values = model.reference_grads(params, Xb, Yb)
            g = torch.Generator().manual_seed(7919 + i)
            c.random = {k: torch.randn(t.shape, generator=g) * t.abs().mean().clamp_min(1e-3)
                        for k, t in c.truth.items()}
        cases.append(c)
    return cases


def statements(sources, banned=forbidden):
    """[statement dicts] of answer sources [(cell_id, source)]; banned(source) -> why or ''
    marks a statement that may not run (it then costs only what it defines). Each dict is
    plain data (it goes to the replay as it is); "refused" holds the code of the mistake its
    refusal names (a Reason's), for the grader's side only."""
    out = []
    for cell, src in sources:
        for st in split(cell, src):
            if not st.error and banned:
                st.error = banned(st.source)
            out.append({**st.to_dict(), "error": str(st.error), "refused": getattr(st.error, "code", "")})
    return out


def forward_cost(ex, values):
    """The cost of the exercise's forward pass on a case's tensors, in the cost rule's units
    (detect.price): each forward tensor read and written once, its matrix products m*n*k."""
    names = ex.forward or [k for k in values if k not in model.PARAM_NAMES and k != "loss"]
    elements = sum(values[k].numel() for k in names)
    return 2 * elements + sum(values[a].shape[0] * values[a].shape[1] * values[b].shape[1] for a, b in ex.products)


def build_job(exercise, stmts, cases, setting=PRACTICE):
    """What the replay needs, as plain data (tensors, numbers, strings): no answer in it."""
    ex = EXERCISES[exercise]
    constants = dict(n_hidden=ex.n_hidden, n_embd=model.N_EMBD, block_size=data.BLOCK_SIZE,
                     vocab_size=data.vocab_size)
    if ex.kind == "function":
        batches = training_batches(seed=setting.train_batch_seed)
        single = {k: model.consumers(k) for k in [*model.GRAD_NAMES, *model.PARAM_NAMES]}
        return dict(kind="backward", statements=stmts, param_names=model.PARAM_NAMES, cost_bound=ex.cost_bound,
                    upstream={"dbnmean": "dbndiff", **{"d" + k: "d" + up[0] for k, up in single.items()
                                                       if len(up) == 1 and up[0] != "loss"}},
                    constants={**constants, "batch_size": 32, "n": 32, "itos": list(data.itos)},
                    cases=[dict(name=c.name, params=c.params, Xb=c.Xb, Yb=c.Yb, forward_cost=forward_cost(ex, c.values))
                           for c in cases],
                    training=dict(params=training_params(setting, ex.n_hidden), Xb=[b[0] for b in batches],
                                  Yb=[b[1] for b in batches], lr=TRAIN_LR))
    job_cases = []
    for c in cases:
        ns = {k: v for k, v in c.values.items() if k != "loss"}
        ns.update(Xb=c.Xb, Yb=c.Yb, n=c.n, batch_size=c.n)
        ns.update({name: c.truth[k] for name, k in ex.given.items()})  # (Exercise 3: dhpreact, into BatchNorm)
        job_cases.append(dict(name=c.name, ns=ns, runs=["true", "random"] if ex.random_upstream else ["true"],
                              forward_cost=forward_cost(ex, c.values)))
    return dict(kind="steps", statements=stmts, answered=["d" + k for k in ex.grads], cost_bound=ex.cost_bound,
                constants=constants, cases=job_cases)


UNJUDGED = "refused: "  # a valid() answer that is a description: why the tensor cannot be judged


def describe(value):
    """'' if value is a tensor the grader can judge (dense, strided, on the CPU, a real float
    dtype, a plain torch.Tensor), else what it is instead."""
    try:
        if type(value) is not torch.Tensor:
            return f"a {type(value).__name__}, not a plain tensor"
        if value.is_nested:
            return "a nested tensor"
        if value.layout != torch.strided:
            return f"a {str(value.layout).replace('torch.', '')} tensor, not a dense one"
        if value.device.type != "cpu":
            return f"a tensor on {value.device.type}, not on the CPU"
        if value.is_quantized:
            return "a quantized tensor"
        if not value.is_floating_point():
            return f"a {str(value.dtype).replace('torch.', '')} tensor, not a float one"
        if value.dim() > 8 or value.numel() > MAX_ELEMENTS:
            return "an oversized tensor"
        return ""
    except Exception:
        return "an unreadable tensor"


def valid(value):
    """An answer as the grader keeps it: a dense float tensor on the CPU (a copy), a type
    name, UNJUDGED + why for any other tensor, or None. Whatever came back from learner code
    is checked before any use; nothing in it can raise here."""
    if isinstance(value, str):
        return value[:80]
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        return None
    why = describe(value)
    if why:
        return UNJUDGED + why
    try:
        return value.detach().clone(memory_format=torch.contiguous_format)
    except Exception:
        return UNJUDGED + "an unreadable tensor"


class Collector:
    """Records the answers the replay reports; gives back each gradient's value for the rest of
    the run. The first report of an answer is the one kept."""

    def __init__(self, exercise, cases, setting=PRACTICE, statements=()):
        self.exercise, self.cases, self.setting = exercise, {c.name: c for c in cases}, setting
        self.statements = list(statements)  # the job's, as the grader parsed them (build_job)
        self.answers = {}
        self.steps = {}  # Exercise 4: case -> [Step] of the body of backward, in order

    def give(self, case, run, name, value):
        ex = EXERCISES[self.exercise]
        if ex.kind == "function" and run.startswith("body/"):
            return self._step(case, run, name, value)
        key = (case, run, name)
        if key not in self.answers:
            try:
                self.answers[key] = valid(value)
            except Exception:
                self.answers[key] = UNJUDGED + "an unreadable tensor"
        c = self.cases.get(case)
        if not ex.true_upstream or c is None or not isinstance(name, str):
            return None
        k = name[1:]
        if run == "random":
            return c.random[k].clone() if k in c.random else None
        return c.truth[k].clone() if k in c.truth else None

    def _step(self, case, run, name, value):
        """Record one variable of the replayed body of backward; give back the true gradient
        it stands for (by its name, its place in the returned list, or else its value), or None."""
        c, steps = self.cases.get(case), self.steps.setdefault(case, [])
        line, meant = (run.split("/") + ["", ""])[1:3]
        if c is None or len(steps) > 1000 or not line.isdigit():
            return None
        answer = valid(value)
        key = meant if meant in c.inner else name if name in c.inner else next(
            (k for k, t in c.inner.items() if isinstance(answer, torch.Tensor) and t.abs().max() > 1e-6
             and _judge(_compare(k, answer, t))), None)
        if isinstance(answer, torch.Tensor) and (key is not None or not any(  # a forward value is no gradient
                _judge(_compare(k, answer, t)) for k, t in c.values.items() if t.numel() > 1)):
            # one that stands for no gradient is kept too (key ""): a wrong one of the learner's names
            steps.append(Step(int(line), name, key or "", answer,
                              key is not None and _judge(_compare(key, answer, c.inner[key]))))
        return c.inner[key].clone() if key is not None else None

    def answer(self, case, run, name):
        return self.answers.get((case, run, name))


@dataclass
class Step:
    """One gradient the body of an Exercise 4 backward writes, judged on the true upstream."""
    line: int
    name: str       # the learner's variable
    key: str        # the gradient it stands for: "d" + the lecture's name
    answer: object  # its value (valid's)
    ok: bool


def _judge(row):
    return row.shape is not None and not row.note.startswith("wrong shape") and bool(
        row.maxdiff <= GRADE_ATOL + GRADE_RTOL * row.ref_max)


def _compare(name, dt, t):
    try:
        row = compare(name, dt if isinstance(dt, torch.Tensor) else None, t)
    except Exception as e:  # an answer valid() let through but the comparison cannot take
        from .compare import Row
        row = Row(name, None, tuple(t.shape), note=f"could not be compared ({type(e).__name__})")
    row.ref_max = t.abs().max().item() if t.numel() else 0.0
    return row


def score(exercise, collector, errors):
    """{name: Verdict} for every graded item of the exercise, from the collector's answers and
    the replay's errors {"<case>/<run>/<name>": message}."""
    ex = EXERCISES[exercise]
    if errors.get("process"):  # it ran every case, hidden ones too: only the grader's words
        errors = {**errors, "process": ended(errors["process"])}
    verdicts = {k: Verdict(exercise, k, p) for k, p in {**ex.grads, **ex.extra_tests}.items()}
    function = ex.kind == "function"
    step = "step" if function else "true"
    for k in ex.grads:
        v, failed = verdicts[k], []
        label = k if function else "d" + k
        for c in collector.cases.values():
            answer = collector.answer(c.name, step, label)
            runs = [("own step", answer, [c.truth[k]])]
            if k in ex.random_upstream:
                runs.append(("random upstream", collector.answer(c.name, "random", label),
                             _random_expected(k, ex.random_upstream[k], c)))
            for kind, dt, expected in runs:
                rows = [_compare(k, dt, e) for e in expected]
                row = next((r for r in rows if _judge(r)), rows[0])
                v.rows.append((c.name, kind, row))
                if not _judge(row):
                    failed.append((c, kind, dt, expected[0]))
        numerical = next((e for key, e in errors.items() if key.startswith("numerical/")
                          and key.split("/")[-1] == label), "")
        if numerical:
            v.judged(REFUSED, numerical, mistake="numerical")
            continue
        note = next((r.note for _, _, r in v.rows if r.note and not r.note.startswith("wrong shape")), "")
        errs = {c: errors.get(f"{c}/{step}/{'backward' if function else label}", "") for c in collector.cases}
        if errors.get("process"):
            errs = dict.fromkeys(errs, errors["process"])
        if failed:
            status, message, mistake = _message(k, failed, errs, ex, collector)
            v.judged(status, message, mistake=mistake)
        else:
            v.judged(RIGHT, note, ok=True)
    if "training" in ex.extra_tests:
        _score_training(collector, errors, verdicts["training"])
    return verdicts


def _random_expected(k, up, c):
    """What a step whose true gradient is zero up to rounding must give in the random run,
    where every gradient the learner answered was replaced by a random one: its vector-Jacobian
    product of its upstream's random value, or (if the learner computed the upstream again
    under another name) of the upstream's own step applied to its random upstreams (`up`)."""
    direct = model.local_grad(k, c.values, c.random, c.Xb, c.Yb)
    again = model.local_grad(up, c.values, c.random, c.Xb, c.Yb)
    return [direct, model.local_grad(k, c.values, {**c.random, up: again}, c.Xb, c.Yb)]


def _message(k, failed, errors, ex, collector=None):
    """(status, why, mistake) of a wrong gradient: its own error if it is missing, right on the
    notebook's batch only, not following a random upstream, or the likely mistake where it
    first failed (in Exercise 4, at the first wrong step inside backward). errors: {case: its
    error or ''}; the status is ERROR where the learner's code raised or gave no valid tensor,
    REFUSED where it was not run, NOT_ATTEMPTED where nothing assigns the gradient; mistake is
    the named mistake's code (diagnose.MISCONCEPTIONS) or ''."""
    c, kind, dt, expected = failed[0]
    hidden = c.name != PUBLIC  # then nothing of the learner's answer is quoted: only the grader's words
    if isinstance(dt, str) and dt.startswith(UNJUDGED):
        return ERROR, ("not judged on a hidden case" if hidden else f"not judged: {dt[len(UNJUDGED):]}") + \
            " (an answer must be a dense float tensor on the CPU)", ""
    names = {f[0].name for f in failed}
    error = errors.get(c.name, "")
    said = f" ({error})" if error else ""
    located = _located(k, c, collector) if ex.kind == "function" and collector is not None else ""
    if kind == "own step" and PUBLIC not in names and c.n != 32:  # also where it raised there
        text = "right on the notebook's batch of 32 but not on other batch sizes"
        raised = [f[0] for f in failed if errors.get(f[0].name)]
        if raised:  # in the grader's words only (score.redacted): a hidden case's error could quote the case
            return WRONG, f"{text}: is the batch size hard-coded? ({errors[raised[0].name]})", "raises_hidden"
        return WRONG, f"{text}: is the batch size hard-coded?" + (f" {located}" if located else ""), "hard_coded"
    if not isinstance(dt, torch.Tensor):
        what = dt if isinstance(dt, str) and not hidden else None
        if what is None and error.startswith(BANNED):  # the statement was not run: say why
            return REFUSED, "refused: " + error, _refusal(error, collector)
        tried = ERROR if error or dt is not None else NOT_ATTEMPTED  # it raised, or gave a non-tensor
        if hidden:
            return tried, error or ("not defined" if dt is None else "not a tensor") + " on a hidden case", ""
        if what is None and not error:  # it ran, and left None there
            error = (f"backward returned no tensor in d{k}'s place ({list(ex.grads).index(k) + 1} of "
                     f"{len(ex.grads)})" if ex.kind == "function" else f"d{k} is None after your last line that assigns it")
        typo = _typo(k, ex, collector) if dt is None else ""
        return tried, ("not defined" if what is None else f"not a tensor ({what})") + (f": {error}" if error else ""), typo
    why = located or diagnose(dt, expected, c.n, bessel=_bessel(k, c, ex), figures=not hidden,
                              **(_known_mistakes(k, c, c.truth) if ex.named_mistakes and kind == "own step" else {}))
    if kind == "random upstream":
        up = ex.random_upstream[k]
        return WRONG, (f"right where autograd's d{k} is zero up to rounding, but it does not follow from d{up}: "
                       f"given a random d{up} it is wrong (a constant?)" + said), "zero_step"
    where = "on the notebook's batch" if c.name == "notebook" else f"on a hidden batch of {c.n}"
    return WRONG, f"does not match {where}" + (f": {why}" if why else "") + said, getattr(why, "code", "")


def _refusal(error, collector):
    """The code of the reason a statement was refused (statements.forbidden's, set when the
    grader parsed it): the replay echoes that reason, which is looked up, not read."""
    return next((s["refused"] for s in getattr(collector, "statements", ())
                 if s["error"] and s["error"] == error and s.get("refused")), "")


def _typo(k, ex, collector):
    """'typo' if no statement assigns dk and one assigns a name of the learner's close to it
    (the replay's rule, statements.misspelled, on the statements as the grader parsed them);
    else ''."""
    if ex.kind != "steps" or collector is None:
        return ""
    written = {n for s in collector.statements for n in s["writes"]}
    own = written - {"d" + g for g in ex.grads}
    return "typo" if "d" + k not in written and misspelled("d" + k, own) else ""


def _sizes(sizes):
    return " and ".join(map(str, sizes))


def _known_mistakes(k, c, upstream):
    """diagnose's arguments naming the mistakes its rules cannot see in the value alone, for
    the step of the lecture's tensor k given the gradients `upstream` (by the lecture's names):
    one path of a tensor used twice, the rows of C that the batch repeats, dlogits's logits."""
    used_by = model.consumers(k)
    out = {"alternatives": [
        (model.local_grad(k, c.values, upstream, c.Xb, c.Yb, through=via),
         Reason(f"only the path through {via}: {k} is used twice (by {' and '.join(used_by)}), so its gradient "
                f"is the sum of both paths' (the one through {' and '.join(x for x in used_by if x != via)} is "
                "missing)", "second_path"))
        for via in used_by if len(used_by) > 1]}
    if k == "C":
        seen = torch.bincount(c.Xb.reshape(-1), minlength=c.values["C"].shape[0])
        out["repeated"] = (seen > 1).nonzero().flatten().tolist()
    if k == "logits":
        out["logits"] = c.values["logits"]
    if k == "hpreact":  # tanh's local derivative, 1 - h**2 of its output h, written otherwise
        h, x, dh = c.values["h"], c.values["hpreact"], upstream["h"]
        out["alternatives"] += [(t * dh, Reason(f"tanh's derivative is 1 - h**2, of its output h; yours is {what}", "tanh"))
                                for t, what in [(1 - h, "1 - h"), (1 - x**2, "1 - hpreact**2 (of its input)"),
                                                (h**2, "h**2"), (1 + h**2, "1 + h**2"), (-(h**2), "-h**2")]]
    return out


def _located(k, c, collector):
    """Exercise 4: where the gradient of parameter k goes wrong inside backward, from the body's
    replay on case c: its own line, if wrong on the true upstream (with the likely mistake);
    else the first wrong step it depends on, with its line; '' if the body was not replayed."""
    steps = collector.steps.get(c.name, [])
    own = [s for s in steps if s.key == "d" + k]
    if not own:
        return ""
    own = own[-1]
    after = model.downstream(k) | {"bnmean"}
    shapes = {tuple(t.shape) for name, t in c.inner.items() if name[1:] in after}
    unknown = [s for s in steps if not s.key and s.line < own.line and tuple(s.answer.shape) in shapes]
    if not own.ok:  # its own line, unless it reads a wrong gradient under a name of the learner's
        why = _step_reason(own, c)
        return Reason(f"line {own.line} ({own.name}) is wrong even given the true upstream gradients" + (
            f": {why}" if why else "") + (f"; unless a variable it reads is wrong: {_listed(unknown)} "
                                          "matches none of the lecture's gradients" if unknown else ""),
            getattr(why, "code", ""))
    first = next((s for s in steps if s.key and not s.ok and s.key[1:] in after), None)
    if first is None:
        return Reason(f"your line {own.line} ({own.name}) is right given the true upstream gradients, so a "
                      f"gradient it depends on is wrong under a name of your own" +
                      (f": {_listed(unknown)} matches none of the lecture's gradients" if unknown else ""))
    why, before = _step_reason(first, c), [s for s in unknown if s.line < first.line]
    return Reason(f"your line {own.line} ({own.name}) is right given the true upstream gradients; d{k} is "
                  f"wrong only because {first.name} (line {first.line}) is wrong" + (f": {why}" if why else "") +
                  (f" (or a variable it reads: {_listed(before)} matches none of the lecture's gradients)"
                   if before else ""))


def _listed(steps):
    return " or ".join(f"{s.name} (line {s.line})" for s in steps[-3:])


def _step_reason(step, c):
    """The likely mistake of one step inside backward (see diagnose)."""
    k = "bnmeani" if step.key == "dbnmean" else step.key[1:]
    upstream = {name[1:]: t for name, t in c.inner.items()}
    if not isinstance(step.answer, torch.Tensor):
        return ""
    extra = _known_mistakes(k, c, upstream) if k in model.GRAD_NAMES else {}
    return diagnose(step.answer, c.inner[step.key], c.n, **extra)


def _bessel(k, c, ex):
    """Exercise 3's answer without Bessel's correction (n, not n-1, in the variance), to name
    that mistake when it is the one made."""
    if k != ex.bessel:
        return None
    v, n, dh = c.values, c.n, c.truth["hpreact"]
    return v["bngain"] * v["bnvar_inv"] / n * (n * dh - dh.sum(0) - v["bnraw"] * (dh * v["bnraw"]).sum(0))


def _score_training(collector, errors, v):
    if errors.get("numerical/training/final/training"):
        v.judged(REFUSED, errors["numerical/training/final/training"], mistake="numerical")
        return
    trained = [collector.answer("training", "final", k) for k in model.PARAM_NAMES]
    if any(not isinstance(t, torch.Tensor) for t in trained):
        # the notebook's own batch says why backward failed there (a hidden run only that it did)
        error = errors.get("process") or errors.get(f"{PUBLIC}/step/backward") or errors.get("training/final/backward", "")
        v.judged(ERROR if error else NOT_ATTEMPTED,
                 "the short training run did not complete with your backward pass" + (f": {error}" if error else ""))
        return
    setting = collector.setting
    twin = sgd_run(lambda ps, Xb, Yb: model.autograd_step_grads(ps, Xb, Yb),
                   training_params(setting), training_batches(seed=setting.train_batch_seed), TRAIN_LR)
    if any(a.numel() != b.numel() for a, b in zip(trained, twin)):
        v.judged(WRONG, "the short training run returned parameters of the wrong size")
        return
    worst = max(((a.reshape(b.shape).to(b.dtype) - b).abs().max() / b.abs().max()).item()
                for a, b in zip(trained, twin))
    v.judged(RIGHT if worst <= TRAIN_RTOL else WRONG,
             f"parameters after the short run differ from autograd's twin by {worst:.1e} "
             f"(relative; at most {TRAIN_RTOL:.0e} passes)", ok=worst <= TRAIN_RTOL)


# What the grader says of an error on a hidden case, by the replay's kind of it (replay.KINDS):
# its own words, never the learner's (an exception's name, text or line, chosen by the learner's
# code, could spell out a hidden input or batch size). Anything else a replay sends is an error.
HIDDEN = {"error": "raised an error on a hidden case",
          "time": "ran out of time on a hidden case: stopped after the time limit",
          "tensor": "gave no tensor on a hidden case",
          "sizes": "backward did not return 7 gradients of the parameters' sizes on a hidden case"}
HIDDEN_NUMERICAL = f"{NUMERICAL} (on a hidden case)"


def ended(why):
    """How the process running an answer ended, as a verdict says it: the grader's sentence
    without what the process itself chose (its exit code, a signal's number, the last line it
    wrote after ': '), any of which could carry a hidden input."""
    why = re.sub(r"by signal -?\d+", "by a signal", re.sub(r"with code -?\d+", "with an error code", why))
    return why.split(": ", 1)[0]


def redacted(errors):
    """The replay's errors {"<case>/<run>/<name>": message} as the verdicts may quote them:
    the notebook's own batch's as they are (they leak nothing hidden), a hidden case's as
    HIDDEN's sentence for its kind, a numerical answer on a hidden case as HIDDEN_NUMERICAL.
    The process's end is the grader's message (score() keeps only its words: ended())."""
    out = {}
    for key, message in errors.items():
        parts = key.split("/")
        case = parts[1] if parts[0] == "numerical" and len(parts) > 1 else parts[0]
        if case == PUBLIC or key == "process":  # (score() says the process's end in its words)
            out[key] = message
        elif parts[0] == "numerical":
            out[key] = HIDDEN_NUMERICAL
        else:
            out[key] = HIDDEN.get(message, HIDDEN["error"])
    return out


def grade(exercise, sources, banned=forbidden, setting=PRACTICE):
    """{name: Verdict} for answer sources [(cell_id, source)], replayed in this process (the
    learner's own kernel, tests). The trusted score replays in a sandbox: see trusted.py."""
    from . import replay
    cases = make_cases(exercise, setting)
    job = build_job(exercise, statements(sources, banned), cases, setting)
    collector = Collector(exercise, cases, setting, job["statements"])
    errors = replay.run_job(job, collector.give)
    return score(exercise, collector, redacted(errors))  # as the trusted grade words them
