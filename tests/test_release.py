"""source/ is an output of tools/, and release/ of source/: each is regenerated here and must be
identical. The release must not contain any solution or hidden test, nor give an answer away
in its text."""
import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from autograder.grader import course
from autograder.exercises import EXERCISES
from conftest import ROOT

RELEASE = ROOT / "release" / course.ASSIGNMENT
SOURCE = ROOT / "source" / course.ASSIGNMENT
NOTEBOOKS = [ex.notebook for ex in EXERCISES.values()]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory, generated_course):
    return generated_course(tmp_path_factory.mktemp("course") / "course") / "release" / course.ASSIGNMENT


@pytest.fixture(scope="module")
def rebuilt_source(tmp_path_factory):
    import build_exercises  # tools/, on sys.path through conftest
    dest = tmp_path_factory.mktemp("source")
    build_exercises.build(dest)
    return dest


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_is_what_the_builders_in_tools_write(rebuilt_source, name):
    """Is the committed source/ byte-identical to a fresh `python tools/build_exercises.py`?"""
    assert (SOURCE / name).read_text() == (rebuilt_source / name).read_text(), (
        "source/ is stale or was edited by hand: change tools/, run `python tools/build_exercises.py` "
        "and `nbgrader generate_assignment backprop_ninja --force`, then commit source/ and release/")


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
    """Does Run All on the untouched release reach the checks, which report what is missing,
    with the first cell (the Colab install) silent, the course being installed here?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = nbformat.read(RELEASE / name, as_version=4)
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "is not defined yet" in text or "write backward" in text.lower()
    install = [c for c in nb.cells if c.get("id") == "setup_install"]
    assert len(install) == 1 and install[0].outputs == [], "where the course is installed, the install cell is silent"


def _text(path, kinds=("markdown", "code")):
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] in kinds)


def _squeeze(text):
    return re.sub(r"\s+", "", text)


# Complete answers as hints once gave them: formulas in code or LaTeX, the last step spelled out.
GIVEAWAYS = {
    "ex1_atomic_graph.ipynb": ["-1/n", "-1.0/n", "1-tanh(x)**2", "F.one_hot(logits.max(1).indices",
                               "h.T@", "@W2.T", "@W1.T", "embcat.T@", "index_add_("],
    "ex2_cross_entropy.ipynb": ["p_i-[i=y]", "p_i-1", "softmax(l)-", "dividebyn", "subtract1"],
    "ex3_batchnorm.ipynb": ["\\frac{\\partialL}{\\partialx_j}=", "\\frac{n}{n-1}\\,\\hat{x}_j", "n/(n-1)",
                            "\\frac{\\gamma}{n\\sqrt"],
    "ex4_training.ipynb": ["(1-h**2)", "1-h**2", "index_add_(", "scatter_add_(1", "dhpreact-dbnbias",
                           "h.T@", "@W2.T", "\\frac{n}{n-1}", "[range(n),Yb]-="],
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_release_notebook_gives_an_answer_away(name):
    """Do the release's hints lead without stating a formula: no known giveaway, and no
    right-hand side of a solution line (the last step: the learner writes it), anywhere?"""
    text = _squeeze(_text(RELEASE / name))
    for giveaway in GIVEAWAYS[name]:
        assert _squeeze(giveaway) not in text, f"{name} gives away {giveaway!r}"
    source = nbformat.read(SOURCE / name, as_version=4)
    for cell in source.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            inside = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in inside.splitlines():
                rhs = re.split(r"(?<![=!<>])[-+*/]?=(?!=)", line.split("#")[0], maxsplit=1)[-1]
                if len(_squeeze(rhs)) >= 10:
                    assert _squeeze(rhs) not in text, f"{name} states a solution: {rhs.strip()}"


def test_the_learner_is_never_sent_to_the_reference_notebooks_answers():
    """No release notebook points at the reference notebook's appendix, which a learner's lab
    cannot reach and which holds every answer."""
    for name in NOTEBOOKS:
        assert "appendix" not in _text(RELEASE / name).lower(), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_links_the_lecture(name):
    assert "https://www.youtube.com/watch?v=q8SA3rM6ckI" in _text(RELEASE / name, ["markdown"])


def test_exercise_2_describes_and_draws_dlogits_as_the_reference_does():
    """Do Exercise 2 and the reference notebook use the same words for the gradient's push and
    pull, and label the heatmap's columns with the same letters?"""
    ex2 = _text(RELEASE / "ex2_cross_entropy.ipynb")
    reference = _text(ROOT / "notebooks" / "backprop_ninja.ipynb")
    for words in ["pushed **up**", "pulled **down**", "plt.xticks(range(vocab_size), itos)",
                  "dark = the correct character (pushed up), light = pulled down"]:
        assert words in reference and words in ex2, words


def test_exercise_4_samples_names_as_the_reference_does():
    """Are Exercise 4's sampled names printed without the final '.', as the reference's are?"""
    sample = [c for c in json.loads((RELEASE / "ex4_training.ipynb").read_text())["cells"]
              if c.get("id") == "ex4_sample"][0]
    code = "".join(sample["source"])
    assert code.index("break") < code.index("out.append(ix)"), "the '.' that ends a name is not printed"


def test_exercise_1_check_cells_fit_a_laptop_screen():
    """Is each `report([...])` check of Exercise 1 wrapped to 79 characters a line, so that it
    fits the notebook on a 1366 px wide screen?"""
    cells = json.loads((RELEASE / "ex1_atomic_graph.ipynb").read_text())["cells"]
    checks = ["".join(c["source"]) for c in cells if c.get("id", "").startswith("ex1_check_")
              and c["cell_type"] == "code"]
    assert len(checks) == 4
    for code in checks:
        assert code.startswith("rows = report([")
        assert max(len(line) for line in code.splitlines()) <= 79, code
