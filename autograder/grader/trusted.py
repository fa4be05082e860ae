"""The trusted score: an nbgrader preprocessor that replaces every graded test cell's result
with a score computed outside the learner's kernel.

After nbgrader has executed the notebook (whose outputs the learner's code could forge), it
reads the answer cells from the notebook, replays them in a sandboxed process (see
replay_server.py), judges the returned tensors here (verdicts.py), and writes each test cell's output
anew: the verdict as text and the points as the cell's result, which nbgrader records as
partial credit. Registered in nbgrader_config.py after Execute.
"""
from concurrent.futures import ThreadPoolExecutor

from nbgrader.preprocessors import NbGraderPreprocessor
from nbformat.v4 import new_output

from ..exercises import EXERCISES, course_setting
from ..hidden import answer_sources
from ..verdict import VERDICT
from .execute import SandboxedExecute  # noqa: F401 (its home was here: nbgrader_config.py, tests)
from .verdicts import (GraderBroken, exercise_of, learner_answers, preflight,  # noqa: F401 (and tests')
                       score_rows, trusted_verdicts, trusted_verdicts_many)

_read_ahead_thread = None  # TrustedScores.read_ahead's one thread


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
        One thread for the process, so its sandboxed fork server lives on (replay_server.py)."""
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
                cell.outputs = graded_outputs(v, meta["points"], cell.get("execution_count"))
        return nb, resources


def graded_outputs(v, points, execution_count=None):
    """A graded test cell's outputs for verdict v: its text, then as the cell's result the
    points (what nbgrader records, of the cell's `points`) and the verdict as data."""
    return [new_output("stream", name="stdout", text=v.summary() + "\n"),
            new_output("execute_result", data={"text/plain": repr(float(points) * v.points / v.max_points),
                                               VERDICT: v.data(points)}, execution_count=execution_count)]
