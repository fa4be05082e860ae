"""One learner's bounds hold across its processes and end with it (sandbox.LEARNER): is nothing
a learner's kernel leaves in IPC or keyrings visible to the next kernel forked from the same
server, are its memory, /tmp, /dev/shm and working folder capped as a whole, and are the
grader and the next learner fine after a learner hit a cap? Each test runs cells in real
kernels, as nbgrader's Execute does; the learner's code there is unrestricted Python."""
import os
import signal
import subprocess
import sys

import psutil
import pytest
from nbclient.exceptions import DeadKernelError

from autograder.grader import cgroup, sandbox
from test_kernel_server import folder, run, server_pid  # noqa: F401 (folder: the same fixture)

pytestmark = pytest.mark.skipif(not sandbox.shutil.which("bwrap"), reason="the kernel server runs under bubblewrap")
MiB = 2**20

# System V shared memory, message queue and semaphore set, a POSIX message queue, and keys in
# the user keyring, the session keyring and a named session keyring, all by fixed names
IPC = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
KEY, ADD_KEY, KEYCTL, SEARCH, JOIN, LINK, SETPERM = 0x4242, 248, 250, 10, 1, 8, 5
def leave():
    made = [libc.shmget(KEY, 1 << 20, 0o1666) >= 0, libc.msgget(KEY, 0o1666) >= 0,
            libc.semget(KEY, 1, 0o1666) >= 0,
            libc.mq_open(b"/ninja-left", os.O_CREAT | os.O_RDWR, 0o666, None) >= 0]
    made += [libc.syscall(ADD_KEY, b"user", b"ninja-left", b"x", 1, ring) > 0 for ring in (-4, -3)]
    named = os.fork()
    if named == 0:  # a named session keyring with a key in it, linked into the user keyring
        ring = libc.syscall(KEYCTL, JOIN, b"ninja-named")
        libc.syscall(KEYCTL, SETPERM, ring, 0x3f3f0000)  # its user may join it by name
        libc.syscall(KEYCTL, LINK, ring, -4)
        os._exit(0 if libc.syscall(ADD_KEY, b"user", b"ninja-left", b"x", 1, -3) > 0 else 1)
    made.append(os.waitpid(named, 0)[1] == 0)
    return made
def found():
    seen = {"shm": libc.shmget(KEY, 0, 0) >= 0, "msg": libc.msgget(KEY, 0) >= 0,
            "sem": libc.semget(KEY, 0, 0) >= 0, "mqueue": libc.mq_open(b"/ninja-left", os.O_RDONLY) >= 0,
            "user key": libc.syscall(KEYCTL, SEARCH, -4, b"user", b"ninja-left", 0) > 0,
            "session key": libc.syscall(KEYCTL, SEARCH, -3, b"user", b"ninja-left", 0) > 0}
    for name in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{name}") as f:
            seen[f"any {name}"] = len(f.read().splitlines()) > 1
    named = os.fork()
    if named == 0:
        libc.syscall(KEYCTL, JOIN, b"ninja-named")
        os._exit(0 if libc.syscall(KEYCTL, SEARCH, -3, b"user", b"ninja-left", 0) > 0 else 1)
    seen["named keyring's key"] = os.waitpid(named, 0)[1] == 0
    return sorted(k for k, v in seen.items() if v)
