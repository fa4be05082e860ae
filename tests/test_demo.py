"""`python -m autograder.demo` explains itself: stages, figures next to the lecture's, a heading
over the names, a score table with `-` for what was not submitted and the verdict of every lost
point; it works from any folder, and every command's --help is complete."""
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.grader import course, demo
from conftest import ROOT


@pytest.mark.parametrize("module", ["autograder.grader.demo", "autograder.data", "autograder.grader.grade",
                                    "autograder.grader.report", "autograder.grader.sandbox"])
def test_every_command_has_a_complete_help_from_any_folder(tmp_path, module):
    """Does `python -m MODULE --help`, run outside the repository, print its whole usage and
    description (no sentence cut off) and exit 0 with nothing on stderr?"""
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.startswith("usage:")
    description = run.stdout.split("\n\n")[1].strip()
    assert description.endswith((".", ")")), f"cut off: {description!r}"
    if module == "autograder.grader.demo":
        for words in ["reference notebook", "lecture's", "score table", "lost point",
                      "feedback pages", "--skip-reference", "--skip-grading", "--repo"]:
            assert words in " ".join(run.stdout.split()), words


def test_the_repository_is_found_from_another_folder(tmp_path, monkeypatch):
    """Run from another folder, does the demo still find the repository it is installed from?"""
    monkeypatch.chdir(tmp_path)
    assert demo.course_root() == ROOT


