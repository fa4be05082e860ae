"""`nbgrader export` for the course (set as ExportApp.plugin_class in nbgrader_config.py): the
CSV of nbgrader's CsvExportPlugin, the same columns and rows, written by the csv module (a name
with a comma stays in its column) with every text cell inert (neutral.cell: a student id or a
name that starts with `=` is not a formula, no control character) and the scores as numbers."""
import csv

from nbgrader.api import MissingEntry
from nbgrader.plugins import CsvExportPlugin

from . import neutral

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