'''




def test_ipc_objects_and_keys_a_kernel_leaves_are_not_seen_by_the_next(folder):
    """Is every IPC object and key one kernel leaves gone for the next kernel of the same server?"""
    left, forked, _ = run([IPC, "print(leave(), found())"], folder)
    assert forked
    made, found = left[1].split("] ", 1)
    # (mq_open's O_CREAT may say EACCES under the kernel's Landlock rules, writes.py, though it made the queue)
    assert found == str(["any msg", "any sem", "any shm", "mqueue", "msg", "named keyring's key", "sem", "session key",
                         "shm", "user key"]), "the probe could not leave (or find in its own kernel) all it should"
    assert made.split(", ")[:3] + made.split(", ")[4:] == ["[True", "True", "True", "True", "True", "True"]
    server = server_pid()
    seen, forked, _ = run([IPC, "print(found())"], folder)
    assert forked and server_pid() == server, "the same server forked the next kernel"
    assert seen[1] == "[]", f"the next kernel found {seen[1]}"


# (a kernel in a sandbox of its own is in its memory cgroup too: test_kernel_server.py says so)
@pytest.mark.parametrize("bound, server", [("cgroup", "1"), ("one process", "1"), ("one process", "0")])
def test_three_processes_of_a_third_of_the_bound_cannot_all_hold_it(folder, monkeypatch, bound, server):
    """Is one kernel's memory bounded across its processes (three of 0.35 x the bound each fail
    to all hold it), forked from the kernel server or in a sandbox of its own, by a memory
    cgroup or, where there is none, by running the learner in one process (oneprocess.py),
    and are the grader and the next kernel fine after it? A process counts as holding its
    memory if it said so and is still alive once all have spoken: the cgroup's out-of-memory
    killer takes the largest, often one that had already said it held."""
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", server)
    if bound == "one process":
        monkeypatch.setattr(cgroup, "_base", None)  # as on a machine without a writable memory cgroup
    elif cgroup.base() is None:
        pytest.skip("no writable memory cgroup here")
    size = int(sandbox.LEARNER["memory_bytes"] * 0.35) // MiB * MiB  # 2.1 GiB of 6 GiB
    hold = (f"import sys, time; block = b'x' * {size}; print('held', flush=True); "
            "sys.stdin.read()")  # holds its memory until the cell ends
    start = f"subprocess.Popen([sys.executable, '-c', {hold!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)"
    cell = ("import multiprocessing, os, subprocess, sys, time\n"
            "procs, refused = [], []\n"
            "for how in ['popen', 'fork', 'multiprocessing', 'posix_spawn', 'popen']:\n"
            "    try:\n"
            "        if how == 'popen':\n"
            f"            procs.append({start})\n"
            "        elif how == 'fork':\n"
            "            pid = os.fork()\n"
            "            if pid == 0:\n"
            "                os._exit(0)\n"
            "            os.waitpid(pid, 0)\n"
            "        elif how == 'multiprocessing':\n"
            "            p = multiprocessing.get_context('fork').Process(target=print)\n"
            "            p.start(); p.join()\n"
            "        else:\n"
            "            os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n"
            "    except OSError as e:\n"
            "        refused.append(how)\n"
            "said = [p.stdout.readline().strip() for p in procs]\n"
            "time.sleep(1)\n"
            "print(sum(s == 'held' and p.poll() is None for s, p in zip(said, procs)), len(procs), refused)\n"
            "for p in procs:\n"
            "    p.kill()")
    cell = cell.replace("'popen']:", "'popen', 'popen']:", 1)
    try:
        printed, forked, _ = run([cell], folder, timeout=120)
        assert forked == (server == "1")
        held, started, refused = printed[0].split(" ", 2)
        if bound == "one process":
            assert (held, started) == ("0", "0"), f"{printed[0]}: the learner started processes"
            assert refused == str(["popen", "fork", "multiprocessing", "posix_spawn", "popen", "popen"])
        else:
            assert started == "3" and held in ("0", "1", "2"), f"{held} processes of {size // MiB} MiB held their memory"
    except DeadKernelError:  # the kernel itself was the one the cgroup's OOM killer took
        assert bound == "cgroup", "a kernel of one process died"
    assert psutil.Process().is_running()
    again, forked, _ = run(["print(6 * 7)"], folder)
    assert again == ["42"], "the next kernel runs"


def test_the_cgroups_a_killed_grading_process_leaves_are_swept(tmp_path):
    """A grading process killed with SIGKILL cannot remove its learners' memory cgroups: does the
    next sweep remove them, killing what they still hold, and keep those of live processes?"""
    found = cgroup.base()
    if found is None:
        pytest.skip("no writable memory cgroup here")
    maker = subprocess.Popen([sys.executable, "-c", "pass"])
    maker.wait()  # its pid now names nobody
    left = os.path.join(found[1], f"ninja-learner-{maker.pid}-0")
    mine = os.path.join(found[1], f"ninja-learner-{os.getpid()}-999")
    os.mkdir(left)
    os.mkdir(mine)
    try:
        sleeper = subprocess.Popen(["sleep", "600"])
        with open(os.path.join(left, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        cgroup.sweep(found[1])
        assert not os.path.exists(left) and sleeper.wait(timeout=10) == -signal.SIGKILL
        assert os.path.isdir(mine), "a live grading process's cgroup was removed"
    finally:
        for path in (left, mine):
            if os.path.exists(path):
                os.rmdir(path)


WRITE = ("import os\n"
         "def fill(folder, total={total}, chunk={chunk}):\n"
         "    written = 0\n"
         "    block = b'x' * (1 << 20)\n"
         "    try:\n"
         "        for i in range(total // chunk):\n"
         "            with open(os.path.join(folder, f'fill-{{i}}'), 'wb') as f:\n"
         "                for _ in range(chunk >> 20):\n"
         "                    f.write(block); f.flush(); written += 1 << 20\n"
         "    except OSError as e:\n"
         "        return written, e.errno\n"
         "    return written, 0\n")


@pytest.mark.parametrize("server", ["1", "0"])
@pytest.mark.parametrize("where, cap", [("/tmp", "tmp_bytes"), ("/dev/shm", "shm_bytes"), (".", "work_bytes")])
def test_writing_512_mib_is_stopped_at_the_folders_cap(folder, monkeypatch, where, cap, server):
    """Is a kernel's writing of 512 MiB into /tmp, /dev/shm or its working folder stopped at
    that folder's cap, forked from the kernel server or in a sandbox of its own, leaving the
    grader's disk and the next kernel alone?"""
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", server)
    before = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    printed, forked, _ = run([WRITE.format(total=512 * MiB, chunk=16 * MiB), f"print(fill({where!r}))"], folder, timeout=120)
    assert forked == (server == "1")
    written, errno = eval(printed[1])
    assert errno == 28 and written <= sandbox.LEARNER[cap], f"{written // MiB} MiB written into {where} (errno {errno})"
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) == before
    again, forked, _ = run([WRITE.format(total=128 * MiB, chunk=16 * MiB), f"print(fill({where!r}))"], folder)
    assert forked == (server == "1") and again[1] == f"({128 * MiB}, 0)", "the next kernel has the folder's room back"


SOCKETS = r'''
import json, os
from ipykernel import get_connection_file
with open(get_connection_file()) as f:
    sockets = os.path.dirname(json.load(f)["ip"])
