"""`nbgrader export` for the course (ExportApp.plugin_class in nbgrader_config.py). Every
exporter writes with the csv module (a name with a comma stays in its column), every text cell
inert (neutral.cell: a student id or a name that starts with `=` is not a formula, no control
character), the scores as numbers, and the figures of `standing`: nbgrader's scores less the
late penalty, as the class runner's table shows them.

- GradebookExport (the course's default): names, time handed in, days late, late penalty,
  total, a column per exercise (per_gradient: per graded item too);
- CanvasExport, MoodleExport: the gradebook import CSV of each LMS;
- NeutralCsvExport: nbgrader's own CSV columns.
"""
import csv

from nbgrader.api import MissingEntry
from nbgrader.plugins import CsvExportPlugin
from traitlets import Bool, Dict, Enum

from . import neutral
from .late import days_late

KEYS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
        "raw_score", "late_submission_penalty", "score", "max_score"]


class NeutralCsvExport(CsvExportPlugin):
    """nbgrader's CSV export, each cell through neutral.cell."""

    def export(self, gradebook):
        dest = self.to or "grades.csv"
        students = [str(s) for s in self.student]
        assignments = [str(a) for a in self.assignment]
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(KEYS)
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    w.writerow(neutral.row(self.scores(gradebook, assignment, student)[k] for k in KEYS))

    @staticmethod
    def scores(gradebook, assignment, student):
        """nbgrader's row for one learner and assignment (0 for an assignment not submitted)."""
        row = dict(assignment=assignment.name, duedate=assignment.duedate, student_id=student.id,
                   last_name=student.last_name, first_name=student.first_name, email=student.email,
                   max_score=assignment.max_score)
        try:
            sub = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
        else:
            row.update(timestamp=sub.timestamp, raw_score=sub.score, late_submission_penalty=sub.late_submission_penalty,
                       score=max(0.0, sub.score - sub.late_submission_penalty))
        return row


# --- the course's gradebook, and the LMSs' import formats -------------------------------------

def standing(gradebook, assignment, student):
    """One learner's figures for an assignment, as the gradebook holds them: {"timestamp",
    "seconds_late", "penalty", "raw", "score", "max", "exercises": {notebook: (score, max)},
    "items": {grade cell: (score, max)}}; a learner who submitted nothing scores 0, on time."""
    a = gradebook.find_assignment(assignment)
    out = {"timestamp": "", "seconds_late": 0.0, "penalty": 0.0, "raw": 0.0, "max": a.max_score,
           "exercises": {nb.name: (0.0, nb.max_score) for nb in a.notebooks},
           "items": {c.name: (0.0, c.max_score) for nb in a.notebooks for c in nb.grade_cells}}
    try:
        sub = gradebook.find_submission(assignment, student)
    except MissingEntry:
        out["score"] = 0.0
        return out
    out.update(timestamp=sub.timestamp or "", seconds_late=sub.total_seconds_late or 0.0,
               penalty=sub.late_submission_penalty or 0.0, raw=sub.score)
    for nb in sub.notebooks:
        out["exercises"][nb.name] = (nb.score, nb.max_score)
        for g in nb.grades:
            out["items"][g.name] = (g.score, g.max_score)
    out["score"] = max(0.0, sub.score - out["penalty"])
    return out


class _CourseExport(CsvExportPlugin):
    """An export of the course's gradebook to one CSV (`--to`, default `default_file`), one row
    per learner of each assignment exported, every text cell inert."""
    default_file = "grades.csv"

    def export(self, gradebook):
        students = [str(s) for s in self.student]
        assignments = [a.name for a in gradebook.assignments if not self.assignment or a.name in map(str, self.assignment)]
        dest = self.to or self.default_file
        self.log.info("Exporting grades to %s", dest)
        learners = [s for s in gradebook.students if not students or s.id in students]
        with open(dest, "w", newline="") as f:
            w = csv.writer(f)
            for r in self.rows(gradebook, assignments, learners):
                w.writerow(neutral.row(r))

    def rows(self, gradebook, assignments, learners):
        raise NotImplementedError


class GradebookExport(_CourseExport):
    """The course's gradebook: per learner and assignment the names, the time handed in, the late
    penalty, the total and one column per exercise (per_gradient: one per graded item too)."""
    per_gradient = Bool(False, help="Also a column per graded item (gradient).").tag(config=True)

    def rows(self, gradebook, assignments, learners):
        for assignment in assignments:
            a = gradebook.find_assignment(assignment)
            notebooks = [nb.name for nb in a.notebooks]
            items = [c.name for nb in a.notebooks for c in nb.grade_cells] if self.per_gradient else []
            yield (["assignment", "student_id", "first_name", "last_name", "email", "timestamp", "days_late",
                    "late_penalty", "total", "max_score"] + notebooks + items)
            for s in learners:
                st = standing(gradebook, assignment, s.id)
                yield ([assignment, s.id, s.first_name, s.last_name, s.email, st["timestamp"],
                        days_late(st["seconds_late"]), st["penalty"], st["score"], st["max"]]
                       + [st["exercises"][nb][0] for nb in notebooks] + [st["items"][c][0] for c in items])


class CanvasExport(_CourseExport):
    """Canvas's gradebook import CSV (Grades > Import): the columns `Student`, `ID`, `SIS User ID`,
    `SIS Login ID`, `Section`, then one column per assignment named `Name (Canvas id)`, and a
    `Points Possible` row first. The nbgrader student id fills `id_column` (Canvas matches a row
    by ID, SIS User ID or SIS Login ID); a total after the late penalty."""
    default_file = "canvas.csv"
    id_column = Enum(["ID", "SIS User ID", "SIS Login ID"], default_value="SIS Login ID",
                     help="The Canvas column that holds the nbgrader student id.").tag(config=True)
    assignment_ids = Dict({}, help="{nbgrader assignment: Canvas assignment id}, for the column "
                                   "names Canvas matches (`Name (12345)`).").tag(config=True)
    HEAD = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]

    def rows(self, gradebook, assignments, learners):
        columns = [f"{a} ({self.assignment_ids[a]})" if a in self.assignment_ids else a for a in assignments]
        yield self.HEAD + columns
        yield ["Points Possible", "", "", "", ""] + [gradebook.find_assignment(a).max_score for a in assignments]
        for s in learners:
            ids = dict.fromkeys(self.HEAD[1:], "")
            ids[self.id_column] = s.id
            name = ", ".join(x for x in (s.last_name, s.first_name) if x) or s.id
            yield [name, *ids.values()] + [standing(gradebook, a, s.id)["score"] for a in assignments]


class MoodleExport(_CourseExport):
    """Moodle's grade import CSV (Grades > Import > CSV file): an identifier column Moodle maps to
    a user field, the names, and one column per assignment holding its grade (mapped to the grade
    item on import); a total after the late penalty. The nbgrader student id fills `id_column`."""
    default_file = "moodle.csv"
    id_column = Enum(["Email address", "Username", "ID number"], default_value="Username",
                     help="The column (and so the Moodle user field) that holds the nbgrader student id.").tag(config=True)

    def rows(self, gradebook, assignments, learners):
        ids = [c for c in ["Email address", "Username", "ID number"] if c in (self.id_column, "Email address")]
        yield ["First name", "Last name", *ids] + assignments
        for s in learners:
            cells = {"Email address": s.email or "", self.id_column: s.id}
            yield [s.first_name or "", s.last_name or "", *(cells[c] for c in ids)] + [
                standing(gradebook, a, s.id)["score"] for a in assignments]
