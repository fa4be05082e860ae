"""The course's nbgrader pieces, for the course's own assignment only.

nbgrader's configuration applies to every assignment of a course. The classes here, registered
in nbgrader_config.py, hand a notebook to the course's pieces (the sandboxed kernel and its
timeout, the trusted scores, the repairing exporter, the `# YOUR CODE HERE` stub; the feedback
page, feedback.py, asks in_course too) when it belongs to the course's assignment, the one whose folder holds
the course's exercise notebooks, and to stock nbgrader's otherwise: another assignment of the
same course (an `intro` beside `backprop_ninja`) is generated and graded as nbgrader grades it.
"""
import os
import subprocess

from nbclient.util import run_sync
from nbconvert.exporters import NotebookExporter
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor
from traitlets.utils.importstring import import_item

from .course import ASSIGNMENT
from ..exercises import EXERCISES
from .exporter import RepairingExporter
from .execute import SandboxedExecute


def coursedir_of(obj):
    """The CourseDirectory of the nbgrader converter above a preprocessor or exporter (or None)."""
    while obj is not None:
        if getattr(obj, "coursedir", None) is not None:
            return obj.coursedir
        obj = getattr(obj, "parent", None)
    return None


def is_course_assignment(coursedir, assignment):
    """Whether `assignment` is the course's: its source or release folder holds an exercise notebook."""
    if coursedir is None:
        return assignment == ASSIGNMENT
    for step in (coursedir.source_directory, coursedir.release_directory):
        folder = coursedir.format_path(step, ".", assignment)
        if any(os.path.exists(os.path.join(folder, ex.notebook)) for ex in EXERCISES.values()):
            return True
    return False


def in_course(obj, resources):
    assignment = (resources or {}).get("nbgrader", {}).get("assignment")
    return assignment is not None and is_course_assignment(coursedir_of(obj), assignment)


class CourseOnly(NbGraderPreprocessor):
    """Runs the `course` preprocessor on the course's assignment, `stock` on any other (None: none)."""
    course = stock = None  # import paths

    def delegate(self, resources):
        """The preprocessor for this notebook's assignment, configured as nbgrader configures it."""
        name = self.course if in_course(self, resources) else self.stock
        return None if name is None else import_item(name)(parent=self.parent)

    def preprocess(self, nb, resources):
        pp = self.delegate(resources)
        return (nb, resources) if pp is None else pp(nb, resources)


class CourseExecute(SandboxedExecute):
    """The course's kernel: sandboxed (autograder.grader.trusted), its timeout set for SandboxedExecute in
    nbgrader_config.py, its start-up banner discarded. It works in a private copy of the folder
    (kernel_server.SandboxedKernelManager), so its caches never reach autograded/ or feedback/."""

    async def async_start_new_kernel(self, **kwargs):
        # the sandboxed kernel has no parent process to report to, so ipykernel prints a
        # connection banner on the stdout it inherits: the grader's terminal
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        return await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)  # what nbconvert's preprocess calls

    def preprocess(self, nb, resources=None, km=None):
        from .kernel_server import kernel_servers
        from .trusted import TrustedScores
        kernel_servers.prewarm()  # the kernels are forked from it (kernel_server.KernelServer)
        TrustedScores(parent=self.parent).read_ahead(resources or {})  # the replay runs beside the kernel
        return super().preprocess(nb, resources, km)


class ScopedExecute(CourseOnly):
    """nbgrader's Execute, or the course's sandboxed kernel for the course's assignment."""
    course, stock = "autograder.grader.scoped.CourseExecute", "nbgrader.preprocessors.Execute"


class ScopedTrustedScores(CourseOnly):
    """The trusted scores (autograder.grader.trusted) for the course's assignment; nothing otherwise."""
    course = "autograder.grader.trusted.TrustedScores"


class CourseClearSolutions(ClearSolutions):
    """nbgrader's ClearSolutions with the course's stub (set for this class in nbgrader_config.py)."""


class ScopedClearSolutions(CourseOnly):
    """nbgrader's ClearSolutions, with the course's stub for the course's assignment."""
    course, stock = "autograder.grader.scoped.CourseClearSolutions", "nbgrader.preprocessors.ClearSolutions"


def with_hidden_tests(nb, resources):
    """nb with its locked cells as the gradebook keeps them, hidden tests included.

    A release's test cells lack their hidden tests, so nbgrader's OverwriteCells finds their
    checksums changed: it restores the gradebook's source and warns, once per hidden test and
    learner. The repaired notebook has the release's locked cells already; this swaps in the
    same sources OverwriteCells would, so it finds nothing to restore."""
    nbgr = resources["nbgrader"]
    with Gradebook(nbgr["db_url"]) as gb:
        try:
            kept = {c.name: c for c in gb.find_notebook(nbgr["notebook"], nbgr["assignment"]).source_cells}
        except MissingEntry:
            return nb
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            src = kept.get(meta.get("grade_id"))
            if src is not None and src.locked and meta.get("locked") and cell.cell_type == src.cell_type:
                cell.source = src.source
    return nb


class ScopedRepairingExporter(RepairingExporter):
    """The repairing exporter (exporter.RepairingExporter) for the course's assignment; nbgrader's
    NotebookExporter for any other."""

    def from_filename(self, filename, resources=None, **kw):
        if not in_course(self, resources):
            return NotebookExporter.from_filename(self, filename, resources, **kw)
        return super().from_filename(filename, resources, **kw)

    def from_notebook_node(self, nb, resources=None, **kw):
        if in_course(self, resources) and "db_url" in resources.get("nbgrader", {}):
            nb = with_hidden_tests(nb, resources)
        return super().from_notebook_node(nb, resources, **kw)
