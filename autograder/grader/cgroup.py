"""One learner's memory, bounded across all its processes: a memory cgroup per learner.

The grader (outside any sandbox) makes a cgroup below its own memory cgroup for each learner's
kernel and each learner's replay, with the learner's memory bound as its limit (swap included),
moves the learner's first process into it before any of the learner's code runs (everything
it starts is then inside too: a process cannot leave it, the sandbox shows no cgroup file
system), and at the end kills whatever is left in it and removes it. Where the machine gives
no writable memory cgroup (no root, a cgroup v2 tree whose controllers are not delegated),
a learner's code runs in one process that may start no other (oneprocess.py), so that the
per-process limits bound it whole (sandbox.LIMITS, KERNEL_LIMITS); which of the two holds is
logged once per process.
"""
import itertools
import logging
import os
import re
import signal
import time

log = logging.getLogger(__name__)
V1, V2 = "/sys/fs/cgroup/memory", "/sys/fs/cgroup"
_base = False  # not looked up yet
_names = itertools.count()


def own(controller):
    """This process's cgroup path in the hierarchy of `controller` ("" for cgroup v2's)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(","):
                return path
    return None


def _writable(folder):
    """Whether a cgroup can be made and removed in `folder`."""
    probe = os.path.join(folder, f"ninja-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def _find():
    """(version, folder) where learners' cgroups go, or None."""
    try:
        if os.path.exists(os.path.join(V2, "cgroup.controllers")):  # cgroup v2 only
            folder = V2 + own("")
            with open(os.path.join(folder, "cgroup.subtree_control"), "r+") as f:
                if "memory" not in f.read().split():
                    f.write("+memory")  # refused (EBUSY) if this cgroup holds processes
            return (2, folder) if _writable(folder) else None
        path = own("memory")
        folder = V1 + path if path is not None else None
        return (1, folder) if folder and os.path.isdir(folder) and _writable(folder) else None
    except OSError:
        return None


def base():
    """(version, folder) where learners' cgroups are made, or None; looked up and logged once,
    and the cgroups that grading processes now gone left there removed (sweep)."""
    global _base
    if os.environ.get("BACKPROP_NINJA_MEMORY_CGROUP") == "0":
        return None  # the instructor's word: a machine whose cgroups the grader must not touch
    if _base is False:
        _base = _find()
        log.info(describe())
        if _base:
            sweep(_base[1])
    return _base


def sweep(folder):
    """Remove the learners' cgroups in `folder` whose maker (the pid in their name) has ended, as
    a killed grading process leaves them, with anything still in them."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(r"ninja-learner-(\d+)-\d+", name)
        if m and not alive(int(m.group(1))):
            remove(os.path.join(folder, name), seconds=1)


def alive(pid):
    """Whether a process `pid` exists (on this machine's pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def describe():
    """Which bound holds on this machine, in a sentence (the class runner prints it once)."""
    found = base()
    if found:
        return f"each learner's memory is bounded across its processes (a memory cgroup v{found[0]} per learner)"
    return ("no writable memory cgroup: each learner's code runs in one process that may start no other, "
            "bounded by that process's memory limit (see sandbox.LIMITS)")


class Learner:
    """The memory cgroup of one learner's kernel or replay, limited to `limit` bytes; a no-op
    where base() is None. add(pid) moves a process in; close() kills all in it and removes it."""

    def __init__(self, limit):
        self.path = None
        found = base()
        if found is None:
            return
        version, folder = found
        path = os.path.join(folder, f"ninja-learner-{os.getpid()}-{next(_names)}")
        os.mkdir(path)
        self.path = path
        try:
            if version == 1:
                self._write("memory.limit_in_bytes", limit)
                self._write("memory.memsw.limit_in_bytes", limit, optional=True)  # with swap accounting
            else:
                self._write("memory.max", limit)
                self._write("memory.swap.max", 0, optional=True)
        except BaseException:
            self.close()
            raise

    def _write(self, name, value, optional=False):
        file = os.path.join(self.path, name)
        if optional and not os.path.exists(file):
            return
        with open(file, "w") as f:
            f.write(str(value))

    def add(self, pid):
        if self.path:
            self._write("cgroup.procs", pid)

    def close(self, seconds=5):
        """Kill every process left in the cgroup, then remove it (the grader's, not a learner's)."""
        if self.path:
            remove(self.path, seconds)
        self.path = None


def _pids(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, TypeError):
        return []


def remove(path, seconds=5):
    """Kill every process in the cgroup at `path`, then remove it, waiting at most `seconds`
    for the processes to die."""
    deadline = time.monotonic() + seconds
    while True:
        for pid in _pids(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: processes still dying
            if time.monotonic() > deadline:
                log.warning("could not remove the cgroup %s", path)
                return
            time.sleep(0.01)
