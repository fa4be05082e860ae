import os
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


def test_the_lowest_torch_is_the_one_the_compatibility_check_installs():
    """Is pyproject.toml's lowest torch the torch of tools/compat.py's default pair, the
    lowest tested, and is that pair (Python 3.13, torch 2.11.0) what its docstring and the
    README say?"""
    import compat  # tools/, on sys.path through conftest
    torch, = [r for r in PROJECT["dependencies"] if names([r]) == {"torch"}]
    assert torch == "torch>=" + ".".join(compat.TORCH.split(".")[:2])
    assert (compat.PYTHON, compat.TORCH) == ("3.13", "2.11.0")
    assert f"Python {compat.PYTHON}, torch {compat.TORCH}" in compat.__doc__
    readme = (ROOT / "README.md").read_text()
    assert "python tools/compat.py" in readme and f"Python {compat.PYTHON} with torch {compat.TORCH}" in readme
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make test") < ci.index("$PY tools/compat.py --reference"), ".ci/run checks compatibility after the suite"


def test_the_compatibility_check_reads_the_check_rows():
    """Does tools/compat.py pass a solved notebook only when every row says approximate: True
    and every tally is N/N, and fail on an error, on stderr, and on a blank one whose checks
    do not say what is missing?"""
    import contextlib
    import io

    import compat
    import torch
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from autograder.check import report

    def nb(*texts, stderr=None):
        outputs = [new_output("stream", name="stdout", text=x) for x in texts]
        outputs += [new_output("stream", name="stderr", text=stderr)] if stderr else []
        return new_notebook(cells=[new_code_cell("", outputs=outputs)])

    right = "logits          |    32x27 | approximate: True  | maxdiff: < 1e-6 | step: right\n1/1 gradients match; 1/1 right, as graded\n"
    wrong = "logits          |    32x27 | approximate: False | maxdiff: 1.2e-2 | step: WRONG (0/4)\n0/1 gradients match; 0/1 right, as graded\n"
    ungraded = "logits          |    32x27 | approximate: True  | maxdiff: < 1e-6 | step: right\n1/1 gradients match; 0/1 right, as graded\n"
    assert compat.verdict("solved", nb(right))[0] == []
    assert len(compat.verdict("solved", nb(wrong))[0]) == 2
    assert compat.verdict("solved", nb(ungraded))[0] == ["not right: 1/1 gradients match; 0/1 right, as graded"]
    # what autograder.check really prints (rows and tally) passes, so the two cannot drift apart
    real = io.StringIO()
    with contextlib.redirect_stdout(real):
        report(["logits"], {"dlogits": torch.ones(3, 2)}, {"logits": torch.ones(3, 2)})
    assert compat.verdict("solved", nb(real.getvalue()))[0] == [], real.getvalue()
    assert compat.verdict("solved", nb("nothing checked\n"))[0] == ["no check rows printed"]
    assert compat.verdict("solved", nb(right, stderr="UserWarning: x"))[0] == ["stderr: UserWarning: x"]
    crashed = nb(right)
    crashed.cells[0].outputs.append(new_output("error", ename="NameError", evalue="name 'dh' is not defined", traceback=[]))
    assert compat.verdict("solved", crashed)[0] == ["NameError: name 'dh' is not defined"]
    assert compat.verdict("blank", nb("logits          | missing: dlogits is not defined yet\n"))[0] == []
    assert compat.verdict("blank", nb("done\n"))[0] == ["no check says what is missing"]


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
    assert names(EXTRAS["instructor"]) == {"nbgrader", "jupyterlab", "restrictedpython", "psutil", "dask", "distributed"}
    assert names(EXTRAS["test"]) == {"pytest", "pytest-xdist", "nbval", "selenium", "coverage"}


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


def test_make_compiles_the_courses_modules_before_the_demo_and_the_tests(tmp_path):
    """An editable install compiles none of the course's modules, and where
    PYTHONDONTWRITEBYTECODE is set (or in a sandbox, which may not write) every process would
    compile them again: does `make bytecode` write them anyway, and do `make demo` and `make
    test` make it first?"""
    import shutil
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ["pyproject.toml", "requirements/lock.txt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    for module in ["autograder/grader/grade.py", "tools/build.py"]:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("x = 1\n")
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "installed").touch()  # newer than pyproject.toml and the lock: nothing to install
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(["make", "-s", "bytecode", f"PY={sys.executable}", f"VENV={venv}"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    tag = sys.implementation.cache_tag
    for pyc in [f"autograder/grader/__pycache__/grade.{tag}.pyc", f"tools/__pycache__/build.{tag}.pyc"]:
        assert (tmp_path / pyc).is_file(), pyc
    for target in ["demo", "test"]:
        plan = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True).stdout
        assert "-m compileall -q autograder tools" in plan, target
        first_run = plan.index("-m autograder.demo" if target == "demo" else "-m pytest")
        assert plan.index("-m compileall") < first_run, target


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


def install_cell_sources():
    """{notebook: source of its first code cell} of the release notebooks."""
    import json
    firsts = {}
    for path in sorted((ROOT / "release" / "backprop_ninja").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        firsts[path.name] = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    return firsts


def test_every_release_notebook_opens_with_the_install_cell_of_the_course_url():
    """Is the first code cell of every release notebook (right under its title) the same install
    cell, with the URL of pyproject.toml's [project.urls] Repository, the one place it is kept?"""
    import cells  # tools/
    url = PROJECT["urls"]["Repository"]
    assert cells.COURSE_URL == url
    firsts = install_cell_sources()
    assert len(firsts) == 4 and set(firsts.values()) == {cells.INSTALL.format(url=url).strip("\n")}
    assert f'"install --quiet git+{url}"' in cells.INSTALL.format(url=url)


class FakeIPython:
    def __init__(self):
        self.calls = []

    def run_line_magic(self, magic, line):
        self.calls.append((magic, line))


def run_install_cell(monkeypatch, *, colab, installed):
    """Execute the install cell's source as a kernel would, with a fake get_ipython (and a fake
    google.colab, or autograder missing); return the magics it ran."""
    import importlib.util
    import types
    source = next(iter(install_cell_sources().values()))
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if not installed:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "autograder" else real(name, *a))
    ipython = FakeIPython()
    exec(compile(source, "install_cell", "exec"), {"get_ipython": lambda: ipython})
    return ipython.calls


def test_the_install_cell_does_nothing_where_the_course_is_installed(monkeypatch, capsys):
    """Off Colab, with autograder importable: no magic run, nothing printed."""
    assert run_install_cell(monkeypatch, colab=False, installed=True) == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("colab, installed", [(True, True), (True, False), (False, False)])
def test_the_install_cell_pip_installs_the_course_on_colab_or_where_it_is_missing(monkeypatch, colab, installed):
    """On Colab (google.colab imported), or wherever autograder is not importable, does the
    cell run `%pip install git+URL`, once, and nothing else?"""
    url = PROJECT["urls"]["Repository"]
    assert run_install_cell(monkeypatch, colab=colab, installed=installed) == [("pip", f"install --quiet git+{url}")]
