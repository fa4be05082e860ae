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


LOCK_FILE = ROOT / "requirements" / "lock.txt"


def lock():
    """{name: version} of requirements/lock.txt, names lower-case."""
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[^\s=;]+", line), f"not an exact pin: {line}"
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def all_requirements():
    return PROJECT["dependencies"] + [r for extra in EXTRAS.values() for r in extra]


def test_the_course_states_ranges_not_exact_pins():
    """Do pyproject.toml's dependencies and extras state ranges only (a lower bound, no `==`),
    for CPython 3.10 and later, so that pip keeps a torch already installed (Colab's)?"""
    assert PROJECT["requires-python"] == ">=3.10"
    for r in all_requirements():
        assert "==" not in r and "~=" not in r and ">=" in r, f"{r}: a range with a lower bound"
    torch, = [r for r in PROJECT["dependencies"] if names([r]) == {"torch"}]
    assert "<" not in torch, "no upper bound: pip would replace a newer torch the learner has"


def test_the_lock_pins_every_package_pyproject_names_within_its_range():
    """Does requirements/lock.txt pin each dependency and extra exactly, at a version in the
    range pyproject.toml states?"""
    from packaging.requirements import Requirement
    pins = lock()
    for r in map(Requirement, all_requirements()):
        name = r.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in {LOCK_FILE.name}"
        assert r.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is not in {r.specifier}"


def test_environment_yml_pins_what_the_lock_pins():
    """Does environment.yml pin exactly pyproject.toml's packages, at the lock's versions (and
    Python 3.11), hold everything else to the lock, and install the course with its extras?"""
    yml = (ROOT / "environment.yml").read_text()
    pins = dict(p.lower().split("==") for p in re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s]+)\s*$", yml, re.M))
    assert set(pins) == names(all_requirements())
    assert pins == {k: lock()[k] for k in pins}
    assert re.search(r"^\s+- python=3\.11\s*$", yml, re.M)
    assert re.search(r"^\s+- -c requirements/lock\.txt\s*$", yml, re.M)
    assert re.search(r"^\s+- -e \.\[instructor,test\]\s*$", yml, re.M)


def test_a_learners_install_pulls_in_no_instructor_or_test_tools():
    """Does `pip install .` (the learner's install) need only what the notebooks import, with
    nbgrader and JupyterLab in the instructor extra and the test tools in the test extra?"""
    assert names(PROJECT["dependencies"]) == {"torch", "matplotlib", "tqdm", "platformdirs"}
    assert {"nbgrader", "jupyterlab", "restrictedpython", "psutil"} <= names(EXTRAS["instructor"])
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


def test_make_installs_everything_for_development_at_the_locks_versions():
    """Does the Makefile install the course editable with both extras, constrained by the lock
    (and reinstall when the lock changes)?"""
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[instructor,test]" -c $(LOCK)' in makefile
    assert "LOCK := requirements/lock.txt" in makefile and "$(VENV)/installed: pyproject.toml $(LOCK)" in makefile


def test_a_venv_of_another_python_is_named_with_its_fix(tmp_path):
    """Does make stop at once, saying which Python made .venv and how to start afresh, when
    .venv comes from another Python (here a stand-in answering as 3.12)?"""
    import shutil
    import subprocess
    for name in ["Makefile", "pyproject.toml", "requirements/lock.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
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

