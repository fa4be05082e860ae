"""The course's feedback page: nbgrader's, with each graded cell named by its gradient in the
index (with its score and verdict) and the math drawn in the page as images, so it reads
offline and wherever no MathJax script runs; nothing in it loads from outside (pages.py)."""
import copy
import html
import re

from nbconvert.exporters import HTMLExporter

from ..exercises import EXERCISES
from ..verdict import verdict_of
from .pages import MARK, make_safe, with_policy
from .scoped import in_course

LABELS = {ex.test_id(k): (f"d{k}" if k in ex.grads else f"{k} run")
          for ex in EXERCISES.values() for k in {**ex.grads, **ex.extra_tests}}
MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback page; for the course's assignment, each graded cell is named by its
    gradient in the list at the top (not "Test cell"), with its score and verdict, and the math is drawn in the page, so it
    reads offline and in JupyterLab's HTML viewer, where no MathJax script runs; its head carries
    a Content-Security-Policy (pages.FEEDBACK_POLICY): the page loads nothing from outside."""

    def from_notebook_node(self, nb, resources=None, **kw):
        if not in_course(self, resources):
            return super().from_notebook_node(nb, resources, **kw)
        nb = copy.deepcopy(nb)
        make_safe(nb)  # the math drawn as images, which it keeps; the learner's script it does not
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
