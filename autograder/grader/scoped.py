"""The course's nbgrader pieces, for the course's own assignment only.

nbgrader's configuration applies to every assignment of a course. The classes here, registered
in nbgrader_config.py, hand a notebook to the course's pieces (the sandboxed kernel and its
timeout, the trusted scores, the repairing exporter, the `# YOUR CODE HERE` stub, the feedback
that names each gradient) when it belongs to the course's assignment, the one whose folder holds
the course's exercise notebooks, and to stock nbgrader's otherwise: another assignment of the
same course (an `intro` beside `backprop_ninja`) is generated and graded as nbgrader grades it.
"""
import copy
import html
import io
import os
import re
import subprocess
from pathlib import Path

import nbformat
from nbclient.util import run_sync
from nbconvert.exporters import HTMLExporter, NotebookExporter
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor
from traitlets.utils.importstring import import_item

from .course import ASSIGNMENT
from ..exercises import EXERCISES
from .pages import MARK, make_safe, with_policy
from ..score import verdict_of
from .repair import SURROGATE, note_cell, read_any, rebuild
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


class RepairingExporter(NotebookExporter):
    """nbgrader's notebook exporter, reading submissions robustly onto the release notebook."""

    def template_for(self, resources):
        coursedir = getattr(self.parent, "coursedir", None)
        nbgr = (resources or {}).get("nbgrader", {})
        if coursedir is None or "assignment" not in nbgr:
            return None
        path = Path(coursedir.format_path(coursedir.release_directory, ".", nbgr["assignment"])) / (
            nbgr["notebook"] + ".ipynb")
        return nbformat.read(path, as_version=4) if path.exists() else None

    def from_filename(self, filename, resources=None, **kw):
        template = self.template_for(resources)
        if template is None or self.parent.coursedir.submitted_directory not in Path(filename).parts:
            return super().from_filename(filename, resources, **kw)
        learner, problem = read_any(filename)
        nb, problems = rebuild(learner, template)
        # what the converter found wrong in the submission's folder (autograder/grader/folder.py)
        folder = getattr(self.parent, "folder_notes", {}).get((resources or {}).get("nbgrader", {}).get("student"), [])
        problems = list(folder) + [problem] * bool(problem) + problems
        if problems:
            nb.cells.insert(0, note_cell(problems))
        return self.from_notebook_node(nb, resources, **kw)

    def from_notebook_node(self, nb, resources=None, **kw):
        output, resources = super().from_notebook_node(nb, resources, **kw)
        # what the kernel printed may hold lone surrogates too: the file must still be written
        return SURROGATE.sub("\ufffd", output), resources


class ScopedRepairingExporter(RepairingExporter):
    """The repairing exporter (RepairingExporter, above) for the course's assignment; nbgrader's
    NotebookExporter for any other."""

    def from_filename(self, filename, resources=None, **kw):
        if not in_course(self, resources):
            return NotebookExporter.from_filename(self, filename, resources, **kw)
        return super().from_filename(filename, resources, **kw)

    def from_notebook_node(self, nb, resources=None, **kw):
        if in_course(self, resources) and "db_url" in resources.get("nbgrader", {}):
            nb = with_hidden_tests(nb, resources)
        return super().from_notebook_node(nb, resources, **kw)


# --- feedback -------------------------------------------------------------------------------

LABELS = {ex.test_id(k): (f"d{k}" if k in ex.grads else f"{k} run")
          for ex in EXERCISES.values() for k in {**ex.grads, **ex.extra_tests}}
MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.S)
CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)
MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


def tex_image(tex, display=False):
    """LaTeX math as an inline SVG image (matplotlib's mathtext: no MathJax, no network), or
    the source as code where mathtext cannot draw it."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser
    source = " ".join(tex.split())
    tex = re.sub(r"\\frac(\w)(\w)", r"\\frac{\1}{\2}", source)  # \frac1n: TeX's, not mathtext's
    prop = FontProperties(size=14 if display else 11)
    try:
        with rc_context({"mathtext.fontset": "cm", "svg.fonttype": "path", "svg.hashsalt": "backprop-ninja"}):
            width, height, depth, *_ = MathTextParser("path").parse(f"${tex}$", dpi=72, prop=prop)
            fig = Figure(figsize=(width / 72, height / 72))
            fig.text(0, depth / height, f"${tex}$", fontproperties=prop)
            svg = io.BytesIO()
            fig.savefig(svg, format="svg", metadata={"Date": None})
    except Exception:  # mathtext knows most of TeX's math, not all of it
        return f"<code>{html.escape(source)}</code>"
    import base64
    img = (f'<img class="math" alt="{html.escape(source)}" style="vertical-align: {-depth:.1f}pt" '
           f'src="data:image/svg+xml;base64,{base64.b64encode(svg.getvalue()).decode()}">')
    return f'<span style="display: block; text-align: center; margin: 0.5em 0">{img}</span>' if display else img


def render_math(markdown):
    """Markdown with its $...$ and $$...$$ math drawn as images (code spans left alone)."""
    parts = CODE.split(markdown)
    for i in range(0, len(parts), 2):
        parts[i] = MATH.sub(lambda m: tex_image(m.group(1) or m.group(2), display=m.group(1) is not None), parts[i])
    return "".join(parts)


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback page; for the course's assignment, each graded cell is named by its
    gradient in the list at the top (not "Test cell"), with its score and verdict, and the math is drawn in the page, so it
    reads offline and in JupyterLab's HTML viewer, where no MathJax script runs; its head carries
    a Content-Security-Policy (pages.FEEDBACK_POLICY): the page loads nothing from outside."""

    def from_notebook_node(self, nb, resources=None, **kw):
        if not in_course(self, resources):
            return super().from_notebook_node(nb, resources, **kw)
        nb = copy.deepcopy(nb)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = render_math(cell.source)
        make_safe(nb)  # after the math is drawn: its images are kept, the learner's script is not
        for cell in nb.cells:
            for out in cell.get("outputs", []):  # nbconvert warns about images without one
                for kind in {"image/png", "image/jpeg"} & set(out.get("data", {})):
                    out.setdefault("metadata", {}).setdefault(kind, {}).setdefault("alt", "a figure drawn by this cell")
        resources = {**(resources or {}), MARK: True}
        output, resources = super().from_notebook_node(nb, resources, **kw)
        output = MATHJAX.sub("", output)
        return with_policy(index_with_verdicts(output, nb)), resources


def index_with_verdicts(page, nb):
    """The feedback page with each graded cell of its index named by its gradient, with its
    score and its verdict (what the cell printed), not nbgrader's "Test cell" and score only."""
    why = {c.metadata["nbgrader"]["grade_id"]: (verdict_of(c) or {}).get("message", "").split("\n")[0]
           for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    return re.sub(r'(<a href="#([\w-]+)">)Test cell(</a>)( \(Score: [^)<]*\))?',
                  lambda m: m.group(1) + html.escape(LABELS.get(m.group(2), "Test cell")) + m.group(3)
                  + (m.group(4) or "") + (f": {html.escape(why[m.group(2)])}" if why.get(m.group(2)) else ""),
                  page)