def tries():
    done = []
    for name, make in [("file", lambda p: open(p, "wb").write(b"x" * (1 << 20))), ("folder", os.mkdir),
                       ("fifo", os.mkfifo), ("link", lambda p: os.symlink("/tmp", p)),
                       ("rename", lambda p: os.rename(get_connection_file(), p))]:  # (where it is there)
        try:
            make(os.path.join(sockets, f"left-{name}"))
            done.append(name)
        except OSError:
            pass
    return done
print(os.path.isdir(sockets), tries(), open("/tmp/x", "w").write("ok"), open("mine.txt", "w").write("ok"))
'''


@pytest.mark.parametrize("server", ["1", "0"])
def test_a_kernel_writes_nothing_into_its_socket_folder_on_the_graders_disk(folder, monkeypatch, server):
    """A kernel's sockets live in a folder on the grader's disk that its sandbox shows writable:
    may it write files, folders, FIFOs or links there (writes.py: no), while its capped
    folders (/tmp, its working folder) stay writable?"""
    from autograder.grader import writes
    if writes.version() < 1:
        pytest.skip("no Landlock in this machine's kernel")
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", server)
    printed, forked, _ = run([SOCKETS], folder)
    assert forked == (server == "1")
    assert printed[0] == "True [] 2 2", printed[0]
