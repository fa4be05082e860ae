"""Trees and files a learner controls: a folder thousands of levels deep (its path past
PATH_MAX), a sparse file of 1.5 GiB, FIFOs and sockets, in a submission or made by the
learner's kernel in its working folder. Does the grader walk, copy, read and remove them
within its bounds (autograder/grader/tree.py), grade the rest of the class and the learner's
right answers, tell the learner what was left out, and leave nothing behind?"""
import os
import re
import socket
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder.exercises import EXERCISES
from autograder.grader import course, examples, kernel_server, sandbox, tree
from autograder.grader.course import ASSIGNMENT
from conftest import grade_every_way

EX2 = EXERCISES["ex2"].notebook
DEEP = 1500  # folders: past Python's recursion limit, and their path past PATH_MAX


def deep_folder(top, levels, name="d"):
    """top/d/d/.../d, `levels` folders deep, made fd-relative (its path is too long for mkdir)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)


@pytest.fixture(autouse=True)
def tmp_path(tmp_path):
    """A test's folder, removed after it with tree.remove: pytest's own clean-up (shutil.rmtree)
    would meet the deep trees in the next session and raise RecursionError."""
    yield tmp_path
    tree.remove(tmp_path)


def special_files(folder):
    os.mkfifo(folder / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()


# --- the tree module ----------------------------------------------------------------------

def test_a_walk_of_a_tree_5000_deep_stops_at_its_bound_and_says_so(tmp_path):
    """Is a tree 5,000 folders deep walked without RecursionError or ENAMETOOLONG, down to
    BOUNDS.depth, with the folder below left out and named?"""
    deep_folder(tmp_path, 5000)
    (tmp_path / "notes.txt").write_text("mine")
    entries = list(tree.walk(tmp_path))
    folders = [e for e in entries if e.kind == tree.FOLDER]
    skipped = [e for e in entries if e.kind == tree.SKIPPED]
    assert len(folders) == tree.BOUNDS.depth
    assert [(e.rel.count("/") + 1, e.data) for e in skipped] == [
        (tree.BOUNDS.depth + 1, f"is more than {tree.BOUNDS.depth} folders deep")]
    assert (("notes.txt", tree.FILE, b"mine")) in entries


def test_a_tree_5000_deep_with_folders_without_rights_is_removed_whole():
    """Is a tree 5,000 deep whose folders have no rights (chmod 000, 0o500) removed whole by
    the user who owns it, though not root (its rights are given back on the way down)?"""
    import tempfile
    top = Path(tempfile.mkdtemp(prefix="trees-", dir="/tmp"))  # every folder above it traversable
    top.chmod(0o777)
    pid = os.fork()
    if pid == 0:  # as a user of its own, who owns the tree: root's rights would hide the modes
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            mine = top / "mine"
            mine.mkdir()
            deep_folder(mine, 5000)
            fd = os.open(mine, os.O_RDONLY)
            for level in range(5000):  # every 100th folder no rights at all, every 7th no write
                sub = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.chmod(f"/proc/self/fd/{fd}", 0o000 if level % 100 == 50 else 0o500 if level % 7 == 3 else 0o755)
                os.close(fd)
                fd = sub
            os.chmod(f"/proc/self/fd/{fd}", 0o000)
            os.close(fd)
            code = 0 if tree.remove(mine) and not os.path.lexists(mine) else 2
        finally:
            os._exit(code)
    try:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert os.listdir(top) == []
    finally:
        tree.remove(top)


def test_links_are_never_followed_by_walk_copy_or_remove(tmp_path):
    """Does a link to a folder or a file outside stay a link: walked as one (its target's name
    only), not copied, and removed itself, its target untouched?"""
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "secret.txt").write_text("not theirs")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "folder").symlink_to(outside)
    (mine / "file").symlink_to(outside / "inner" / "secret.txt")
    entries = sorted(tree.walk(mine))
    assert entries == [("file", tree.LINK, os.fsencode(outside / "inner" / "secret.txt")),
                       ("folder", tree.LINK, os.fsencode(outside))]
    left = tree.copy(mine, tmp_path / "copy")
    assert os.listdir(tmp_path / "copy") == [] and sorted(left) == [("file", "is a symbolic link"),
                                                                    ("folder", "is a symbolic link")]
    assert tree.remove(mine / "folder") and tree.remove(mine)
    assert (outside / "inner" / "secret.txt").read_text() == "not theirs"


def test_the_bounds_on_entries_and_bytes_are_honoured(tmp_path, monkeypatch):
    """Are at most BOUNDS.entries entries walked (one note for the rest), a sparse file over
    BOUNDS.file_bytes skipped by its size without being read, and the files' bytes in all
    kept under BOUNDS.bytes?"""
    bounds = tree.Bounds(depth=4, path=100, entries=50, bytes=3000, file_bytes=1000)
    for name, count in (("many", 60), ("few", 10)):
        (tmp_path / name).mkdir()
        for i in range(count):
            (tmp_path / name / f"f{i:02d}").write_bytes(b"x" * 400)
    entries = list(tree.walk(tmp_path / "many", bounds))
    assert len(entries) == 51 and entries[-1].kind == tree.SKIPPED
    assert "beyond the first 50" in entries[-1].data
    entries = list(tree.walk(tmp_path / "few", bounds))
    read = [e for e in entries if e.kind == tree.FILE]
    assert [e.rel for e in read] == [f"f{i:02d}" for i in range(7)]
    assert entries[7:] == [(f"f{i:02d}", tree.SKIPPED, "would take the submission's files past 3000 bytes")
                           for i in range(7, 10)]

    sparse = tmp_path / "sparse"
    sparse.mkdir()
    with open(sparse / "big", "wb") as f:
        f.truncate(int(1.5 * 2**30))
    (sparse / ("n" * 120)).write_text("a long name")
    assert list(tree.walk(sparse)) == [("big", tree.SKIPPED, f"is larger than {tree.BOUNDS.file_bytes} bytes"),
                                       ("n" * 120, tree.FILE, b"a long name")]
    assert list(tree.walk(sparse, bounds))[1] == ("n" * 120, tree.SKIPPED, "has a path longer than 100 bytes")
    reads = []
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or b"")
    assert tree.read_regular(sparse / "big", 2**20) == (None, f"is larger than {2**20} bytes")
    assert reads == [], "read before its size was checked"


def test_special_files_are_skipped_with_a_note_and_never_opened(tmp_path):
    """Are a FIFO (which would block an open) and a socket walked by name and kind only, and
    left out of a copy with a note?"""
    (tmp_path / "mine").mkdir()
    special_files(tmp_path / "mine")
    assert sorted(tree.walk(tmp_path / "mine")) == [("pipe", tree.SPECIAL, "a FIFO"), ("sock", tree.SPECIAL, "a socket")]
    assert sorted(tree.copy(tmp_path / "mine", tmp_path / "copy")) == [
        ("pipe", "is a FIFO, not a regular file"), ("sock", "is a socket, not a regular file")]


def test_a_learners_job_carries_no_byte_of_a_sparse_file_and_says_why(tmp_path):
    """Is a sparse file larger than the cap left out of the learner's job by its size (never
    read into the coordinator's memory), with why, and the learner's other files kept?"""
    import pickle
    from autograder.grader import jobs
    folder = tmp_path / "submitted" / "sparse" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("kept\n")
    with open(folder / "big.bin", "wb") as f:
        f.truncate(tree.BOUNDS.file_bytes + 2**20)
    learner = jobs.make_learner(tmp_path, ASSIGNMENT, "sparse")
    assert learner["submitted"] == {"notes.txt": b"kept\n"}
    assert learner["left"] == [("big.bin", f"is larger than {tree.BOUNDS.file_bytes} bytes")]
    assert len(pickle.dumps(learner)) < 2**16


# --- the kernel's working folder ----------------------------------------------------------

DEEP_CELLS = [
    f"import os\nos.makedirs('m/' * {DEEP})",
    f"top = os.getcwd()\nfor _ in range({DEEP}):\n    os.mkdir('d'); os.chdir('d')\nos.chdir(top)\nos.chmod('d', 0)",
    f"os.chdir('/tmp')\nfor _ in range({DEEP}):\n    os.mkdir('t'); os.chdir('t')\nos.chdir(top)\nprint('made')",
]


@pytest.mark.skipif(not sandbox.shutil.which("bwrap"), reason="the kernel server runs under bubblewrap")
def test_a_kernel_that_makes_deep_folders_releases_its_server_and_leaves_nothing(tmp_path, monkeypatch):
    """After a kernel made folders 1,500 deep in its working folder and in /tmp, is the kernel
    server free again (the next kernel is forked from the same server, which swept), and is
    nothing of the kernel's left on the grader's disk?"""
    from test_kernel_server import run, server_pid
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "notes.txt").write_text("mine\n")
    kernel_server.kernel_servers.stop()
    try:
        printed, forked, _ = run(DEEP_CELLS, tmp_path)
        assert forked and printed[-1] == "made", printed
        assert kernel_server.kernel_servers.owner is None or kernel_server.kernel_servers.owner() is None, "still reserved"
        assert os.listdir(kernel_server.kernel_servers.folder) == [], "the kernel's folders were left behind"
        server = server_pid()
        again, forked, _ = run(["import os\nprint(sorted(os.listdir('.')), [t for t in os.listdir('/tmp') if t == 't'])"],
                               tmp_path)
        assert forked and server_pid() == server, "the server was not free, or did not sweep"
        assert again == ["['.ipython', 'notes.txt'] []"]
        assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    finally:
        kernel_server.kernel_servers.stop()


# --- a class with such learners, graded every way -------------------------------------------

LEARNERS = ["honest", "deep", "sparse", "special", "deep-kernel"]


def build_class(c):
    """Each learner submits the right Exercise 2; all but 'honest' add a hostile tree."""
    read = lambda p: nbformat.read(p, as_version=4)  # noqa: E731
    right = examples.solved(read(c / "release" / ASSIGNMENT / EX2), read(c / "source" / ASSIGNMENT / EX2))
    folders = {}
    for s in LEARNERS:
        folders[s] = c / "submitted" / s / ASSIGNMENT
        folders[s].mkdir(parents=True)
        nb = right
        if s == "deep-kernel":
            nb = nbformat.from_dict(right)
            at = next(i for i, cell in enumerate(nb.cells)
                      if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex2_dlogits")
            nb.cells[at + 1:at + 1] = [new_code_cell(src) for src in DEEP_CELLS]
        nbformat.write(nb, folders[s] / EX2)
    (folders["deep"] / "notes.txt").write_text("kept\n")
    deep_folder(folders["deep"], DEEP)
    with open(folders["sparse"] / "big.bin", "wb") as f:
        f.truncate(int(1.5 * 2**30))
    special_files(folders["special"])


def note(c, s):
    """The grading note of the learner's graded Exercise 2 ('' if none, None if not graded)."""
    path = c / "autograded" / s / ASSIGNMENT / EX2
    if not path.is_file():
        return None
    nb = nbformat.read(path, as_version=4)
    return nb.cells[0].source if nb.cells and nb.cells[0].get("id") == "grading_note" else ""


