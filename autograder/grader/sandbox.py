"""The sandbox learner code runs in: the bounds on it (LIMITS, KERNEL_LIMITS, LEARNER), the
bubblewrap command line that confines a process (no network, a read-only view of Python, the
autograder package and the data, size-capped /tmp and /dev/shm, a user of its own), the
limits set before it starts, and a sandboxed server process this process talks to over a
pipe pair (Spawned). Its users: replay_server.py (the fork server that replays answers,
child.py) and kernel_server.py (the learners' Jupyter kernels, kernels.py).
"""
import ctypes
import fcntl
import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import data
from . import cgroup as cgroups
from . import oneprocess, tree, wire

PACKAGE = Path(__file__).resolve().parent.parent  # autograder/, the learner side included
# The bounds on learner code, in one place. A learner is one replay (the fork server's learner
# process and its exercises' children) or one notebook's kernel and all it starts.
#
# | What                          | Bound (replay / kernel)   | How                                        |
# |-------------------------------|---------------------------|--------------------------------------------|
# | memory, all processes at once | 6 GiB (LEARNER)           | a memory cgroup per learner (cgroup.py),   |
# |                               |                           | swap included; tmpfs pages count too       |
# | memory, one process           | 6 GiB / 6 GiB             | RLIMIT_AS (the only bound without cgroup)  |
# | processes and threads         | 64 / 128                  | RLIMIT_NPROC of the sandbox's own user     |
# | CPU time, one process         | 60 s / 600 s              | RLIMIT_CPU (per exercise child: 60 s)      |
# | wall time                     | 120 s / nbgrader's        | the grader's deadline                      |
# | one file written              | 64 MiB                    | RLIMIT_FSIZE                               |
# | open files                    | 256                       | RLIMIT_NOFILE                              |
# | /tmp, /dev/shm                | 256 MiB each (LEARNER)    | size-capped tmpfs (bwrap --size), swept    |
# | the kernel's working folder   | 384 MiB, 10000 files      | a tmpfs in the kernel's mount namespace,   |
# |                               |                           | its copy of the submission inside          |
# | IPC objects, keys             | the learner's own         | user+IPC namespace and session keyring per |
# |                               |                           | learner (child.isolate): gone with it      |
# | writes elsewhere (a kernel)   | none; sockets only in its | Landlock (writes.py), where Linux has it   |
# |                               | socket folder             |                                            |
# Without a writable memory cgroup (logged once), a learner's code runs in one process that may
# start no other (oneprocess.py: a seccomp filter), so that its RLIMIT_AS of 6 GiB bounds all its
# memory; without unprivileged user namespaces a server serves one learner (a fresh sandbox each).
LIMITS = dict(cpu_seconds=60, wall_seconds=120, memory_bytes=6 * 2**30, file_bytes=64 * 2**20,
              processes=64, statement_seconds=10, open_files=256)
KERNEL_LIMITS = dict(cpu_seconds=600, memory_bytes=6 * 2**30, file_bytes=64 * 2**20, processes=128, open_files=256)
KERNEL_COPY = tree.BOUNDS  # what of a submission's folder the kernel gets (depth, entries, bytes)
LEARNER = dict(memory_bytes=6 * 2**30, tmp_bytes=256 * 2**20, shm_bytes=256 * 2**20,
               work_bytes=KERNEL_COPY.bytes + 128 * 2**20)
# The environment of a sandboxed process: these of the grader's variables, nothing else.
KERNEL_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING",
              "BACKPROP_NINJA_TRUSTED", "BACKPROP_NINJA_NAMES", "OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY")
RUN_ENV = ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "BACKPROP_NINJA_TRUSTED")  # read by cells only
_uids = itertools.count()


def one_process():
    """Whether a learner's code must run in one process (oneprocess.py): where no memory cgroup
    bounds its processes together (cgroup.py), their product must stay within the bound."""
    return cgroups.base() is None


class SandboxError(RuntimeError):
    """The learner's process failed as a whole (timeout, crash, memory): no tensors came back."""


def bwrap_missing():
    """'' if bubblewrap is installed (or BACKPROP_NINJA_UNSANDBOXED is set), else what to do."""
    if shutil.which("bwrap") or os.environ.get("BACKPROP_NINJA_UNSANDBOXED"):
        return ""
    return ("bubblewrap (bwrap) is not installed: apt-get install bubblewrap (or, on a machine "
            "without it, set BACKPROP_NINJA_UNSANDBOXED=1 to grade without a sandbox)")


SUN_PATH = 107  # bytes of a Unix socket's path (sockaddr_un.sun_path, less its NUL)
SOCKET_NAMES = len("/ninja-kernels-4194304-12345678/ninja-kernel-12345678/kernel-65535")  # pids: 7 digits


