"""Run learner code in a separate, sandboxed, resource-limited process, and talk to it.

The child (`python -m autograder.grader.child`, see child.py) replays the answers and reports each
one over a pipe as soon as it is recorded; the grader checks it (torch.load with
weights_only=True, then score.valid) and answers with the value the child may use from then
on. On Linux the child runs under bubblewrap: no network, a read-only view of Python and the
autograder package only (not the course's source/, gradebook or submissions), and one
writable scratch folder.
"""
import atexit
import ctypes
import fcntl
import itertools
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path

try:
    from jupyter_client.manager import AsyncKernelManager  # the instructor's install
except ImportError:  # a learner's install: no kernels to sandbox here
    AsyncKernelManager = object

from .. import data, score
from . import cgroup as cgroups
from . import tree, wire

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
# Without a writable memory cgroup (logged once) memory is bounded per process only; without
# unprivileged user namespaces a server serves one learner (a fresh sandbox each).
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
    """Where the kernels' socket folders go: the temporary folder, or /tmp when its path is too
    long for a Unix socket's below it (a TMPDIR deep in a home or a test's folder). Their names
    carry the pid of the process that made them: whose they are, in a /tmp that
    other runs share."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) + SOCKET_NAMES > SUN_PATH and os.access("/tmp", os.W_OK | os.X_OK):
        return "/tmp"
    return base


def sandbox_uid():
    """A user id of its own for each sandboxed process (none of the machine's users): its
    process limit then binds, even where the grader runs as root."""
    return 200_000 + (os.getpid() * 1000 + next(_uids)) % 800_000


def bwrap_prefix(scratch, writable=(), readable=(), uid=None):
    """The bubblewrap command line that confines a child to Python, the autograder package,
    the data and `scratch` (its working folder; None: the sandbox's own /tmp, nothing of the
    machine's), or [] where bwrap is missing. Run as root,
    the child then becomes `uid` (no capabilities, no new privileges); otherwise it stays
    the grader's own unprivileged user, in a user namespace."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return []
    ro = {"/usr", "/lib", "/lib64", "/bin", "/etc/alternatives", "/etc/fonts", sys.base_prefix,
          sys.prefix, sysconfig.get_paths()["purelib"], str(PACKAGE), str(data.DEFAULT_PATH), *readable}
    ro = sorted(p for p in ro if os.path.exists(p))
    rw = [str(scratch), *writable] if scratch else list(writable)
    root = os.geteuid() == 0 and uid is not None
    if root and data.DEFAULT_PATH.exists() and not data.DEFAULT_PATH.stat().st_mode & 0o004:
        data.DEFAULT_PATH.chmod(0o644)  # the public data set, readable by the sandbox's user
    if root:  # no user namespace: the switch to `uid` below makes the limits bind
        args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args = [bwrap, "--unshare-all", "--cap-drop", "ALL"]
    args += ["--die-with-parent", "--new-session",
             "--unsetenv", "JPY_PARENT_PID",  # ipykernel would take pid 1 (bwrap) as its parent gone
             "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(LEARNER["shm_bytes"]), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(LEARNER["tmp_bytes"]), "--tmpfs", "/tmp"]
    # the folders above each bound path, traversable (the machine's may not be: /root is 0700)
    parents = sorted({str(q) for p in ro + rw for q in Path(p).parents if str(q) not in ("/", "/tmp")},
                     key=lambda q: q.count("/"))
    for path in parents:
        args += ["--perms", "0755", "--dir", path]
    for path in ro:
        args += ["--ro-bind", path, path]
    for path in rw:
        args += ["--bind", path, path]
    args += ["--chdir", str(scratch or "/tmp"), "--"]
    if root:
        args += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return args


def _python(path):
    """The interpreter's path as the sandbox can follow it: Python started as `../.venv/bin/python`
    has a sys.executable through the folder it started in, which the sandbox does not show."""
    return os.path.abspath(path) if os.sep in path else path


def _limiter(limits, session=True, cgroup=None):
    """A function run in the child before exec: a session of its own (and a session keyring of
    its own, not the grader's), the learner's cgroup if any, and the limits."""
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
    return limit


def _chown(path, uid):
    """Give a path to the sandbox's user; folders stay enterable by root without its
    capabilities (bwrap enters them before switching user)."""
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
        if os.path.isdir(path):
            os.chmod(path, 0o755)


_warned = False
last_cpu_seconds = None  # CPU time of the last child, as it measured itself (for benchmarks)
MAX_MESSAGE = 64 * 2**20  # bytes: a bigger message from the child is refused, and the child stopped


def _detached(value):
    """The job's data with every tensor detached (nothing sent to the child requires grad)."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.detach().contiguous()
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_detached(v) for v in value]
    return value




def _give(collector, fields, value):
    """The collector's reply to one answer; an answer it cannot take is recorded as unreadable
    (the learner's loss, never the class's)."""
    try:
        return collector.give(*fields, value)
    except Exception:
        key = tuple(fields)
        collector.answers.setdefault(key, "unreadable tensor")
        return None


class _NotStarted(Exception):
    """The server failed before the learner's process took the jobs: the grader's side (a
    server that died between learners), never the learner's; started again once."""


class _Spawned:
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
        cmd = prefix + [_python(python), *python_args, "-m", module, str(child_in), str(child_out)]
        cmd += ["--sandboxed"] if prefix else []
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, preexec_fn=_limiter(limits), pass_fds=(child_in, child_out))
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
        runs any of the learner's code. Raises _NotStarted if the server did not say so."""
        msg = wire.receive(self.from_child, deadline, 4096)
        pid = msg.get("pid") if isinstance(msg, dict) and msg.get("op") == "forked" else None
        if not isinstance(pid, int) or pid <= 0:
            raise _NotStarted("the server did not fork a process for the learner")
        self.release()
        self.bound = cgroups.Learner(LEARNER["memory_bytes"])
        if self.bound.path:
            host = self.host_pid(pid)
            if host is None:
                raise _NotStarted("the learner's process was not found")
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


class Server(_Spawned):
    """One sandboxed fork server (child.py) for the learners a grading process replays: Python
    and torch start once, not once per learner. Each learner's jobs go to a learner process it
    forks; after each learner the server kills what is left in its sandbox and empties the
    places a child could write, or exits (see child.py). A server that fails in any way is
    killed, and the next learner gets a fresh one. Without bubblewrap a server serves one
    learner only (nothing can sweep its leftovers)."""

    @staticmethod
    def wanted():
        """What a server is started from: the sandbox's command line, the limits, the Python."""
        return bwrap_prefix, tuple(sorted(LIMITS.items())), tuple(sorted(LEARNER.items())), sys.executable

    def __init__(self):
        self.key = self.wanted()
        self.uid = sandbox_uid()
        prefix = bwrap_prefix(None, uid=self.uid)  # its folder: the sandbox's /tmp, gone with it
        # without a sandbox, a folder of its own on the machine (it serves one learner only)
        self.scratch = None if prefix else Path(tempfile.mkdtemp(prefix="ninja-sandbox-"))
        global _warned
        if not prefix and not _warned:
            _warned = True
            warnings.warn("bubblewrap (bwrap) not found: learner code runs WITHOUT a sandbox "
                          "(still in a separate, resource-limited process). Install it: apt-get install bubblewrap")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.scratch or "/tmp"), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(PACKAGE.parent), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        # the server's own CPU is its start and its sweeps; each exercise's child has its own limit
        server_limits = {**LIMITS, "cpu_seconds": LIMITS["cpu_seconds"] * 4}
        self._spawn("autograder.grader.child", prefix, sys.executable, env, self.scratch or "/", server_limits,
                    python_args=["-s"])
        self.persistent = False
        try:
            self._ready(time.monotonic() + LIMITS["wall_seconds"])
        except BaseException:
            self.close()
            raise

    def _ready(self, deadline):
        """Read the server's {"op": "ready"}: whether it may serve the next learner (it swept)."""
        msg = wire.receive(self.from_child, deadline, 4096)
        if not isinstance(msg, dict) or msg.get("op") != "ready":
            raise wire.WireError("the server did not say it was ready")
        self.persistent = msg.get("persistent") is True and msg.get("clean") is True

    def usable(self):
        return self.pid == os.getpid() and self.proc.poll() is None and self.key == self.wanted()

    def replay(self, jobs, collectors):
        """{exercise: replay errors} for one learner's jobs (see run_many)."""
        global last_cpu_seconds
        deadline = time.monotonic() + LIMITS["wall_seconds"]
        results, ended, started = {}, False, False
        try:
            wire.send(self.to_child, {"op": "learner"}, deadline)
            self.enter(deadline)
            wire.send(self.to_child, {"jobs": _detached(jobs), "statement_seconds": LIMITS["statement_seconds"],
                                      "child_seconds": LIMITS["cpu_seconds"]}, deadline)
            while not ended:
                msg = wire.receive(self.from_child, deadline, MAX_MESSAGE)
                if msg is None:
                    break
                op, ex = msg.get("op"), msg.get("exercise")
                if op == "started" and not started:
                    started = True
                elif not started:
                    raise _NotStarted(f"the server answered {str(op)[:20]} to a learner")
                elif op == "give" and ex in collectors and ex not in results:
                    fields = [msg.get(k) for k in ("case", "run", "name")]
                    if not all(isinstance(f, str) and len(f) < 100 for f in fields):
                        raise wire.WireError("a malformed answer")
                    reply = _give(collectors[ex], fields, msg.get("value"))
                    wire.send(self.to_child, {"value": reply}, deadline)
                elif op == "done" and ex in jobs and ex not in results and isinstance(msg.get("errors"), dict):
                    results[ex] = score.redacted({str(k)[:200]: str(v)[:500] for k, v in list(msg["errors"].items())[:2000]})
                elif op == "failed" and ex in jobs and ex not in results:
                    collectors[ex].answers.clear()
                    results[ex] = {"process": str(msg.get("why"))[:300]}
                elif op == "end":
                    ended = True
                    try:
                        last_cpu_seconds = float(msg.get("cpu_seconds"))
                    except (TypeError, ValueError):
                        last_cpu_seconds = float("nan")
                elif op == "ready":  # the learner's process ended without its "end"
                    self.persistent = False
                    raise SandboxError(f"the process running your code {wire.ended(msg.get('status'))}")
                else:
                    raise wire.WireError(f"an unexpected message ({str(op)[:20]})")
            if ended:
                self._ready(deadline)
        except (_NotStarted, SandboxError):
            raise
        except TimeoutError:
            raise SandboxError(f"your code ran longer than {LIMITS['wall_seconds']} s and was stopped")
        except Exception as e:  # a broken message, a closed pipe: this learner's failure only
            if not started:
                raise _NotStarted(f"its results could not be read ({type(e).__name__})")
            raise SandboxError(f"its results could not be read ({type(e).__name__})")
        finally:
            self.release()
        if ended and set(results) == set(jobs):
            return results
        self.persistent = False
        raise SandboxError(self.death())

    def death(self):
        """Why the server ended by itself, from its exit code and its stderr's last line."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the process running your code stopped answering"
        if code > 128:  # bwrap passes on a signal's death as 128 + signal
            code = -(code - 128)
        fd = self.stderr.fileno()
        size = os.fstat(fd).st_size
        tail = os.pread(fd, 600, max(0, size - 600)).decode(errors="replace").strip().splitlines()
        how = wire.stopped_by(-code) if code < 0 else f"exited with code {code}"
        return f"the process running your code {how}" + (f": {tail[-1][:200]}" if tail else "")

_server = None
_server_lock = threading.Lock()


def run_many(jobs, collectors):
    """{exercise: replay errors} for jobs {exercise: job} (see score.build_job), of one learner,
    replayed by the grading process's sandboxed fork server (Server: Python and torch start
    once) in a fresh child per exercise (nothing survives from one exercise, or one learner,
    to the next). Each answer the child reports goes to collectors[exercise].give, whose reply
    (the value the namespace holds from then on) goes back to the child. An exercise whose
    child fails (a crash, its CPU time or memory, a broken message) gets {"process": why}; its
    collector is then emptied. Raises SandboxError if the learner's replay fails as a whole
    (the wall time, a crash, a broken message); the server is then replaced."""
    global _server
    with _server_lock:
        for attempt in (1, 2):
            try:
                if _server is None or not _server.usable():
                    stop_server()
                    _server = Server()
                results = _server.replay(jobs, collectors)
            except _NotStarted as e:  # a server that died between learners: the grader's, not theirs
                stop_server()
                if attempt == 2:
                    raise SandboxError(str(e))
                continue
            except SandboxError:
                stop_server()
                raise
            except (OSError, wire.WireError, TimeoutError) as e:  # the server did not start
                stop_server()
                if attempt == 2:
                    raise SandboxError(f"its results could not be read ({type(e).__name__})")
                continue
            if not _server.persistent:
                stop_server()
            return results


def stop_server():
    """Stop this process's fork server, if it has one (also at exit)."""
    global _server
    if _server is not None:
        server, _server = _server, None
        server.close()


