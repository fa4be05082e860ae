"""release/ is an output of source/: regenerated here, it must be identical, and it must not
contain any solution or hidden test."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import course
from autograder.exercises import EXERCISES
from conftest import ROOT

RELEASE = ROOT / "release" / course.ASSIGNMENT
SOURCE = ROOT / "source" / course.ASSIGNMENT
NOTEBOOKS = [ex.notebook for ex in EXERCISES.values()]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    c = course.copy_course(tmp_path_factory.mktemp("course") / "course")
    course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
    return c / "release" / course.ASSIGNMENT


def test_release_has_exactly_the_exercise_notebooks():
    assert sorted(p.name for p in RELEASE.iterdir()) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_is_what_nbgrader_generates_from_source(regenerated, name):
    """Is the committed release byte-identical to a fresh `nbgrader generate_assignment`?"""
    assert (RELEASE / name).read_text() == (regenerated / name).read_text(), (
        "release/ is stale: run `python tools/build_exercises.py` and "
        "`nbgrader generate_assignment backprop_ninja --force`, then commit release/")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_solution_or_hidden_test_leaks_into_the_release(name):
    source = nbformat.read(SOURCE / name, as_version=4)
    text = (RELEASE / name).read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "grade(" not in text.replace("nbgrader", ""), "the hidden grading calls stay in source/"
    for cell in source.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            inside = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in inside.strip().splitlines():
                if len(line.strip()) > 12:  # skip trivial lines such as `return ...`
                    assert line.strip() not in text, f"solution line leaked: {line.strip()}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_learners_stub_runs_top_to_bottom(tmp_path, name, monkeypatch):
    """Does Run All on the untouched release reach the checks, which report what is missing?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = nbformat.read(RELEASE / name, as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "is not defined yet" in text or "write backward" in text.lower()