def socket_base():
    """Where the kernels' socket folders go: the temporary folder, unless it lies below /tmp or
    /dev (a kernel's sandbox has a tmpfs of its own there, where it may write freely, so its
    socket folder would be writable too: writes.py) or its path is too long for a Unix
    socket's below it (a TMPDIR deep in a home or a test's folder); then /var/tmp (or /tmp
    where /var/tmp is not usable). Their names carry the pid of the process that made them:
    whose they are, in a folder that other runs share."""
    base = tempfile.gettempdir()
    below = any(os.path.commonpath([os.path.realpath(base), p]) == p for p in ("/tmp", "/dev"))
    if below or len(os.fsencode(base)) + SOCKET_NAMES > SUN_PATH:
        for other in ("/var/tmp", "/tmp"):
            if os.path.isdir(other) and os.access(other, os.W_OK | os.X_OK):
                return other
    return base


def grading_folders():
    """Every folder where a grading process makes folders of its own (named by its pid): the
    temporary folder, /tmp and socket_base()."""
    return sorted({tempfile.gettempdir(), "/tmp", socket_base()})


def sandbox_uid():
    """A user id of its own for each sandboxed process (none of the machine's users): its
    process limit then binds, even where the grader runs as root."""
    return 200_000 + (os.getpid() * 1000 + next(_uids)) % 800_000


@dataclass(frozen=True)
class Profile:
    """What a sandboxed process sees and may do, as data; command() is bubblewrap's command
    line for it. Every namespace is its own (with no user namespace where the grader is root:
    there it becomes `uid`, without capabilities, so its limits bind); /proc and /dev are its
    own, /tmp and /dev/shm size-capped tmpfs; of the machine it sees only `read_only` and
    `writable` (and the folders above them, traversable), starting in `workdir`."""
    read_only: tuple
    writable: tuple
    workdir: str
    uid: object = None            # int: the user a root grader's process becomes; None: its own
    tmpfs: tuple = ()             # (path, bytes) of each size-capped tmpfs
    namespaces_as_root: tuple = ("ipc", "pid", "net", "uts", "cgroup-try")
    capabilities_as_root: tuple = ("CAP_SETUID", "CAP_SETGID")  # to become uid, then dropped
    unset_env: tuple = ("JPY_PARENT_PID",)  # ipykernel would take pid 1 (bwrap) as its parent gone

    def command(self):
        bwrap = shutil.which("bwrap")
        if not bwrap:
            return []
        root = os.geteuid() == 0 and self.uid is not None
        if root:
            args = [bwrap, *(f"--unshare-{n}" for n in self.namespaces_as_root), "--cap-drop", "ALL"]
            for cap in self.capabilities_as_root:
                args += ["--cap-add", cap]
        else:
            args = [bwrap, "--unshare-all", "--cap-drop", "ALL"]
        args += ["--die-with-parent", "--new-session"]
        for name in self.unset_env:
            args += ["--unsetenv", name]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for path, size in self.tmpfs:
            args += ["--perms", "1777", "--size", str(size), "--tmpfs", path]
        # the folders above each bound path, traversable (the machine's may not be: /root is 0700)
        parents = sorted({str(q) for p in self.read_only + self.writable for q in Path(p).parents
                          if str(q) not in ("/", *(t for t, _ in self.tmpfs))}, key=lambda q: q.count("/"))
        for path in parents:
            args += ["--perms", "0755", "--dir", path]
        for path in self.read_only:
            args += ["--ro-bind", path, path]
        for path in self.writable:
            args += ["--bind", path, path]
        args += ["--chdir", self.workdir, "--"]
        if root:
            args += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                     "--clear-groups", "--"]
        return args


def profile(scratch, writable=(), readable=(), uid=None, workdir=None):
    """The profile of a child confined to Python, the autograder package, the data and
    `scratch` (its working folder unless `workdir` says otherwise; None: the sandbox's own
    /tmp, nothing of the machine's)."""
    ro = {"/usr", "/lib", "/lib64", "/bin", "/etc/alternatives", "/etc/fonts", sys.base_prefix,
          sys.prefix, sysconfig.get_paths()["purelib"], str(PACKAGE), str(data.DEFAULT_PATH), *readable}
    return Profile(read_only=tuple(sorted(p for p in ro if os.path.exists(p))),
                   writable=tuple([str(scratch), *writable] if scratch else writable),
                   workdir=str(workdir or scratch or "/tmp"), uid=uid,
                   tmpfs=(("/dev/shm", LEARNER["shm_bytes"]), ("/tmp", LEARNER["tmp_bytes"])))


def bwrap_prefix(scratch, writable=(), readable=(), uid=None, workdir=None):
    """The bubblewrap command line of profile(...), or [] where bwrap is missing. Run as root,
    the child becomes `uid` (no capabilities, no new privileges); otherwise it stays the
    grader's own unprivileged user, in a user namespace."""
    if os.geteuid() == 0 and uid is not None and data.DEFAULT_PATH.exists() \
            and not data.DEFAULT_PATH.stat().st_mode & 0o004:
        data.DEFAULT_PATH.chmod(0o644)  # the public data set, readable by the sandbox's user
    return profile(scratch, writable, readable, uid, workdir).command()


