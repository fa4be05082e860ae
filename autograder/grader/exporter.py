"""nbgrader's notebook exporter, reading a submission robustly onto the release notebook
(repair.py) and saying what it repaired in a note at the top."""
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter

from .repair import SURROGATE, note_cell, read_any, rebuild


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
