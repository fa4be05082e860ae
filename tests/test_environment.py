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