@pytest.fixture(scope="module")
def graded(tmp_path_factory, generated_course):
    """The class graded by `python -m autograder.grade`, by `--scores-only` and by plain
    `nbgrader autograde`, each with a TMPDIR of its own: {run: (exit code, output, TMPDIR)}."""
    base = tmp_path_factory.mktemp("trees")
    try:
        c = generated_course(base / "course")
        build_class(c)
        runs = grade_every_way(c, base, lambda c: (course.scores(c), {s: note(c, s) for s in LEARNERS}),
                               jobs=2, timeout=1200)
        yield c, runs
    finally:
        tree.remove(base)  # the deep trees too (see tmp_path)


@pytest.mark.parametrize("run", ["full", "scores", "plain"])
def test_every_way_of_grading_exits_0_and_leaves_nothing_in_its_temporary_folder(graded, run):
    """Does each run (the class runner in both modes, plain nbgrader autograde with the
    course's configuration) exit 0, and leave its TMPDIR empty: no kernel's working copy, no
    job's course, nothing of a deep tree?"""
    c, runs = graded
    code, out, tmp = runs[run]
    assert code == 0, out[-4000:]
    assert os.listdir(tmp) == [], f"left behind: {os.listdir(tmp)}"


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_every_learner_gets_the_points_of_their_right_answer(graded, run):
    """Is every learner, the hostile ones too, given the 4 points of their right Exercise 2,
    in the class runner's full mode and under plain nbgrader autograde?"""
    c, runs = graded
    scores, _ = runs[run]
    assert {s: scores.get(s, {}).get(EX2[:-6]) for s in LEARNERS} == {s: (4, 4) for s in LEARNERS}


def test_scores_only_scores_every_learner(graded):
    c, runs = graded
    totals = {r["student"]: float(r["score"]) for r in runs["csv"] if r["item"] == "total"}
    assert totals == {s: 4.0 for s in LEARNERS}


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_the_learner_is_told_what_was_left_out_of_their_folder_and_why(graded, run):
    """Does each hostile learner's graded notebook say what of their folder was not used and
    why, and is their other file still there?"""
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