atexit.register(stop_server)


class KernelServer(_Spawned):
    """One sandboxed kernel server (kernels.py): ipykernel, torch and matplotlib imported once
    for the kernels of one grading process, each forked from it in turn. It runs under
    bubblewrap as a user of its own, with KERNEL_LIMITS (each kernel sets them again), and sees
    of the machine what a kernel sees plus one folder of this process (KernelServers.folder),
    where each kernel's private copy and sockets are made. The environment (KERNEL_ENV) and
    the interpreter are the kernels': a kernel asking for another gets another server."""

    def __init__(self, python, env, folder):
        self.key = self.wanted(python, env)
        env = dict(self.key[1])
        self.uid = sandbox_uid()
        prefix = bwrap_prefix(None, writable=[folder], uid=self.uid)
        own = {**env, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/.matplotlib"}  # the sandbox's, swept
        self._spawn("autograder.grader.kernels", prefix, python, own, "/", KERNEL_LIMITS)
        self.idle, self.persistent = False, False
        try:
            self._ready(time.monotonic() + LIMITS["wall_seconds"])
        except BaseException:
            self.close()
            raise

    @staticmethod
    def wanted(python, env):
        """What a server is started from: the interpreter, the kernels' environment but what
        only their cells read (RUN_ENV), the sandbox's command line and the limits."""
        env = tuple(sorted((k, v) for k, v in env.items() if k not in RUN_ENV))
        return python, env, bwrap_prefix, tuple(sorted(KERNEL_LIMITS.items())), tuple(sorted(LEARNER.items()))

    def _ready(self, deadline):
        msg = wire.receive(self.from_child, deadline, 4096)
        if not isinstance(msg, dict) or msg.get("op") != "ready":
            raise wire.WireError("the kernel server did not say it was ready")
        self.idle = msg.get("clean") is True
        self.persistent = self.persistent or msg.get("persistent") is True
        self.release()  # the last kernel's cgroup: it ended, and the server swept

    def usable(self, python, env):
        """Whether this server may fork the next kernel (after the last one's sweep)."""
        if self.closed or self.pid != os.getpid() or self.proc.poll() is not None or self.key != self.wanted(python, env):
            return False
        if not self.idle and self.persistent:
            try:
                self._ready(time.monotonic() + 10)  # the sweep after the last kernel
            except (OSError, TimeoutError, wire.WireError):
                return False
        return self.idle

    def fork(self, cwd, env, argv):
        """A new kernel, `python -m ipykernel_launcher *argv` (a ForkedKernel, as jupyter_client
        holds a Popen), or None if the server cannot take it."""
        try:
            wire.send(self.to_child, {"op": "kernel", "cwd": cwd, "env": env, "argv": list(argv),
                                      "limits": dict(KERNEL_LIMITS), "work_bytes": LEARNER["work_bytes"]},
                      time.monotonic() + 5)
            self.enter(time.monotonic() + 10)
            wire.send(self.to_child, {"op": "go"}, time.monotonic() + 5)
        except (OSError, TimeoutError, wire.WireError, _NotStarted):
            return None
        self.idle = False
        return ForkedKernel(self)

class ForkedKernel:
    """A kernel the kernel server forked, as jupyter_client's provisioner uses a Popen: poll,
    wait, send_signal, kill, terminate. It ends when the server says so; a server that does
    not answer, or a kill it does not carry out within seconds, is killed with its sandbox
    (and so the kernel)."""
    stdin = stdout = stderr = pid = None

    def __init__(self, server):
        self.server, self.returncode = server, None

    def poll(self):
        if self.returncode is None and self.server.closed:  # its pipe's number may be another file's now
            self.returncode = -signal.SIGKILL
        if self.returncode is None:
            fd = self.server.from_child
            try:
                if not select.select([fd], [], [], 0)[0]:
                    return None
                msg = wire.receive(fd, time.monotonic() + 5, 4096)
            except (OSError, ValueError, TimeoutError, wire.WireError):
                msg = None
            status = msg.get("status") if isinstance(msg, dict) and msg.get("op") == "exited" else None
            if isinstance(status, int) and 0 <= status < 2**16:
                self.returncode = os.waitstatus_to_exitcode(status)
            else:  # the server ended, or killed the kernel itself: it goes, with its sandbox
                self.returncode = -signal.SIGKILL
                self.server.close()
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is not None:
            return
        try:
            wire.send(self.server.to_child, {"op": "signal", "signal": int(sig)}, time.monotonic() + 2)
        except (OSError, TimeoutError):
            self.server.close()
        if sig == signal.SIGKILL:
            try:
                self.wait(3)
            except subprocess.TimeoutExpired:  # a server stopped by its kernel: the sandbox goes
                self.server.close()
                self.poll()

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)