def python_path(path):
    """The interpreter's path as the sandbox can follow it: Python started as `../.venv/bin/python`
    has a sys.executable through the folder it started in, which the sandbox does not show."""
    return os.path.abspath(path) if os.sep in path else path


def limiter(limits, session=True, cgroup=None, one_process=False):
    """A function run in the child before exec: a session of its own (and a session keyring of
    its own, not the grader's), the learner's cgroup if any, the limits, and with `one_process`
    oneprocess.py's filter (the child may then start no process: not for bwrap)."""
    from .child import KEYCTL_JOIN_SESSION_KEYRING, SYSCALLS
    keyctl, libc = SYSCALLS.get(os.uname().machine, {}).get("keyctl"), ctypes.CDLL(None)

    def limit():
        if session:
            os.setsid()
        if keyctl is not None:
            libc.syscall(keyctl, KEYCTL_JOIN_SESSION_KEYRING, None)
        if cgroup is not None:
            cgroup.add(os.getpid())
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 5))  # SIGXCPU, then KILL
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
        if one_process:
            oneprocess.apply()
    return limit


def chown(path, uid):
    """Give a path to the sandbox's user; folders stay enterable by root without its
    capabilities (bwrap enters them before switching user)."""
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
        if os.path.isdir(path):
            os.chmod(path, 0o755)


class NotStarted(Exception):
    """The server failed before the learner's process took the jobs: the grader's side (a
    server that died between learners), never the learner's; started again once."""


class Spawned:
    """A sandboxed server process (child.py's, kernels.py's) this process talks to over a pipe
    pair (wire.py), its stderr in a file nowhere on disk (nothing is left if this process dies).
    Closed once: killed with everything in its sandbox, its pipes closed."""
    scratch = None  # a folder of its own on the machine, removed with it
    bound = None  # the memory cgroup of the learner it serves now (cgroup.Learner)

    def _spawn(self, module, prefix, python, env, cwd, limits, python_args=()):
        child_in, self.to_child = os.pipe()    # the grader writes, the child reads
        self.from_child, child_out = os.pipe()  # the child writes, the grader reads
        self.stderr = tempfile.TemporaryFile()
        fcntl.fcntl(self.stderr.fileno(), fcntl.F_SETFL, fcntl.fcntl(self.stderr.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        cmd = prefix + [python_path(python), *python_args, "-m", module, str(child_in), str(child_out)]
        cmd += ["--sandboxed"] if prefix else []
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, preexec_fn=limiter(limits), pass_fds=(child_in, child_out))
        os.close(child_in)
        os.close(child_out)
        os.set_blocking(self.to_child, False)
        self.pid, self.closed = os.getpid(), False

    def close(self):
        if self.closed:
            return
        self.closed = True
        for fd in (self.to_child, self.from_child):
            os.close(fd)
        if self.pid == os.getpid():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the server and everything in its sandbox
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.release()
        self.stderr.close()
        if self.scratch is not None:
            tree.remove(self.scratch)

    def enter(self, deadline):
        """After asking the server for a learner's process: a memory cgroup for the learner, and
        the process the server says it forked ({"op": "forked", "pid"}) moved into it before it
        runs any of the learner's code. Raises NotStarted if the server did not say so."""
        msg = wire.receive(self.from_child, deadline, 4096)
        pid = msg.get("pid") if isinstance(msg, dict) and msg.get("op") == "forked" else None
        if not isinstance(pid, int) or pid <= 0:
            raise NotStarted("the server did not fork a process for the learner")
        self.release()
        self.bound = cgroups.Learner(LEARNER["memory_bytes"])
        if self.bound.path:
            host = self.host_pid(pid)
            if host is None:
                raise NotStarted("the learner's process was not found")
            self.bound.add(host)

    def host_pid(self, pid):
        """The pid, as this process sees it, of the sandbox's process `pid` (as the server saw it)."""
        import psutil
        for process in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                with open(f"/proc/{process.pid}/status") as f:
                    nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
            except (OSError, StopIteration):
                continue
            if nspid[-1:] == [str(pid)]:
                return process.pid
        return None

    def release(self):
        """The learner's cgroup, with whatever is left in it, removed."""
        if self.bound is not None:
            bound, self.bound = self.bound, None
            bound.close()



if __name__ == "__main__":
    import argparse
    argparse.ArgumentParser(
        prog="python -m autograder.grader.sandbox",
        description="The grader's sandbox (a library, no command of its own): replay_server.run_many "
                    "replays a learner's answers in `python -m autograder.grader.child` under bubblewrap, "
                    "and kernel_server.SandboxedKernelManager runs nbgrader's kernels there. See docs/trust.md.").parse_args()
