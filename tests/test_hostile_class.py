"""A class holding one learner of each hostile kind beside honest ones, graded every way: the
class runner (full and --scores-only) and plain `nbgrader autograde` each exit 0, every right
answer keeps its points, nothing is left in the run's temporary folder, the ids reach the
output inert, and a learner whose folder holds a tree the grader does not take (a folder 1,500
levels deep, a sparse file of 1.5 GiB, a FIFO and a socket: test_learner_trees) is told what
was left out and why."""
import os
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder.exercises import EXERCISES
from autograder.grader import course, examples, tree
from autograder.grader.course import ASSIGNMENT
from conftest import grade_every_way, grading_note
from test_learner_trees import DEEP, DEEP_CELLS, deep_folder, special_files

pytestmark = pytest.mark.skipif(not tree.os.path.exists("/usr/bin/bwrap"), reason="grading runs under bubblewrap")
EX2 = EXERCISES["ex2"].notebook
IPC = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "shm = libc.shmget(0x4e494e4a, 64 << 20, 0o1666)  # IPC_CREAT | 0666, left for the next learner\n"
       "print('left', shm)")
FILL = "with open('/tmp/fill', 'wb') as f:\n    for _ in range(512):\n        f.write(b'x' * 2**20)"
LEAK = ("class K48(Exception):\n    pass\n"
        "def checked(x):\n    if n != 32:\n        raise K48(f'{x.shape}')\n    return x\n"
        "dlogits = checked(F.softmax(logits, 1))\ndlogits[range(n), Yb] -= 1\ndlogits /= n")
HONEST_IDIOMS = ("import numpy as np\n"
                 "def _indexed_logprobs(x, _):\n    return x[range(n), _]\n"
                 "p = F.softmax(logits, 1).numpy().astype(np.float64)\n"
                 "p[range(n), Yb.numpy()] -= 1\n"
                 "dlogits = torch.tensor(p / n, dtype=torch.float32)")
# learner -> (what is odd about it, the Exercise 2 points it deserves)
LEARNERS = {"honest": 4, "deep": 4, "sparse": 4, "special": 4, "deep-kernel": 4, "ipc": 4, "fill": 4,
            "remote-image": 4, "hidden-leak": 0, "idioms": 4,
            '=HYPERLINK("x","y")': 4, "\x1b]0;pwned\x07\x1b[2Jid": 4}


def answer_cell(nb):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "ex2_dlogits")


def build_class(c):
    """Each learner hands in Exercise 2, right but for 'hidden-leak'; each adds its own hostility."""
    read = lambda p: nbformat.read(p, as_version=4)  # noqa: E731
    right = examples.solved(read(c / "release" / ASSIGNMENT / EX2), read(c / "source" / ASSIGNMENT / EX2))
    for s in LEARNERS:
        folder = c / "submitted" / s / ASSIGNMENT
        folder.mkdir(parents=True)
        nb = nbformat.from_dict(right)
        at = answer_cell(nb)
        extra = {"deep-kernel": DEEP_CELLS, "ipc": [IPC], "fill": [FILL]}.get(s, [])
        nb.cells[at + 1:at + 1] = [new_code_cell(src) for src in extra]
        if s == "remote-image":
            nb.cells.insert(at, new_markdown_cell("![pixel](https://tracker.invalid/pixel.png)"))
        if s == "hidden-leak":
            nb.cells[at].source = LEAK
        if s == "idioms":
            nb.cells[at].source = HONEST_IDIOMS
        nbformat.write(nb, folder / EX2)
        if s == "deep":
            (folder / "notes.txt").write_text("kept\n")
            deep_folder(folder, DEEP)
        if s == "sparse":
            with open(folder / "big.bin", "wb") as f:
                f.truncate(int(1.5 * 2**30))
        if s == "special":
            special_files(folder)


