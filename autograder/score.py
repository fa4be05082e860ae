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
from .diagnose import diagnose
from .exercises import EXERCISES, PRACTICE, case_inputs, sgd_run, training_batches, training_params
from .replay import NUMERICAL, PUBLIC
from .statements import forbidden, split

# Scoring tolerances (looser than the lecture's display tolerance: float32 noise of correct
# answers on other batches must pass; every typical mistake is off by far more).
GRADE_RTOL = 1e-4
GRADE_ATOL = 1e-7
TRAIN_RTOL = 1e-5  # Exercise 4: max |learner - twin| / max |twin| after the short run (right: ~3e-7; Bessel n: 4e-4)
TRAIN_LR = 0.1
# Steps whose true gradient is zero up to rounding -> the upstream made random to judge them.
ZERO_STEPS = {"logit_maxes": "norm_logits", "b1": "hprebn"}
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

    @property
    def points(self):
        return self.max_points if self.ok else 0.0

    @property
    def test_id(self):
        return EXERCISES[self.exercise].test_id(self.name)

    def summary(self):
        mark = "ok" if self.ok else "WRONG"
        label = f"d{self.name}" if self.name in EXERCISES[self.exercise].grads else self.name
        return f"{label}: {mark} ({self.points:g}/{self.max_points:g})" + (
            f": {self.message}" if self.message else "")


def reason(summary):
    """The reason in a verdict's text `dX: WRONG (0/1): why` (its first line; '' for a
    verdict without one); any other text is returned as it is."""
    first = summary.splitlines()[0] if summary else ""
    head, sep, why = first.partition("): ")
    if sep and re.fullmatch(r"\S+: (ok|WRONG) \([\d.]+/[\d.]+", head):
        return why
    return "" if re.fullmatch(r"\S+: (ok|WRONG) \([\d.]+/[\d.]+\)", first) else first


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


def make_cases(exercise, setting=PRACTICE):
    """The cases of an exercise, with autograd's answers: computed in the grader's process."""
    ex, cases = EXERCISES[exercise], []
    for i, case in enumerate(setting.cases):
        params, Xb, Yb = case_inputs(case, ex.n_hidden)
        c = Case(case[0], Xb.shape[0], Xb, Yb)
        if ex.key == "ex4":
            c.params = list(params.values())
            c.truth = dict(zip(model.PARAM_NAMES, model.autograd_step_grads(c.params, Xb, Yb)))
        else:
            c.truth, c.values = model.reference_grads(params, Xb, Yb)
            g = torch.Generator().manual_seed(7919 + i)
            c.random = {k: torch.randn(t.shape, generator=g) * t.abs().mean().clamp_min(1e-3)
                        for k, t in c.truth.items()}
        cases.append(c)
    return cases


def statements(sources, banned=forbidden):
    """[statement dicts] of answer sources [(cell_id, source)]; banned(source) -> why or ''
    marks a statement that may not run (it then costs only what it defines)."""
    out = []
    for cell, src in sources:
        for st in split(cell, src):
            if not st.error and banned:
                st.error = banned(st.source)
            out.append(st.to_dict())
    return out


def build_job(exercise, stmts, cases, setting=PRACTICE):
    """What the replay needs, as plain data (tensors, numbers, strings): no answer in it."""
    ex = EXERCISES[exercise]
    constants = dict(n_hidden=ex.n_hidden, n_embd=model.N_EMBD, block_size=data.BLOCK_SIZE,
                     vocab_size=data.vocab_size)
    if ex.key == "ex4":
        batches = training_batches(seed=setting.train_batch_seed)
        return dict(kind="backward", statements=stmts, param_names=model.PARAM_NAMES,
                    constants={**constants, "batch_size": 32, "n": 32, "itos": list(data.itos)},
                    cases=[dict(name=c.name, params=c.params, Xb=c.Xb, Yb=c.Yb) for c in cases],
                    training=dict(params=training_params(setting, ex.n_hidden), Xb=[b[0] for b in batches],
                                  Yb=[b[1] for b in batches], lr=TRAIN_LR))
    job_cases = []
    for c in cases:
        ns = {k: v for k, v in c.values.items() if k != "loss"}
        ns.update(Xb=c.Xb, Yb=c.Yb, n=c.n, batch_size=c.n)
        if ex.key == "ex3":
            ns["dhpreact"] = c.truth["hpreact"]  # given: the gradient flowing into BatchNorm
        job_cases.append(dict(name=c.name, ns=ns, runs=["true", "random"] if ex.key == "ex1" else ["true"]))
    return dict(kind="steps", statements=stmts, answered=["d" + k for k in ex.grads],
                constants=constants, cases=job_cases)


