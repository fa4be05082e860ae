import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # solutions.py, the notebook builders


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only contends (and changes float32 sums)."""
    torch.set_num_threads(1)


def solution_cells(exercise):
    """{answer cell id: source} of the instructor solution, as a learner would submit it."""
    import nbformat
    from autograder.exercises import EXERCISES
    from autograder.hidden import answer_sources
    nb = nbformat.read(ROOT / "source" / "backprop_ninja" / EXERCISES[exercise].notebook, as_version=4)
    return {cell: "\n".join(l for l in src.splitlines() if "### BEGIN SOLUTION" not in l and "### END SOLUTION" not in l)
            for cell, src in answer_sources(nb, EXERCISES[exercise].answer_cells)}
