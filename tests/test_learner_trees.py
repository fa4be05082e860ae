"""Trees and files a learner controls: a folder thousands of levels deep (its path past
PATH_MAX), a sparse file of 1.5 GiB, FIFOs and sockets, in a submission or made by the
learner's kernel in its working folder. Does the grader walk, copy, read and remove them
within its bounds (autograder/grader/tree.py) and leave nothing behind? (A class of such
learners, graded every way, is in test_hostile_class: it keeps their right answers' points and
tells each what was left out.)"""
import os
import socket
from pathlib import Path

import pytest

from autograder.grader import kernel_server, sandbox, tree
from autograder.grader.course import ASSIGNMENT

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