REFUSED = "refused: "  # a valid() answer that is a description: why the tensor cannot be judged


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
    name, REFUSED + why for any other tensor, or None. Whatever came back from learner code
    is checked before any use; nothing in it can raise here."""
    if isinstance(value, str):
        return value[:80]
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        return None
    why = describe(value)
    if why:
        return REFUSED + why
    try:
        return value.detach().clone(memory_format=torch.contiguous_format)
    except Exception:
        return REFUSED + "an unreadable tensor"


class Collector:
    """Records the answers the replay reports; gives back each gradient's value for the rest of
    the run. The first report of an answer is the one kept."""

    def __init__(self, exercise, cases, setting=PRACTICE):
        self.exercise, self.cases, self.setting = exercise, {c.name: c for c in cases}, setting
        self.answers = {}

    def give(self, case, run, name, value):
        key = (case, run, name)
        if key not in self.answers:
            try:
                self.answers[key] = valid(value)
            except Exception:
                self.answers[key] = REFUSED + "an unreadable tensor"
        c = self.cases.get(case)
        if self.exercise != "ex1" or c is None or not isinstance(name, str):
            return None
        k = name[1:]
        if run == "random":
            return c.random[k].clone() if k in c.random else None
        return c.truth[k].clone() if k in c.truth else None

    def answer(self, case, run, name):
        return self.answers.get((case, run, name))


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
    step = "step" if ex.key == "ex4" else "true"
    for k in ex.grads:
        v, failed = verdicts[k], []
        label = k if ex.key == "ex4" else "d" + k
        for c in collector.cases.values():
            answer = collector.answer(c.name, step, label)
            runs = [("own step", answer, [c.truth[k]])]
            if ex.key == "ex1" and k in ZERO_STEPS:
                runs.append(("random upstream", collector.answer(c.name, "random", label), _random_expected(k, c)))
            for kind, dt, expected in runs:
                rows = [_compare(k, dt, e) for e in expected]
                row = next((r for r in rows if _judge(r)), rows[0])
                v.rows.append((c.name, kind, row))
                if not _judge(row):
                    failed.append((c, kind, dt, expected[0]))
        numerical = next((e for key, e in errors.items() if key.startswith("numerical/")
                          and key.split("/")[-1] == label), "")
        v.ok = not failed and not numerical
        if numerical:
            v.message = numerical
            continue
        note = next((r.note for _, _, r in v.rows if r.note and not r.note.startswith("wrong shape")), "")
        errs = [errors.get(f"{c}/{step}/{label}") for c in collector.cases]
        error = errors.get("process") or next((e for e in errs if e), errors.get(f"notebook/{step}/backward", ""))
        v.message = _message(k, failed, error, ex) if failed else note
    if "training" in ex.extra_tests:
        _score_training(collector, errors, verdicts["training"])
    return verdicts


def _random_expected(k, c):
    """What a step whose true gradient is zero up to rounding must give in the random run,
    where every gradient the learner answered was replaced by a random one: its vector-Jacobian
    product of its upstream's random value, or (if the learner computed the upstream again
    under another name) of the upstream's own step applied to its random upstreams."""
    up = ZERO_STEPS[k]
    direct = model.local_grad(k, c.values, c.random, c.Xb, c.Yb)
    again = model.local_grad(up, c.values, c.random, c.Xb, c.Yb)
    return [direct, model.local_grad(k, c.values, {**c.random, up: again}, c.Xb, c.Yb)]


