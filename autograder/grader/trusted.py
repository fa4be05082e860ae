"""The trusted score: an nbgrader preprocessor that replaces every graded test cell's result
with a score computed outside the learner's kernel.

After nbgrader has executed the notebook (whose outputs the learner's code could forge), it
reads the answer cells from the notebook, replays them in a sandboxed process (see
sandbox.py), judges the returned tensors here, and writes each test cell's output anew: the
verdict as text and the points as the cell's result, which nbgrader records as partial credit.
Registered in nbgrader_config.py after Execute.
"""
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from nbformat.v4 import new_output

from .. import score
from . import sandbox
from ..exercises import EXERCISES, PRACTICE, course_setting
from ..hidden import answer_sources
from .execute import SandboxedExecute  # noqa: F401 (its home was here: nbgrader_config.py, tests)
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
        v.message = (f"GRADER ERROR: the grader failed on this exercise ({type(error).__name__}), "
                     "not your answer; it was not judged: tell your instructor")
    return verdicts


def score_rows(student, submitted, release, setting, points=None):
    """[(student, exercise, item, score, points, verdict)] for one learner's submission folder,
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
                rows.append((student, ex, v.name, most * v.points / v.max_points, most, verdict))
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
    """{exercise: (collector, errors)} for jobs {exercise: (job, cases)}, via sandbox.run_many.
    An exercise whose child fails (a crash, its CPU time or memory) costs only its own
    points (run_many says so in its errors); if the server fails as a whole (the wall time),
    the exercises are replayed apart, each then costing only its own."""
    if not jobs:
        return {}
    collectors = {ex: score.Collector(ex, cases, setting) for ex, (_, cases) in jobs.items()}
    try:
        errors = sandbox.run_many({ex: job for ex, (job, _) in jobs.items()}, collectors)
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


_read_ahead_thread = None  # TrustedScores.read_ahead's one thread


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
        errors = sandbox.run_many({"ex2": job}, {"ex2": collector})["ex2"]
    except sandbox.SandboxError as e:
        return f"the sandboxed replay does not run: {e}"
    if not all(isinstance(collector.answer(c.name, "true", "dlogits"), torch.Tensor) for c in cases):
        return "the sandboxed replay runs but returns no answer: " + (next(iter(errors.values()), "") or "no error given")
    return ""


class TrustedScores(NbGraderPreprocessor):
    """Rewrite the outputs of the graded test cells with the trusted scores.

    nbgrader grades a learner's notebooks one after the other. At the first, all of that
    learner's answers (the others read from their submission folder) are replayed in one
    sandboxed process, which then serves the other notebooks: Python and torch start once
    per learner, not once per notebook. The results are kept by the exact answer sources,
    so a notebook whose answers differ from those read ahead is replayed on its own."""

    _verdicts = {}  # (exercise, answer sources) -> {name: Verdict}, for the current learner
    _ahead = (None, None)  # ((student, assignment), Future of a read-ahead's _verdicts, or None)

    def trusted(self, exercise, sources, resources):
        key = (exercise, tuple(sources))
        learner, ahead = TrustedScores._ahead
        nbgr = resources.get("nbgrader", {})
        if ahead is not None and learner == (nbgr.get("student"), nbgr.get("assignment")):
            TrustedScores._ahead = (learner, None)  # used once
            try:
                TrustedScores._verdicts = ahead.result()
            except Exception:  # the read-ahead failed: replayed here, where a failure is reported
                pass
        if key not in TrustedScores._verdicts:
            setting = self.setting()
            answers = {**self.learner_answers(resources), exercise: sources}
            results = trusted_verdicts_many(answers, setting)
            TrustedScores._verdicts = {(ex, tuple(answers[ex])): results[ex] for ex in answers}
        return TrustedScores._verdicts[key]

    def coursedir(self):
        app = getattr(getattr(self, "parent", None), "parent", None)
        return getattr(app, "coursedir", None)

    _settings = {}  # course root -> (Setting, why the grader cannot run or '')

    def setting(self):
        """The course's hidden cases (from its secret), once the sandbox has shown it works."""
        coursedir = self.coursedir()
        if coursedir is None:
            raise GraderBroken("the trusted grader runs under nbgrader autograde only (no course folder)")
        root = str(coursedir.root)
        if root not in TrustedScores._settings:
            setting = course_setting(root)
            TrustedScores._settings[root] = (setting, preflight(setting))
        setting, broken = TrustedScores._settings[root]
        if broken:
            raise GraderBroken(broken)
        return setting

    def read_ahead(self, resources):
        """At the first exercise notebook of a learner, before its kernel runs: replay all of the
        learner's answers (read from the submission folder) in a thread of their own, so that
        the replay runs while the kernel does; trusted() takes the result when it is ready.
        One thread for the process, so its sandboxed fork server lives on (sandbox.py)."""
        global _read_ahead_thread
        nbgr = resources.get("nbgrader", {})
        learner = (nbgr.get("student"), nbgr.get("assignment"))
        if None in learner or TrustedScores._ahead[0] == learner or self.coursedir() is None:
            return
        if exercise_of(resources.get("unique_key", "")) is None:
            return
        if _read_ahead_thread is None:
            _read_ahead_thread = ThreadPoolExecutor(1, thread_name_prefix="ninja-read-ahead")

        def replay():
            answers = self.learner_answers(resources)
            results = trusted_verdicts_many(answers, self.setting())
            return {(ex, tuple(answers[ex])): results[ex] for ex in answers}
        TrustedScores._ahead = (learner, _read_ahead_thread.submit(replay))

    def learner_answers(self, resources):
        """All the learner's answers, from the submission folder ({} if it cannot be found)."""
        coursedir = self.coursedir()
        nbgr = resources.get("nbgrader", {})
        if coursedir is None or not {"student", "assignment"} <= nbgr.keys():
            return {}
        submitted = coursedir.format_path(coursedir.submitted_directory, nbgr["student"], nbgr["assignment"])
        release = coursedir.format_path(coursedir.release_directory, ".", nbgr["assignment"])
        try:
            return learner_answers(submitted, release)
        except Exception as e:  # the other notebooks are then replayed in their own turn
            self.log.warning("could not read ahead the other notebooks of %s: %s", nbgr["student"], e)
            return {}

    def preprocess(self, nb, resources):
        exercise = exercise_of(resources.get("unique_key", ""))
        if exercise is None:
            return nb, resources
        verdicts = self.trusted(exercise, answer_sources(nb, EXERCISES[exercise].answer_cells), resources)
        broken = next((v for v in verdicts.values() if v.grader_error), None)
        if broken is not None:  # nbgrader then records nothing for this learner and says why
            raise GraderBroken(f"{exercise}: {broken.message}")
        by_test = {v.test_id: v for v in verdicts.values()}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            v = by_test.get(meta.get("grade_id"))
            if cell.cell_type == "code" and meta.get("grade") and v is not None:
                cell.outputs = [
                    new_output("stream", name="stdout", text=v.summary() + "\n"),
                    new_output("execute_result",
                               data={"text/plain": repr(float(meta["points"]) * v.points / v.max_points)},
                               execution_count=cell.get("execution_count")),
                ]
        return nb, resources
