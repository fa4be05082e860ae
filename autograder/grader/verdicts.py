"""The trusted verdicts of one learner's answers: replayed in the sandboxed fork server
(replay_server.py), judged here, outside the learner's kernel; and the scores-only rows built on them.

Used by nbgrader's preprocessor (trusted.TrustedScores) and by the class runner's scores-only
jobs, which import this module without nbgrader: a scores-only worker never loads it.
"""
import re
from pathlib import Path

import nbformat

from .. import score
from . import replay_server, sandbox
from ..exercises import EXERCISES, PRACTICE
from ..hidden import answer_sources
from ..verdict import GRADER_ERROR
from .repair import read_any, rebuild


def trusted_verdicts(exercise, sources, setting=PRACTICE):
    """{name: Verdict} for answer sources [(cell_id, source)], judged outside the learner's kernel."""
    return trusted_verdicts_many({exercise: sources}, setting)[exercise]


def trusted_verdicts_many(answers, setting=PRACTICE):
    """{exercise: {name: Verdict}} for answers {exercise: [(cell_id, source)]} of one learner,
    replayed by one sandboxed fork server, each exercise in a fresh child. A statement that
    uses something banned is not run: it costs the gradients it defines, with a message
    saying why. Nothing a learner submits makes this raise: a failure of the replay, the
    wire, the validation or the comparison costs that learner's exercise, with a message;
    a failure of the grader's own (building the cases, scoring) is reported in every verdict
    of the exercise as the grader's (Verdict.grader_error), never as a silent 0."""
    jobs, out = {}, {}
    for ex, sources in answers.items():
        try:
            cases = score.make_cases(ex, setting)
            jobs[ex] = (score.build_job(ex, score.statements(sources), cases, setting), cases)
        except Exception as e:
            out[ex] = grader_failed(ex, e)
    try:
        results = _replay(jobs, setting)
    except Exception as e:  # the grader's side of the replay itself broke
        return {**out, **{ex: grader_failed(ex, e) for ex in jobs}}
    for ex, (collector, errors) in results.items():
        try:
            out[ex] = score.score(ex, collector, errors)
        except Exception as e:
            out[ex] = grader_failed(ex, e)
    return {ex: out[ex] for ex in answers}


def grader_failed(exercise, error):
    """Verdicts for an exercise the grader itself could not judge: 0 points for now, each
    saying that the grader failed (not the learner), for the instructor to grade again."""
    verdicts = {k: score.Verdict(exercise, k, p) for k, p in {**EXERCISES[exercise].grads,
                                                           **EXERCISES[exercise].extra_tests}.items()}
    for v in verdicts.values():
        v.grader_error = True
        v.judged(GRADER_ERROR, f"GRADER ERROR: the grader failed on this exercise ({type(error).__name__}), "
                 "not your answer; it was not judged: tell your instructor")
    return verdicts


def score_rows(student, submitted, release, setting, points=None):
    """[(student, exercise, item, score, points, status, mistake, verdict)] (Verdict.data's
    status and mistake, the text the feedback shows) for one learner's submission folder,
    without nbgrader; points {grade id: points} from the assignment's metadata (default:
    autograder/exercises.py); setting: the hidden cases (exercises.course_setting)."""
    rows = []
    for ex, verdicts in trusted_verdicts_many(learner_answers(submitted, release), setting).items():
        broken = next((v for v in verdicts.values() if v.grader_error), None)
        if broken is not None:  # never a silent 0: the class runner reports the grader's failure
            raise GraderBroken(f"{ex}: {broken.message}")
        for v in verdicts.values():
            most = v.max_points if points is None else points.get(v.test_id)
            if most is not None:  # an item without a graded cell is not graded
                verdict = re.sub(r" \([\d.]+/[\d.]+\)", "", v.summary(), count=1)  # the points are beside it
                rows.append((student, ex, v.name, most * v.points / v.max_points, most, v.status, v.mistake, verdict))
    return rows


def learner_answers(submitted, release):
    """{exercise: [(cell_id, source)]} from one learner's submission folder: each notebook read
    robustly and rebuilt on the release notebook, as autograde does; a missing one gives []."""
    answers = {}
    for key, ex in EXERCISES.items():
        template = Path(release) / ex.notebook
        if not template.exists():
            continue
        path = Path(submitted) / ex.notebook
        learner, _ = read_any(path) if path.exists() else (None, "")
        nb, _ = rebuild(learner, nbformat.read(template, as_version=4))
        answers[key] = answer_sources(nb, ex.answer_cells) if learner is not None else []
    return answers


def _replay(jobs, setting):
    """{exercise: (collector, errors)} for jobs {exercise: (job, cases)}, via replay_server.run_many.
    An exercise whose child fails (a crash, its CPU time or memory) costs only its own
    points (run_many says so in its errors); if the server fails as a whole (the wall time),
    the exercises are replayed apart, each then costing only its own."""
    if not jobs:
        return {}
    collectors = {ex: score.Collector(ex, cases, setting, job["statements"]) for ex, (job, cases) in jobs.items()}
    try:
        errors = replay_server.run_many({ex: job for ex, (job, _) in jobs.items()}, collectors)
        return {ex: (collectors[ex], errors[ex]) for ex in jobs}
    except sandbox.SandboxError as e:
        if len(jobs) == 1:
            (ex, (_, cases)), = jobs.items()
            return {ex: (score.Collector(ex, cases, setting), {"process": str(e)})}
    return {ex: _replay({ex: job}, setting)[ex] for ex, job in jobs.items()}


def exercise_of(notebook_name):
    for key, ex in EXERCISES.items():
        if ex.notebook == notebook_name + ".ipynb":
            return key
    return None


class GraderBroken(RuntimeError):
    """The grader itself cannot work: no score may be recorded."""


def preflight(setting=PRACTICE):
    """'' if a known answer goes through the sandbox and comes back as a tensor on every case,
    else what is broken (bubblewrap missing or failing, the package not importable, ...)."""
    import torch
    missing = sandbox.bwrap_missing()
    if missing:
        return missing
    cases = score.make_cases("ex2", setting)
    collector = score.Collector("ex2", cases, setting)
    job = score.build_job("ex2", score.statements([("ex2_dlogits", "dlogits = torch.ones_like(logits)")]), cases, setting)
    try:
        errors = replay_server.run_many({"ex2": job}, {"ex2": collector})["ex2"]
    except sandbox.SandboxError as e:
        return f"the sandboxed replay does not run: {e}"
    if not all(isinstance(collector.answer(c.name, "true", "dlogits"), torch.Tensor) for c in cases):
        return "the sandboxed replay runs but returns no answer: " + (next(iter(errors.values()), "") or "no error given")
    return ""