class KernelServers:
    """This process's kernel server and the one kernel it may run at a time: a kernel manager
    reserves it before its connection file is written (its sockets go in `folder`), forks
    from it, and releases it when the kernel is gone. A kernel that finds it reserved, or a
    server that cannot start, is started as before (a bubblewrap sandbox of its own). Servers
    start in one long-lived thread of their own: bubblewrap's --die-with-parent follows the
    thread that started it."""

    def __init__(self):
        self.lock, self.owner, self.folder, self.server, self.pending = threading.Lock(), None, None, None, None
        self.folder_pid = None  # the process that made the folder, and removes it at exit
        self.starting = threading.Lock()  # one server is started at a time, by prewarm or get
        self.keeper = None

    @staticmethod
    def wanted():
        return bool(shutil.which("bwrap")) and os.environ.get("BACKPROP_NINJA_KERNEL_SERVER") != "0"

    def _folder(self):
        if self.folder is None or not os.path.isdir(self.folder):
            self.folder = tempfile.mkdtemp(prefix=f"ninja-kernels-{os.getpid()}-", dir=socket_base())
            self.folder_pid = os.getpid()
            os.chmod(self.folder, 0o755)
        return self.folder

    def reserve(self, owner):
        """The folder for owner's kernel, or None if the kernel server is taken (or not wanted)."""
        if not self.wanted():
            return None
        with self.lock:
            if self.owner is not None and self.owner() is not None:
                return None
            folder = self._folder()
            for entry in os.listdir(folder):  # what an earlier kernel left (its manager removes its own)
                tree.remove(os.path.join(folder, entry))
            if os.listdir(folder):
                return None
            self.owner = weakref.ref(owner)
            return folder

    def release(self, owner):
        with self.lock:
            if self.owner is not None and self.owner() in (owner, None):
                self.owner = None

    def prewarm(self, environ=None):
        """Start a server now, for the kernels this process will start (sys.executable's, with
        the environment `environ` or os.environ), while the grader does other things."""
        if self.wanted() and self.starting.acquire(blocking=False):
            try:
                if self.pending is None and self.server is None:
                    self._start(_python(sys.executable), kernel_env(environ or os.environ))
            finally:
                self.starting.release()

    def _start(self, python, env):
        if self.keeper is None or self.keeper._pid != os.getpid():
            from concurrent.futures import ThreadPoolExecutor
            self.keeper = ThreadPoolExecutor(1, thread_name_prefix="ninja-kernel-server")
            self.keeper._pid = os.getpid()
        self.pending = (KernelServer.wanted(python, env), self.keeper.submit(KernelServer, python, env, self._folder()))

    def get(self, python, env):
        """The running server, if it can take a kernel with this interpreter and environment,
        else a new one; None if none can start."""
        with self.starting:
            if self.server is not None and self.server.usable(python, env):
                return self.server
            self.stop()
            if self.pending is not None and (self.pending[0] != KernelServer.wanted(python, env)
                                             or self.keeper._pid != os.getpid()):
                self._discard()
            if self.pending is None:
                self._start(python, env)
            (_, future), self.pending = self.pending, None
            try:
                self.server = future.result()
            except (OSError, TimeoutError, wire.WireError, subprocess.SubprocessError):
                self.server = None
            return self.server

    def _discard(self):
        """Close a server started ahead for another interpreter or environment."""
        (_, future), self.pending = self.pending, None
        future.add_done_callback(lambda f: f.exception() is None and f.result().close())

    def stop(self):
        if self.server is not None:
            server, self.server = self.server, None
            server.close()

    def close(self):
        """At exit: the server, one started ahead and never used, and the kernels' folder."""
        if self.pending is not None:
            self._discard()  # its thread has ended by now (the interpreter joins it first)
        self.stop()
        if self.folder is not None and self.folder_pid == os.getpid():
            tree.remove(self.folder)
            self.folder = None