def note(c, s):
    """The grading note of the learner's graded Exercise 2 ('' if none, None if not graded)."""
    path = c / "autograded" / s / ASSIGNMENT / EX2
    return grading_note(nbformat.read(path, as_version=4)) if path.is_file() else None


@pytest.fixture(scope="module")
def graded(tmp_path_factory, generated_course):
    """{run: (exit code, output, TMPDIR)} of the class runner, --scores-only and plain nbgrader
    autograde, each with a TMPDIR of its own; after the full and the plain run, the gradebook's
    scores and each learner's grading note."""
    base = tmp_path_factory.mktemp("hostile-class")
    try:
        c = generated_course(base / "course")
        build_class(c)
        runs = grade_every_way(c, base, lambda c: (course.scores(c), {s: note(c, s) for s in LEARNERS}))
        yield c, runs
    finally:
        tree.remove(base)


@pytest.mark.parametrize("run", ["full", "scores", "plain"])
def test_every_way_of_grading_a_hostile_class_exits_0_and_leaves_nothing(graded, run):
    """Does each way of grading the class exit 0 and leave its TMPDIR empty?"""
    _, runs = graded
    code, out, tmp = runs[run]
    assert code == 0, out[-4000:]
    assert os.listdir(tmp) == [], f"left behind: {os.listdir(tmp)}"


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_every_learner_of_a_hostile_class_gets_what_their_answer_deserves(graded, run):
    """Does each learner get the Exercise 2 points their answer deserves (all but the one that
    raises on hidden batches), whatever else they handed in or did?"""
    _, runs = graded
    scores, _ = runs[run]
    assert {s: scores.get(s, {}).get(EX2[:-6]) for s in LEARNERS} == {s: (p, 4) for s, p in LEARNERS.items()}


def test_scores_only_agrees_and_writes_inert_ids(graded):
    """Does --scores-only give the same totals, with every id inert in its CSV?"""
    _, runs = graded
    totals = {r["student"]: float(r["score"]) for r in runs["csv"] if r["item"] == "total"}
    assert sorted(totals.values()) == sorted(float(p) for p in LEARNERS.values())
    assert all(not s.startswith("=") and "\x1b" not in s for s in totals)


def test_nothing_hidden_or_raw_reaches_the_instructors_terminal(graded):
    """Does the class runner's output hold no escape character and no hidden batch size from
    the learner's exception?"""
    _, runs = graded
    for run in ("full", "scores"):
        out = runs[run][1]
        assert "\x1b" not in out and "\x07" not in out
        assert "K48" not in out and not re.search(r"torch\.Size\(\[(19|48)", out)


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_the_learner_is_told_what_was_left_out_of_their_folder_and_why(graded, run):
    """Does each learner with a tree the grader does not take find, in their graded notebook,
    what of their folder was not used and why, and is their other file still there?"""
    c, runs = graded
    _, notes = runs[run]
    assert None not in notes.values(), f"not graded: {[s for s in notes if notes[s] is None]}"
    assert re.search(r"`d(/d)+` in your submission is more than \d+ folders deep", notes["deep"]), notes["deep"]
    assert "`big.bin` in your submission is larger than" in notes["sparse"], notes["sparse"]
    assert "`pipe` in your submission is a" in notes["special"] and "`sock` in your submission is a" in notes["special"]
    assert (c / "autograded" / "deep" / ASSIGNMENT / "notes.txt").read_text() == "kept\n"
    assert not (c / "autograded" / "sparse" / ASSIGNMENT / "big.bin").exists()
    assert notes["honest"] == ""


@pytest.mark.parametrize("run", ["full", "scores"])
def test_the_class_runner_reports_what_it_left_out(graded, run):
    """Does the class runner's output name, for each learner, what it left out and why?"""
    _, out, _ = graded[1][run]
    assert "left out of deep's submission" in out and "folders deep" in out
    assert "left out of sparse's submission" in out and "`big.bin` is larger than" in out
    assert "left out of honest's submission" not in out
