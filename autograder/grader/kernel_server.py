"""The learners' Jupyter kernels under the sandbox: a kernel server per grading process
(kernels.py's, forked for each kernel), or a sandbox of the kernel's own, and the kernel
manager nbgrader uses (SandboxedKernelManager) with the kernel's private copy of its folder."""
import atexit
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref

try:
    from jupyter_client.manager import AsyncKernelManager  # the instructor's install
except ImportError:  # a learner's install: no kernels to sandbox here
    AsyncKernelManager = object

from .. import data
from . import cgroup as cgroups
from . import oneprocess
from . import sandbox, tree, wire

class KernelServer(sandbox.Spawned):
    """One sandboxed kernel server (kernels.py): ipykernel, torch and matplotlib imported once
    for the kernels of one grading process, each forked from it in turn. It runs under
    bubblewrap as a user of its own, with sandbox.KERNEL_LIMITS (each kernel sets them again), and sees
    of the machine what a kernel sees plus one folder of this process (KernelServers.folder),
    where each kernel's private copy and sockets are made. The environment (sandbox.KERNEL_ENV) and
    the interpreter are the kernels': a kernel asking for another gets another server."""

    def __init__(self, python, env, folder):
        self.key = self.wanted(python, env)
        env = dict(self.key[1])
        self.uid = sandbox.sandbox_uid()
        prefix = sandbox.bwrap_prefix(None, writable=[folder], uid=self.uid)
        own = {**env, "HOME": "/tmp", "MPLCONFIGDIR": "/tmp/.matplotlib"}  # the sandbox's, swept
        self._spawn("autograder.grader.kernels", prefix, python, own, "/", sandbox.KERNEL_LIMITS)
        self.idle, self.persistent = False, False
        try:
            self._ready(time.monotonic() + sandbox.LIMITS["wall_seconds"])
        except BaseException:
            self.close()
            raise

    @staticmethod
    def wanted(python, env):
        """What a server is started from: the interpreter, the kernels' environment but what
        only their cells read (sandbox.RUN_ENV), the sandbox's command line and the limits."""
        env = tuple(sorted((k, v) for k, v in env.items() if k not in sandbox.RUN_ENV))
        return python, env, sandbox.bwrap_prefix, tuple(sorted(sandbox.KERNEL_LIMITS.items())), tuple(sorted(sandbox.LEARNER.items()))

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
                                      "limits": dict(sandbox.KERNEL_LIMITS), "work_bytes": sandbox.LEARNER["work_bytes"],
                                      "one_process": sandbox.one_process()},
                      time.monotonic() + 5)
            self.enter(time.monotonic() + 10)
            wire.send(self.to_child, {"op": "go"}, time.monotonic() + 5)
        except (OSError, TimeoutError, wire.WireError, sandbox.NotStarted):
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
            self.folder = tempfile.mkdtemp(prefix=f"ninja-kernels-{os.getpid()}-", dir=sandbox.socket_base())
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
                    self._start(sandbox.python_path(sys.executable), kernel_env(environ or os.environ))
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
    MPLCONFIGDIR): sandbox.KERNEL_ENV's variables, the package, the data."""
    return {**{k: environ[k] for k in sandbox.KERNEL_ENV if k in environ}, "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(sandbox.PACKAGE.parent),  # the package the grader loaded
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
            self._sockets = tempfile.mkdtemp(prefix=f"ninja-kernel-{os.getpid()}-", dir=sandbox.socket_base())
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
                if self._launch_forked(sandbox.python_path(kernel_cmd[0]), env, kw.get("cwd") or os.getcwd(), kernel_cmd[3:]):
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
                sandbox.chown(path, uid)

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
        uid = sandbox.sandbox_uid()
        self._prepare(kw.get("cwd") or os.getcwd(), uid)
        prefix = sandbox.bwrap_prefix(self._work, writable=[getattr(self, "_sockets", self._work)],
                                      readable=[self.connection_file], uid=uid, workdir="/tmp")
        if not prefix:
            warnings.warn("bubblewrap (bwrap) not found: the learner's kernel runs WITHOUT a sandbox")
        kw["env"] = self._own_env(env)
        kw["cwd"] = self._work
        # what the kernel process writes to its own stdout and stderr (a cell's os.write(2, ...),
        # a crash's dump) never reaches the grader's terminal or log: its outputs come over
        # Jupyter's messages, which SandboxedExecute caps
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        self._bound = cgroups.Learner(sandbox.LEARNER["memory_bytes"])
        one = sandbox.one_process()
        seccomp = oneprocess.memfd() if one and prefix else None  # bwrap sets it just before the kernel starts
        if seccomp is not None:
            prefix[1:1] = ["--seccomp", str(seccomp)]
            kw["pass_fds"] = (seccomp,)
        kw["preexec_fn"] = sandbox.limiter(sandbox.KERNEL_LIMITS, session=False, cgroup=self._bound,  # jupyter_client starts its session
                                           one_process=one and not prefix)
        try:
            if prefix and kernel_cmd[1:3] == ["-m", "ipykernel_launcher"]:  # its folder a size-capped tmpfs (kernels.own)
                kernel_cmd = [kernel_cmd[0], "-m", "autograder.grader.kernels", "--own", self._work,
                              str(sandbox.LEARNER["work_bytes"]), *kernel_cmd[3:]]
            return await super()._async_launch_kernel(prefix + [sandbox.python_path(kernel_cmd[0]), *kernel_cmd[1:]], **kw)
        finally:
            if seccomp is not None:
                os.close(seccomp)

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
    sandbox.KERNEL_COPY's depth, number and bytes (tree.copy), owned by the sandbox's user."""
    work = tempfile.mkdtemp(prefix=f"ninja-kernel-work-{os.getpid()}-", dir=inside)
    tree.copy(folder, work, sandbox.KERNEL_COPY, owner=uid if os.geteuid() == 0 else None)
    sandbox.chown(work, uid)
    return work