def test_without_the_repository_the_demo_says_what_to_do(tmp_path):
    """Where there is no course repository (as after a plain `pip install`), does the demo stop
    with a message saying where to run it, rather than a traceback?"""
    run = subprocess.run([sys.executable, "-m", "autograder.grader.demo", "--repo", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "no course repository" in run.stderr and "make demo" in run.stderr


def test_a_learners_install_is_told_which_extra_the_demo_needs(monkeypatch, capsys):
    """In a clone where only the learner's install is present (no nbgrader), does the demo name
    the instructor extra to install, instead of failing on an import?"""
    real = demo.importlib.util.find_spec
    monkeypatch.setattr(demo.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nbgrader" else real(name, *a))
    with pytest.raises(SystemExit) as e:
        demo.main([])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "nbgrader not installed" in err and "'.[instructor]'" in err


@pytest.fixture
def tiny_repository(tmp_path):
    """A stand-in course repository whose reference notebook prints like the real one, fast."""
    cells = [new_code_cell("import time\nfor step in (1, 2):\n    print(f'{step}/2: mean loss 2.1', flush=True)\n"
                           "    time.sleep(0.2)", id="ex4_train"),
             new_code_cell("print('train 2.07  (the lecture: 2.0705)')\nprint('val   2.11  (the lecture: 2.1099)')",
                           id="ex4_evaluate"),
             new_code_cell("for name in ['carlah', 'amelle', 'khi', 'mri', 'reigh', 'skanden']:\n    print(name)",
                           id="ex4_sample")]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "backprop_ninja.ipynb")
    (tmp_path / "source" / course.ASSIGNMENT).mkdir(parents=True)
    (tmp_path / "nbgrader_config.py").write_text("")
    return tmp_path


def test_the_reference_stage_shows_progress_figures_and_names(tiny_repository):
    """Does the reference stage say what it runs, show the training's progress as it comes, print
    the figures beside the lecture's and a heading over the names, with nothing on stderr, even
    after it exits (the kernel talks over IPC, and is shut down, not left to find its parent gone)?"""
    run = subprocess.run([sys.executable, "-m", "autograder.grader.demo", "--repo", str(tiny_repository),
                          "--skip-grading"], cwd=tiny_repository, capture_output=True, text=True)
    out, err = run.stdout, run.stderr  # both pipes close when the last process holding them ends
    assert run.returncode == 0 and err == "", err
    assert "[1/4] Running the reference notebook" in out
    assert "      1/2: mean loss 2.1\n      2/2: mean loss 2.1" in out
    assert "next to the lecture's:\n  train 2.07  (the lecture: 2.0705)\n  val   2.11  (the lecture: 2.1099)" in out
    assert "6 names sampled from the trained model:\n  carlah" in out
    assert (tiny_repository / "build" / "backprop_ninja.ipynb").exists()


def test_the_kernels_own_stderr_is_kept_from_a_good_run_and_shown_for_a_bad_one(tiny_repository):
    """What the reference kernel writes to its own stderr (below its cells' output, as libzmq's
    abort on the way out does) stays off the demo's stderr when every cell ran, and is shown,
    with the stage that failed, when the kernel dies."""
    path = tiny_repository / "notebooks" / "backprop_ninja.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell("import os\nos.write(2, b'Assertion failed: noise from the kernel\\n')"))
    nbformat.write(nb, path)
    command = [sys.executable, "-m", "autograder.grader.demo", "--repo", str(tiny_repository), "--skip-grading"]
    run = subprocess.run(command, cwd=tiny_repository, capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    nb.cells.insert(1, new_code_cell("import os\nos.write(2, b'the kernel is going\\n')\nos.abort()"))
    nbformat.write(nb, path)
    run = subprocess.run(command, cwd=tiny_repository, capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "the reference notebook did not run" in run.stderr and "the kernel is going" in run.stderr


def test_every_lost_point_is_named_with_its_verdict(monkeypatch, tmp_path):
    """Does the list of lost points give each wrong item of a submitted notebook its verdict,
    group the items of one exercise that share a verdict, and leave out notebooks not submitted?"""
    from autograder.grader import report

    def row(student, exercise, item, score, points, verdict):  # the message: the verdict's data
        return dict(student=student, exercise=exercise, item=item, score=score, points=points, verdict=verdict,
                    message=verdict.split(": ", 2)[-1] if "(0/" in verdict else "")
    rows = [row("blank", "ex1", k, 0, 1, f"d{k}: WRONG (0/1): not defined") for k in ["probs", "logprobs"]]
    rows += [row("one_mistake", "ex1", "logprobs", 0, 1,
                 "dlogprobs: WRONG (0/1): does not match on the notebook's batch: off by a constant factor of n"),
             row("one_mistake", "ex1", "probs", 1, 1, "dprobs: ok (1/1)"),
             row("one_mistake", "ex2", "logits", 0, 4, "dlogits: WRONG (0/4): not defined")]
    monkeypatch.setattr(report, "rows", lambda *a: rows)
    monkeypatch.setattr(report, "submitted", lambda *a: {"blank": {"ex1_atomic_graph"},
                                                         "one_mistake": {"ex1_atomic_graph"}})
    assert report.lost_points(tmp_path) == {
        "blank": [["ex1", ["dlogprobs", "dprobs"], 2, "not defined"]],
        "one_mistake": [["ex1", ["dlogprobs"], 1, "does not match on the notebook's batch: off by a constant factor of n"]]}
    assert "  ex1 dlogprobs: -1: does not match" in report.lost_points_table(tmp_path)


def test_without_bubblewrap_the_demo_stops_at_once_with_one_line(tmp_path):
    """On a machine without bubblewrap, does the demo stop before its long first stage, with one
    line saying what to install (and how to opt out), and a non-zero exit?"""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no bwrap on this PATH
    run = subprocess.run([sys.executable, "-m", "autograder.grader.demo", "--repo", str(ROOT)], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and "apt-get install bubblewrap" in run.stderr
    assert "BACKPROP_NINJA_UNSANDBOXED=1" in run.stderr


def test_without_bubblewrap_make_stops_before_installing_anything(tmp_path):
    """`make demo` and `make test` check for bubblewrap before the venv and its 1.4 GB: one line."""
    make = subprocess.run(["which", "make"], capture_output=True, text=True).stdout.strip()
    for target, opt_out in [("demo", True), ("test", False)]:
        run = subprocess.run([make, "-n", target], cwd=ROOT, capture_output=True, text=True,
                             env={"PATH": f"{tmp_path}:/nonexistent", "HOME": str(tmp_path)}, timeout=30)
        assert run.returncode != 0 and run.stdout == ""
        assert run.stderr.count("\n") == 1 and "apt-get install bubblewrap" in run.stderr, run.stderr
        assert ("BACKPROP_NINJA_UNSANDBOXED=1" in run.stderr) == opt_out


def test_a_failed_stage_stops_the_demo_with_a_message(monkeypatch, capsys):
    """A stage that fails stops the demo there (no feedback stage, no traceback), exit 1."""
    from autograder.grader import grade
    monkeypatch.setenv("BACKPROP_NINJA_UNSANDBOXED", "1")
    monkeypatch.setattr(demo, "run_reference", lambda root, build: None)
    monkeypatch.setattr(course, "copy_course", lambda c, root: None)
    monkeypatch.setattr(course, "nbgrader", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("nbgrader generate_assignment backprop_ninja --force failed:\nno course")))
    assert demo.main([]) == 1
    out, err = capsys.readouterr()
    assert "[4/4]" not in out
    assert err.startswith("error: the demo stopped: nbgrader generate_assignment") and "Traceback" not in err
    monkeypatch.setattr(course, "nbgrader", lambda *a, **k: None)
    from autograder.grader import examples
    monkeypatch.setattr(examples, "write_submissions", lambda c: ["solutions"])
    monkeypatch.setattr(grade, "main", lambda argv: 2)
    assert demo.main([]) == 1
    out, err = capsys.readouterr()
    assert "[3/4]" in out and "[4/4]" not in out and "grading the examples failed" in err
