"""course.NBGRADER, how the demo and the tests run nbgrader's commands: nbgrader's own command
line, without the grammar jsonschema compiles for the "iri" format (nbgrader_cli.py)."""
import subprocess
import sys

import pytest

from autograder.grader import course

PROBE = ("import sys{pre}\nimport jsonschema, nbformat\n"
         "print(sorted(f for f in jsonschema.FormatChecker().checkers if f.startswith('iri')))\n"
         "nbformat.validate(nbformat.v4.new_notebook())\n"
         "try:\n    nbformat.validate({{'cells': 1}})\nexcept nbformat.ValidationError:\n    print('refused')\n")


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_it_is_nbgraders_own_command_line():
    ours, theirs = run([*course.NBGRADER, "--version"]), run([sys.executable, "-m", "nbgrader", "--version"])
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout and ours.stdout.strip()


@pytest.mark.parametrize("pre, iri", [("", ["iri", "iri-reference"]),
                                      ("\nimport autograder.grader.nbgrader_cli", [])])
def test_only_the_iri_format_check_is_left_out_and_notebooks_are_still_validated(pre, iri):
    """With the module imported first, jsonschema has no "iri" check (and nbformat still accepts
    a notebook and refuses a broken one); without it, it has both (the probe can tell)."""
    out = run([sys.executable, "-c", PROBE.format(pre=pre)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [str(iri), "refused"]
