import re
import tomllib

from conftest import ROOT


def test_environment_yml_pins_the_same_packages_as_pyproject():
    """Does environment.yml list exactly pyproject.toml's pinned dependencies (and Python 3.11)?"""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    yml = (ROOT / "environment.yml").read_text()
    pins = re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s]+)\s*$", yml, re.M)
    assert sorted(pins) == sorted(deps)
    assert re.search(r"^\s+- python=3\.11\s*$", yml, re.M)
    assert all("==" in d for d in deps), "every dependency is pinned exactly"


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
