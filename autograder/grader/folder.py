"""What nbgrader takes from a submission's folder: regular files only, and a timestamp that is a date.

Stock nbgrader copies every file of a learner's submission folder into autograded/ with
shutil.copy, which follows symbolic links and opens anything (a link to /proc/self/mem or
/etc/shadow, a FIFO that blocks forever, a device), and it fails the learner on a
`timestamp.txt` that is not a date. For the course's assignment, CourseAutograde copies regular
files only (opened without following links, not blocking), within tree.BOUNDS (a folder too
deep, a file too big, what is beyond the first 1,000 entries: left out), keeps a timestamp
only if it is a date, and notes each file it left out; the note reaches the top of the learner's graded
notebooks (exporter.RepairingExporter), and so the feedback. Any other assignment is graded as
stock nbgrader grades it.

nbgrader builds its Autograde converter by name, in `nbgrader autograde` and in NbGraderAPI (which
`python -m autograder.grade` uses) alike; nbgrader_config.py calls install(), which makes both
build CourseAutograde. This module imports nbgrader only (no torch): every nbgrader command loads
the configuration.
"""
import os

from nbgrader.converters import Autograde, BaseConverter

from . import tree
from .tree import read_regular

MAX_TIMESTAMP = 200  # bytes of a timestamp.txt read
# {submission folder: [(relative path, why)]}: what was left out of a learner's folder before it
# reached this process (the class runner's job carries the folder as its coordinator read it)
CARRIED = {}


def files_of(folder, ignore=()):
    """([(relative path, bytes)], [(relative path, why it was left out)]) for a submission folder,
    as tree.walk reads it: regular files only, links never followed, within tree.BOUNDS."""
    kept, left = [], list(CARRIED.get(os.path.normpath(folder), []))
    for rel, kind, data in tree.walk(folder, ignore=ignore):
        if kind == tree.FILE:
            kept.append((rel, data))
        elif kind != tree.FOLDER:
            left.append((rel, tree.why_left_out(kind, data)))
    return kept, left


def timestamp_of(folder):
    """(datetime or None, problem or '') of folder/timestamp.txt, read as nbgrader reads it but
    never failing: a file that is not a date, or not a regular file, is ignored with a problem."""
    from nbgrader.utils import parse_utc
    path = os.path.join(folder, "timestamp.txt")
    if not os.path.lexists(path):
        return None, ""
    content, why = read_regular(path, MAX_TIMESTAMP)
    if content is None:
        return None, f"`timestamp.txt` {why}: ignored (the submission counts as on time)"
    text = content.decode("utf-8", errors="replace").strip()
    if not text:
        return None, ""
    try:
        return parse_utc(text), ""
    except Exception:
        return None, "`timestamp.txt` is not a date: ignored (the submission counts as on time)"


class RegularFilesOnly(BaseConverter):
    """BaseConverter.init_assignment (the copy of a submission's other files) for the course's
    assignment: regular files only, each file left out noted. Autograde.init_assignment calls it
    as its super() (CourseAutograde's method resolution order puts it right after Autograde)."""

    def init_assignment(self, assignment_id, student_id):
        if not self.course_assignment(assignment_id):
            return super().init_assignment(assignment_id, student_id)
        source, dest = self._format_source(assignment_id, student_id), self._format_dest(assignment_id, student_id)
        kept, left = files_of(source, list(self.coursedir.ignore) + ["*.ipynb"])
        notes = self.folder_notes.setdefault(student_id, [])
        for rel, why in left:
            if rel == "timestamp.txt":
                continue  # timestamp_of says what is wrong with it
            notes.append(f"`{tree.shown(rel)}` in your submission {why}: not used")
        for rel, content in kept:
            if rel == "timestamp.txt" and timestamp_of(source)[0] is None:
                continue  # nbgrader would fail on it later (its note comes from timestamp_of)
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.remove(path)
            self.log.info("Copying %s -> %s", os.path.join(source, rel), path)
            with open(path, "wb") as f:
                f.write(content)


class CourseAutograde(Autograde, RegularFilesOnly):
    """nbgrader's Autograde; for the course's assignment, the submission's folder is read as this
    module says (regular files, a timestamp that is a date) and what was left out is noted."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder_notes = {}  # student -> what their folder had that was not used

    def course_assignment(self, assignment_id):
        from .scoped import is_course_assignment
        return is_course_assignment(self.coursedir, assignment_id)

    def tolerant_timestamps(self, assignment_id, student_id):
        """A context in which the course directory reads this assignment's timestamps never failing."""
        import contextlib

        @contextlib.contextmanager
        def context():
            if not self.course_assignment(assignment_id):
                yield
                return
            notes = self.folder_notes.setdefault(student_id, [])

            def read(path):
                when, problem = timestamp_of(path)
                if problem and problem not in notes and os.path.normpath(path) == os.path.normpath(
                        self.coursedir.format_path(self.coursedir.submitted_directory, student_id, assignment_id)):
                    notes.append(problem)
                return when
            self.coursedir.get_existing_timestamp = read
            try:
                yield
            finally:
                del self.coursedir.get_existing_timestamp  # the class's method again
        return context()

    def init_destination(self, assignment_id, student_id):
        self.folder_notes[student_id] = []
        with self.tolerant_timestamps(assignment_id, student_id):
            return super().init_destination(assignment_id, student_id)

    def init_assignment(self, assignment_id, student_id):
        with self.tolerant_timestamps(assignment_id, student_id):
            return super().init_assignment(assignment_id, student_id)


def install():
    """Make `nbgrader autograde` and NbGraderAPI.autograde build CourseAutograde (called by
    nbgrader_config.py)."""
    from nbgrader.apps import api, autogradeapp
    autogradeapp.Autograde = api.Autograde = CourseAutograde