def kernel_env(environ):
    """A sandboxed kernel's environment from the grader's (without its folder's HOME and
    MPLCONFIGDIR): KERNEL_ENV's variables, the package, the data."""
    return {**{k: environ[k] for k in KERNEL_ENV if k in environ}, "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(PACKAGE.parent),  # the package the grader loaded
            data.ENV_VAR: str(data.ensure_names())}  # the per-user copy, which the sandbox can read


kernel_servers = KernelServers()
atexit.register(kernel_servers.close)


class SandboxedKernelManager(AsyncKernelManager):
    """A Jupyter kernel manager whose kernels run under bubblewrap, with limits and a clean
    environment, in a private copy of the notebook's folder (nothing the kernel writes or links
    lands in the folder nbgrader then writes to), talking to nbgrader over Unix sockets (no
    network). A kernel is forked from this process's kernel server (KernelServer) when it is
    free; otherwise, or if the server cannot take it, it starts in a sandbox of its own, as a
    user of its own. BACKPROP_NINJA_KERNEL_SERVER=0 starts every kernel so."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._server_folder = None
        if shutil.which("bwrap"):
            self._sockets = tempfile.mkdtemp(prefix=f"ninja-kernel-{os.getpid()}-", dir=socket_base())
            self.transport, self.ip = "ipc", os.path.join(self._sockets, "kernel")

    async def _async_pre_start_kernel(self, **kw):
        # the kernel server, if this kernel may have it: its sockets and connection file then go
        # in the server's folder, the one folder of this process its sandbox sees
        if hasattr(self, "_sockets") and self._server_folder is None:
            self._server_folder = kernel_servers.reserve(self)
            if self._server_folder:
                tree.remove(self._sockets)
                self._sockets = tempfile.mkdtemp(prefix="ninja-kernel-", dir=self._server_folder)
                self.ip = os.path.join(self._sockets, "kernel")
                self.connection_file = os.path.join(self._sockets, "kernel.json")
        try:
            return await super()._async_pre_start_kernel(**kw)
        except BaseException:
            self._release()
            raise

    def _release(self):
        if self._server_folder:
            kernel_servers.release(self)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        try:
            env = kernel_env(kw.pop("env", None) or os.environ)
            if self._server_folder and kernel_cmd[1:5] == ["-m", "ipykernel_launcher", "-f", self.connection_file]:
                if self._launch_forked(_python(kernel_cmd[0]), env, kw.get("cwd") or os.getcwd(), kernel_cmd[3:]):
                    return
            await self._launch_own(kernel_cmd, env, **kw)
        except BaseException:
            self._release()
            raise

    def _prepare(self, folder, uid, inside=None):
        """The kernel's private copy of `folder` (in `inside`), its sockets and connection
        file, all the sandbox user's."""
        self._work = private_copy(folder, uid, inside=inside)
        for path in [getattr(self, "_sockets", None), self.connection_file]:
            if path:
                _chown(path, uid)

    def _own_env(self, env):
        return {**env, "HOME": self._work, "MPLCONFIGDIR": os.path.join(self._work, ".mpl")}

    def _launch_forked(self, python, env, folder, argv):
        """Fork the kernel from this process's kernel server; False if it cannot take it."""
        server = kernel_servers.get(python, env)
        if server is None:
            return False
        self._prepare(folder, server.uid, inside=self._server_folder)
        process = server.fork(self._work, self._own_env(env), argv)
        if process is None:
            kernel_servers.stop()
            tree.remove(self._work)
            return False
        self.provisioner.process, self.provisioner.pid, self.provisioner.pgid = process, None, None
        self.provisioner.cwd = self._work
        self._reconcile_connection_info(self.provisioner.connection_info)
        return True

    async def _launch_own(self, kernel_cmd, env, **kw):
        """The kernel in a sandbox of its own, as a user of its own."""
        uid = sandbox_uid()
        self._prepare(kw.get("cwd") or os.getcwd(), uid)
        prefix = bwrap_prefix(self._work, writable=[getattr(self, "_sockets", self._work)],
                              readable=[self.connection_file], uid=uid)
        if not prefix:
            warnings.warn("bubblewrap (bwrap) not found: the learner's kernel runs WITHOUT a sandbox")
        kw["env"] = self._own_env(env)
        kw["cwd"] = self._work
        # what the kernel process writes to its own stdout and stderr (a cell's os.write(2, ...),
        # a crash's dump) never reaches the grader's terminal or log: its outputs come over
        # Jupyter's messages, which SandboxedExecute caps
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        self._bound = cgroups.Learner(LEARNER["memory_bytes"])
        kw["preexec_fn"] = _limiter(KERNEL_LIMITS, session=False, cgroup=self._bound)  # jupyter_client starts its session
        return await super()._async_launch_kernel(prefix + [_python(kernel_cmd[0]), *kernel_cmd[1:]], **kw)

    async def _async_cleanup_resources(self, restart=False):
        try:
            await super()._async_cleanup_resources(restart)
        finally:
            if not restart:  # whatever the kernel left in its folders, however deep
                if getattr(self, "_bound", None) is not None:
                    self._bound.close()
                for path in [getattr(self, "_sockets", None), getattr(self, "_work", None)]:
                    if path:
                        tree.remove(path)
                self._release()

    # nbclient calls cleanup_resources alone for a kernel it finds dead (a kernel that ended, or
    # whose server did): AsyncKernelManager binds that name to KernelManager's own function,
    # which would pass over this class's, leaving the server reserved and the folders on disk
    cleanup_resources = _async_cleanup_resources


def private_copy(folder, uid, inside=None):
    """A temporary copy of a submission's folder for its kernel (in the folder `inside`, or the
    machine's temporary folder): regular files and folders only (no links, no devices), within
    KERNEL_COPY's depth, number and bytes (tree.copy), owned by the sandbox's user."""
    work = tempfile.mkdtemp(prefix=f"ninja-kernel-work-{os.getpid()}-", dir=inside)
    tree.copy(folder, work, KERNEL_COPY, owner=uid if os.geteuid() == 0 else None)
    _chown(work, uid)
    return work


if __name__ == "__main__":
    import argparse
    argparse.ArgumentParser(
        prog="python -m autograder.grader.sandbox",
        description="The grader's sandbox (a library, no command of its own): run_many replays a "
                    "learner's answers in `python -m autograder.grader.child` under bubblewrap, and "
                    "SandboxedKernelManager runs nbgrader's kernels there. See docs/trust.md.").parse_args()