def _message(k, failed, error, ex):
    """Why a gradient is wrong: its own error if it is missing, right on the notebook's batch
    only, not following a random upstream, or the likely mistake where it first failed."""
    c, kind, dt, expected = failed[0]
    hidden = c.name != PUBLIC  # then nothing of the learner's answer is quoted: only the grader's words
    if isinstance(dt, str) and dt.startswith(REFUSED):
        return ("not judged on a hidden case" if hidden else f"not judged: {dt[len(REFUSED):]}") + \
            " (an answer must be a dense float tensor on the CPU)"
    names = {f[0].name for f in failed}
    said = f" ({error})" if error else ""
    if kind == "own step" and PUBLIC not in names and c.n != 32:  # also where it raised there
        return "right on the notebook's batch of 32 but not on other batch sizes: is the batch size hard-coded?" + said
    if not isinstance(dt, torch.Tensor):
        what = dt if isinstance(dt, str) and not hidden else None
        if what is None and error.startswith(BANNED):  # the statement was not run: say why
            return "refused: " + error
        if hidden:
            return error or ("not defined" if dt is None else "not a tensor") + " on a hidden case"
        return ("not defined" if what is None else f"not a tensor ({what})") + (f": {error}" if error else "")
    why = diagnose(dt, expected, c.n, bessel=_bessel(k, c, ex), figures=not hidden)
    if kind == "random upstream":
        up = ZERO_STEPS[k]
        return (f"right where autograd's d{k} is zero up to rounding, but it does not follow from d{up}: "
                f"given a random d{up} it is wrong (a constant?)" + said)
    where = "on the notebook's batch" if c.name == "notebook" else f"on a hidden batch of {c.n}"
    return f"does not match {where}" + (f": {why}" if why else "") + said


def _bessel(k, c, ex):
    """Exercise 3's answer without Bessel's correction (n, not n-1, in the variance), to name
    that mistake when it is the one made."""
    if ex.key != "ex3" or k != "hprebn":
        return None
    v, n, dh = c.values, c.n, c.truth["hpreact"]
    return v["bngain"] * v["bnvar_inv"] / n * (n * dh - dh.sum(0) - v["bnraw"] * (dh * v["bnraw"]).sum(0))


def _score_training(collector, errors, v):
    if errors.get("numerical/training/final/training"):
        v.message = errors["numerical/training/final/training"]
        return
    trained = [collector.answer("training", "final", k) for k in model.PARAM_NAMES]
    if any(not isinstance(t, torch.Tensor) for t in trained):
        # the notebook's own batch says why backward failed there (a hidden run only that it did)
        error = errors.get("process") or errors.get(f"{PUBLIC}/step/backward") or errors.get("training/final/backward", "")
        v.message = "the short training run did not complete with your backward pass" + (f": {error}" if error else "")
        return
    setting = collector.setting
    twin = sgd_run(lambda ps, Xb, Yb: model.autograd_step_grads(ps, Xb, Yb),
                   training_params(setting), training_batches(seed=setting.train_batch_seed), TRAIN_LR)
    if any(a.numel() != b.numel() for a, b in zip(trained, twin)):
        v.message = "the short training run returned parameters of the wrong size"
        return
    worst = max(((a.reshape(b.shape).to(b.dtype) - b).abs().max() / b.abs().max()).item()
                for a, b in zip(trained, twin))
    v.ok = worst <= TRAIN_RTOL
    v.message = (f"parameters after the short run differ from autograd's twin by {worst:.1e} "
                 f"(relative; at most {TRAIN_RTOL:.0e} passes)")


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
    collector = Collector(exercise, cases, setting)
    errors = replay.run_job(build_job(exercise, statements(sources, banned), cases, setting), collector.give)
    return score(exercise, collector, redacted(errors))  # as the trusted grade words them
