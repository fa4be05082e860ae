"""nbgrader configuration: the course is rooted here; its assignment is backprop_ninja.

The course's pieces below apply to its own assignment only (the one whose folder holds the
exercise notebooks; autograder/grader/scoped.py decides): any other assignment of this course is
generated and graded exactly as stock nbgrader does it.
"""
import os
import warnings

from nbgrader.converters import Autograde, GenerateAssignment
from nbgrader.preprocessors import ClearSolutions, Execute

c = get_config()  # noqa: F821 (provided by nbgrader)

# nbgrader 0.9's gradebook builds a submission's rows before adding them to its session, and
# SQLAlchemy 2 warns of it for every learner and notebook ("Object of type <SubmittedAssignment>
# not in session"): harmless (the rows are added next) and not the instructor's to act on.
# Only that warning is silenced; any other of SQLAlchemy's still shows.
warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "backprop_ninja"


def swap(converter, trait, old, *new):
    """nbgrader's default list of a converter's preprocessors, with `old` replaced by `new`."""
    return [x for p in converter.class_traits()[trait].default() for x in (new if p is old else (p,))]


# The learner's stub must leave the notebook runnable (Run All reaches the checks, which
# report a missing gradient), so no `raise NotImplementedError()` in the course's stub.
c.CourseClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n"}
c.GenerateAssignment.preprocessors = swap(GenerateAssignment, "preprocessors", ClearSolutions,
                                          "autograder.grader.scoped.ScopedClearSolutions")

# Grading replays each answer on hidden inputs; Exercise 4 also trains briefly.
c.SandboxedExecute.timeout = 120

# The score that counts is computed outside the learner's kernel: nbgrader runs the notebook
# in a sandboxed kernel, then TrustedScores replays the answers in a sandboxed process and
# rewrites each graded cell's result (see autograder/grader/trusted.py). The rest is nbgrader's list.
os.environ["BACKPROP_NINJA_TRUSTED"] = "1"  # the in-kernel tests leave scoring to TrustedScores
c.Autograde.autograde_preprocessors = swap(Autograde, "autograde_preprocessors", Execute,
                                           "autograder.grader.scoped.ScopedExecute",
                                           "autograder.grader.scoped.ScopedTrustedScores")

# Submissions are read robustly and rebuilt on the release notebook (autograder/grader/repair.py),
# so a broken file, deleted or duplicated cells or changed metadata cost that learner only
# what they deserve, never the rest of the class.
c.Autograde.exporter_class = "autograder.grader.scoped.ScopedRepairingExporter"

# nbgrader copies a submission's other files itself, following links and opening FIFOs and
# devices, and fails a learner on a timestamp.txt that is not a date: for the course's
# assignment, regular files only and a timestamp that is a date, the rest noted for the learner
# (autograder/grader/folder.py). nbgrader builds its converter by name: install() swaps it.
from autograder.grader.folder import install  # noqa: E402

install()

# nbgrader checks its own metadata schema against JSON Schema's metaschema before each cell it
# validates: checked once per process instead (autograder/grader/cellschema.py; the same result).
from autograder.grader import cellschema  # noqa: E402

cellschema.install()

# Feedback that names each gradient and draws its math in the page (no MathJax from the web).
c.GenerateFeedback.exporter_class = "autograder.grader.feedback.FeedbackExporter"

# No learner script runs in a page: every HTMLExporter (the feedback's, and formgrader's view of a
# submission, which runs on the instructor's Jupyter origin) renders a notebook made safe first
# (autograder/grader/pages.py: learner markdown, raw cells and outputs cleaned by bleach).
c.HTMLExporter.preprocessors = ["autograder.grader.pages.SafeHTML"]
# and in formgrader's server, its view of a submission forbids any script but formgrader's own
from autograder.grader.pages import protect_formgrader  # noqa: E402

protect_formgrader()

# `nbgrader export` writes the course's gradebook (autograder/grader/export.py): names, the time
# handed in, the late penalty, the total and a column per exercise (--GradebookExport.per_gradient=True
# adds one per gradient); every text cell inert (a student id or a name that starts with `=` is no
# formula, no control character reaches the file). For an LMS:
#   nbgrader export --exporter=autograder.grader.export.CanvasExport   (canvas.csv)
#   nbgrader export --exporter=autograder.grader.export.MoodleExport   (moodle.csv)
# (autograder.grader.export.NeutralCsvExport: nbgrader's own columns, inert.)
c.ExportApp.plugin_class = "autograder.grader.export.GradebookExport"

# Deadlines, through nbgrader's own mechanisms: set the due date in the gradebook
# (`nbgrader db assignment add backprop_ninja --duedate "2026-12-01 17:00:00 UTC"`); a notebook
# whose timestamp.txt is later loses per_day of its score for every day or part of a day late
# (autograder/grader/late.py; PerDayPenalty.per_day = 0 for none, zero_after_days to zero it).
c.AssignLatePenalties.plugin_class = "autograder.grader.late.PerDayPenalty"
c.PerDayPenalty.per_day = 0.1
# An LMS's late marker (Canvas's `LATE_`) is kept by `nbgrader zip_collect` when the pattern names
# it `(?P<late>LATE_)?`: such a file is collected as submitted just after the due date.
c.ZipCollectApp.collector_plugin = "autograder.grader.late.LateMarkerCollector"
