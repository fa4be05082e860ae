"""Example submissions for the demo and the end-to-end tests: the instructor solutions, the
untouched release, and typical single mistakes, each made by editing one answer cell."""
import copy
from pathlib import Path

import nbformat

from ..exercises import EXERCISES
from . import tree

# name -> (exercise, answer cell id, text in the solution, replacement, gradients it breaks)
MISTAKES = {
    "missing_1_over_n": ("ex1", "ex1_loss_chain", "dlogprobs[range(n), Yb] = -1.0 / n",
                         "dlogprobs[range(n), Yb] = -1.0", ["logprobs"]),
    "missing_keepdim": ("ex1", "ex1_loss_chain", "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
                        "dcounts_sum_inv = (counts * dprobs).sum(1)", ["counts_sum_inv"]),
    "transposed_dW2": ("ex1", "ex1_second_layer", "dW2 = h.T @ dlogits", "dW2 = (dlogits.T @ h)", ["W2"]),
    "missing_second_path_dcounts": ("ex1", "ex1_loss_chain", "dcounts += torch.ones_like(counts) * dcounts_sum",
                                    "pass", ["counts"]),
    "bessel_n": ("ex1", "ex1_batchnorm", "dbndiff2 = (1.0 / (n - 1))", "dbndiff2 = (1.0 / n)", ["bndiff2"]),
    "dC_assigned": ("ex1", "ex1_first_layer", "dC[ix] += demb[k, j]", "dC[ix] = demb[k, j]", ["C"]),
}


# The demo's due date, and the one example handed in after it (25 hours late: two days' penalty)
DUE = "2026-12-01 17:00:00 UTC"
LATE = {"bessel_n": "2026-12-02 18:00:00 UTC"}


def with_mistake(nb, cell_id, old, new):
    """A copy of nb with `old` replaced by `new` in answer cell cell_id."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == cell_id:
            assert old in cell.source, f"{old!r} not in answer cell {cell_id}"
            cell.source = cell.source.replace(old, new)
            return nb
    raise KeyError(f"no answer cell {cell_id}")


def solved(release_nb, source_nb):
    """The release notebook with each answer cell filled in as the source solves it
    (nbgrader's solution markers removed), as a learner would submit it."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source_nb.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in release_nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = strip_markers(answers[gid])
    return release_nb


def strip_markers(src):
    return "\n".join(l for l in src.splitlines() if "### BEGIN SOLUTION" not in l and "### END SOLUTION" not in l)


def solution_sources(exercise, root=None):
    """{answer cell id: source} of the instructor solution in source/, as a learner would submit it."""
    from .course import ROOT
    from ..hidden import answer_sources
    nb = nbformat.read(Path(root or ROOT) / "source" / "backprop_ninja" / EXERCISES[exercise].notebook, as_version=4)
    return {cell: strip_markers(src) for cell, src in answer_sources(nb, EXERCISES[exercise].answer_cells)}


def write_submissions(course, assignment="backprop_ninja", mistakes=MISTAKES):
    """Fill course/submitted/ with students: 'solutions', 'blank' and one per mistake (only
    the notebook with the mistake is submitted, the others count as missing). Returns the ids."""
    source = Path(course) / "source" / assignment
    release = Path(course) / "release" / assignment
    read = lambda p: nbformat.read(p, as_version=4)
    full = {ex.key: solved(read(release / ex.notebook), read(source / ex.notebook))
            for ex in EXERCISES.values()}
    students = {"solutions": full,
                "blank": {ex.key: read(release / ex.notebook) for ex in EXERCISES.values()}}
    for name, (ex, cell_id, old, new, _) in mistakes.items():
        students[name] = {ex: with_mistake(full[ex], cell_id, old, new)}
    for student, notebooks in students.items():
        dest = Path(course) / "submitted" / student / assignment
        tree.remove(dest)  # an earlier submission, however deep
        dest.mkdir(parents=True)
        for ex, nb in notebooks.items():
            nbformat.write(nb, dest / EXERCISES[ex].notebook)
        if student in LATE:  # as `nbgrader collect` writes it; late only where a due date is set
            (dest / "timestamp.txt").write_text(LATE[student])
    return list(students)
