"""nbgrader configuration: the course is rooted here; its one assignment is backprop_ninja."""
import os

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "backprop_ninja"

# The learner's stub must leave the notebook runnable (Run All reaches the checks, which
# report a missing gradient), so no `raise NotImplementedError()` in the stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n"}

# Grading replays each answer on hidden inputs; Exercise 4 also trains briefly.
c.Execute.timeout = 120

# The score that counts is computed outside the learner's kernel: after nbgrader has run the
# notebook, TrustedScores replays the answers in a sandboxed process and rewrites each graded
# cell's result (see autograder/trusted.py). The rest is nbgrader's default list.
os.environ["BACKPROP_NINJA_TRUSTED"] = "1"  # the in-kernel tests leave scoring to TrustedScores
c.Autograde.autograde_preprocessors = [
    "autograder.trusted.SandboxedExecute",  # nbgrader's Execute, the kernel in a sandbox
    "autograder.trusted.TrustedScores",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Submissions are read robustly and rebuilt on the release notebook (autograder/repair.py),
# so a broken file, deleted or duplicated cells or changed metadata cost that learner only
# what they deserve, never the rest of the class.
c.Autograde.exporter_class = "autograder.repair.RepairingExporter"
