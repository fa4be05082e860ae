import re
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def names(requirements):
    return {re.split(r"[=<>!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_pins_the_same_packages_as_pyproject():
    """Does environment.yml list exactly pyproject.toml's pinned dependencies and extras (and
    Python 3.11), and install the course itself with those extras?"""
    deps = PROJECT["dependencies"] + [r for extra in EXTRAS.values() for r in extra]
    yml = (ROOT / "environment.yml").read_text()
    pins = re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s]+)\s*$", yml, re.M)
    assert sorted(pins) == sorted(deps)
    assert re.search(r"^\s+- python=3\.11\s*$", yml, re.M)
    assert re.search(r"^\s+- -e \.\[instructor,test\]\s*$", yml, re.M)
    assert all("==" in d for d in deps), "every dependency is pinned exactly"


def test_a_learners_install_pulls_in_no_instructor_or_test_tools():
    """Does `pip install .` (the learner's install) need only what the notebooks import, with
    nbgrader and JupyterLab in the instructor extra and the test tools in the test extra?"""
    assert names(PROJECT["dependencies"]) == {"torch", "matplotlib", "tqdm", "platformdirs"}
    assert names(EXTRAS["instructor"]) == {"nbgrader", "jupyterlab", "restrictedpython", "psutil", "dask", "distributed"}
    assert names(EXTRAS["test"]) == {"pytest", "nbval", "selenium", "coverage"}


def test_the_notebooks_import_nothing_from_the_extras():
    """Do the release notebooks' imports (and the autograder modules they load) leave every
    package of the instructor and test extras unimported, so `pip install .` is enough?"""
    import ast
    import json
    import subprocess
    import sys
    imports = set()
    for path in (ROOT / "release" / "backprop_ninja").glob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                try:
                    tree = ast.parse("".join(cell["source"]))
                except SyntaxError:
                    continue
                imports |= {ast.unparse(node) for node in tree.body
                            if isinstance(node, (ast.Import, ast.ImportFrom))}
    assert "from autograder.data import splits, itos, stoi, vocab_size" in imports
    extras = sorted(names(r for extra in EXTRAS.values() for r in extra))
    probe = "\n".join(sorted(imports)) + (
        "\nimport sys\nprint(sorted(m for m in %r if m in sys.modules))" % extras)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"the notebooks load {run.stdout.strip()}"


def test_make_installs_everything_for_development():
    """Does the Makefile install the course editable with both extras?"""
    assert '-e ".[instructor,test]"' in (ROOT / "Makefile").read_text()


def test_a_venv_of_another_python_is_named_with_its_fix(tmp_path):
    """Does make stop at once, saying which Python made .venv and how to start afresh, when
    .venv comes from another Python (here a stand-in answering as 3.12)?"""
    import shutil
    import subprocess
    for name in ["Makefile", "pyproject.toml"]:
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "Python 3.12.1"; exit 0; fi\n'
                      'echo "$@" >> "$(dirname "$0")/calls"; exit 1\n')
    python.chmod(0o755)
    for target in ["data", "test"]:
        run = subprocess.run(["make", "-s", target], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode != 0
        assert "made with Python 3.12.1" in run.stderr and "rm -rf .venv" in run.stderr, run.stderr
    calls = (python.parent / "calls").read_text()
    assert "pip" not in calls, "nothing is installed into the wrong .venv"


LEARNER_SIDE = sorted(p.stem for p in (ROOT / "autograder").glob("*.py"))
GRADER_SIDE = ("autograder.grader", "RestrictedPython", "nbgrader", "nbconvert", "jupyter_client", "psutil")


@pytest.mark.parametrize("module", LEARNER_SIDE)
def test_the_learner_side_imports_nothing_of_the_grader(module):
    """What the notebooks import (autograder/*.py: data, model, cmp, the checks, the in-kernel
    score) never imports the trusted grader (autograder/grader/), RestrictedPython or nbgrader:
    neither in its source (at any depth of a function) nor, imported, in sys.modules."""
    import ast
    tree = ast.parse((ROOT / "autograder" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "") + "." + a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if module in ("grade", "demo", "report"):  # the command shims run the grader's main
                continue
            assert ".grader" not in name and not name.lstrip(".").startswith(GRADER_SIDE[1:]), f"{module} imports {name}"
    probe = (f"import sys, autograder.{module}; bad = [m for m in sys.modules if m.startswith({GRADER_SIDE!r})]; "
             "print(','.join(bad))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "", run.stdout + run.stderr


def test_the_grader_modules_form_no_import_circle():
    """Dependencies go one way inside the grader too: no module imports one that imports it back."""
    import ast
    graph = {}
    for path in (ROOT / "autograder" / "grader").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = deps
    for a, deps in graph.items():
        for b in deps:
            assert a not in graph.get(b, ()), f"{a} <-> {b}"
