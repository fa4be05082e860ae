"""Deadlines through nbgrader's own mechanisms: a late penalty per day, and an LMS's late marker.

nbgrader compares each submission's `timestamp.txt` with the assignment's due date (set with
`nbgrader db assignment add backprop_ninja --duedate "2026-12-01 17:00:00 UTC"`) and asks the
late-submission plug-in of `AssignLatePenalties` for each late notebook's penalty; the
gradebook, `nbgrader export`, the feedback and the class runner's table all read it from there.
nbgrader's own plug-in knows only "none" and "zero": `PerDayPenalty` takes a share of the
notebook's score for every day or part of a day late.

An LMS's download names a late file but gives no time (Canvas: `doejane_LATE_12345_...`):
`LateMarkerCollector` keeps that marker through `nbgrader zip_collect`, as a timestamp
`marker_seconds` after the due date, so the learner is late (one day's penalty by default) and
the report says so; files without the marker get no timestamp and are on time, as before.
"""
import math
from datetime import timedelta

from nbgrader.plugins import FileNameCollectorPlugin, LateSubmissionPlugin
from traitlets import Float, Int

DAY = 86400.0


class PerDayPenalty(LateSubmissionPlugin):
    """A late notebook loses `per_day` of its score for every day or part of a day late, all of
    it from `zero_after_days` days on (0: never)."""

    per_day = Float(0.1, min=0.0, max=1.0,
                    help="Share of a late notebook's score lost per day or part of a day late.").tag(config=True)
    zero_after_days = Int(0, min=0, help="From this many days late on, the whole score is lost (0: never).").tag(config=True)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        if total_seconds_late <= 0 or not score:
            return None
        days = math.ceil(total_seconds_late / DAY)
        if self.zero_after_days and days >= self.zero_after_days:
            return score
        return min(score, round(score * self.per_day * days, 6))


def days_late(seconds):
    """The days or parts of a day of `seconds` late, as the penalty counts them."""
    return math.ceil(seconds / DAY) if seconds and seconds > 0 else 0


class LateMarkerCollector(FileNameCollectorPlugin):
    """nbgrader's file-name collector, which also keeps an LMS's late marker: a named group
    `late` in `named_regexp` that matched (`(?P<late>LATE_)?`) gives the file a timestamp
    `marker_seconds` after the assignment's due date (when the pattern gives no timestamp and
    a due date is set)."""

    marker_seconds = Int(1, min=1, help="How late a file marked late by its LMS, with no time of its own, "
                                         "counts (seconds after the due date).").tag(config=True)

    def collect(self, submitted_file):
        info = super().collect(submitted_file)
        if not info or not info.pop("late", None) or info.get("timestamp"):
            return info
        due = self._duedate()
        if due is None:
            self.log.warning("%s is marked late, but the assignment has no due date: collected as on time",
                             submitted_file)
            return info
        info["timestamp"] = str(due + timedelta(seconds=self.marker_seconds))
        return info

    def _duedate(self):
        from nbgrader.api import Gradebook, MissingEntry
        coursedir = self.parent.coursedir
        with Gradebook(coursedir.db_url, course_id=coursedir.course_id) as gb:
            try:
                return gb.find_assignment(coursedir.assignment_id).duedate
            except MissingEntry:
                return None
