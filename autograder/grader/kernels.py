"""The sandboxed kernel server: `python -m autograder.grader.kernels IN OUT [--sandboxed]`
(and a kernel in a sandbox of its own: `... --own FOLDER BYTES KERNEL_ARGS`, own()).

Every notebook nbgrader runs starts a Jupyter kernel, and every kernel imports ipykernel,
torch and matplotlib: about 2.5 s of CPU each, four times per learner, more than the
learner's own cells take. This server imports them once, under bubblewrap, as the sandbox's
user of its own (kernel_server.KernelServer starts it), and forks one kernel at a time from that
pristine image: the kernel process becomes `python -m ipykernel_launcher -f CONNECTION` in
the folder, with the environment and the limits the grader sends, and never returns.

It holds nothing of any learner: it never runs a cell and never reads a connection file (the
key is in the file; only its path comes here). After each kernel it kills every process left
in its sandbox, empties /tmp, /dev/shm and its own folder (child.sweep) and says whether both
held; if not, it exits and the grader starts a fresh one. Before the first fork it makes
itself non-dumpable (child.seal), so no kernel, though the same user, may ptrace it or open
its /proc/<pid>/mem or fd/. A kernel may still kill or stop it: that ends its own kernel only
(the grader's deadlines then replace the server). Outside bubblewrap's PID namespace, or
where unprivileged user namespaces are refused, it sweeps nothing and serves one kernel only.

Each kernel starts only once the grader moved it into the learner's memory cgroup (it says
{"op": "forked"} and waits for {"op": "go"}), then isolates itself (child.isolate): its own
user, IPC and mount namespaces and session keyring (no IPC object or key outlives it), and
its working folder a size-capped tmpfs holding its copy of the submission; then it may write
only there, in /tmp, /dev/shm and /dev, and make only sockets in its socket folder (writes.py).
Where no memory cgroup bounds a learner, it may also start no process (oneprocess.py).

What differs from a kernel started afresh: matplotlib read its configuration and built its
font list in the server (a matplotlibrc in the learner's folder is not read), and Python's
string hashes are the server's (the `random` and numpy seeds are drawn again in each
kernel). The messages are wire.py's.
"""
import ctypes
import gc
import importlib
import os
import resource
import select
import signal
import sys

from . import oneprocess, writes
from .child import in_own_sandbox, isolate, isolation_works, main, seal, sweep
from .wire import receive, send

LIMITS = {"cpu_seconds": resource.RLIMIT_CPU, "memory_bytes": resource.RLIMIT_AS,
          "file_bytes": resource.RLIMIT_FSIZE, "processes": resource.RLIMIT_NPROC,
          "open_files": resource.RLIMIT_NOFILE}
SIGNALS = {int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIGKILL)}  # what the grader may send a kernel


# What a kernel imports as it starts (IPKernelApp.initialize: the debugger's debugpy, about 80
# modules, psutil for the machine's addresses, the shell's history, pdb): 0.23 of its 0.27
# CPU-seconds, in every kernel, unless the server imported them
STARTUP = ("ipykernel.debugger", "jupyter_client.localinterfaces", "psutil", "IPython.core.history",
           "IPython.core.completerlib", "IPython.core.debugger", "IPython.extensions.storemagic",
           "sqlite3", "tornado.platform.asyncio", "faulthandler")


def preload():
    """What every kernel of the course imports, imported once: ipykernel (and IPython, zmq,
    tornado), torch, numpy and matplotlib up to, not including, pyplot and its backend (the
    inline backend hooks into the kernel's shell when pyplot first loads it, in the kernel),
    and STARTUP. Returns what STARTUP's imports set in the environment (debugpy:
    PYDEVD_USE_FRAME_EVAL), which a kernel's own start would have set too (become())."""
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as ipykernel sets it
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.font_manager  # noqa: F401  (its font list, built once)
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torch.nn.functional  # noqa: F401
    before = dict(os.environ)
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # else pydevd warns on stderr of frozen modules
    for name in STARTUP:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part of this ipykernel (debugpy) or another version's layout
            pass
    del os.environ["PYDEVD_DISABLE_FILE_VALIDATION"]
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def serve(fd_in, fd_out, sandboxed=False):
    """Fork a kernel for each {"op": "kernel", ...} (become()), say {"op": "forked", "pid"} and
    let it start on the grader's {"op": "go"}, relay the grader's signals to it,
    report {"op": "exited", "status"} when it ends, sweep, and say {"op": "ready", "clean"}."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # as ipykernel_launcher does; the kernel puts its folder back
    imported_env = preload()
    sandboxed = sandboxed and in_own_sandbox() and isolation_works()  # else one kernel per server
    seal()
    gc.freeze()  # the imports stay put: no collection in a kernel copies the whole heap
    send(fd_out, {"op": "ready", "clean": True, "persistent": sandboxed})
    while True:
        msg = receive(fd_in, limit=1 << 16)
        if not isinstance(msg, dict) or msg.get("op") != "kernel":
            return
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(fd_in)
                os.close(fd_out)
                os.close(go_w)
                if os.read(go_r, 1) == b"g":  # once the grader moved it into the learner's cgroup
                    code = become(msg, sandboxed, imported_env)
            finally:
                os._exit(code)  # never back into the server's loop
        os.close(go_r)
        send(fd_out, {"op": "forked", "pid": pid})
        go = receive(fd_in, limit=4096)
        if isinstance(go, dict) and go.get("op") == "go":
            os.write(go_w, b"g")
        os.close(go_w)
        status = watch(pid, fd_in)
        send(fd_out, {"op": "exited", "status": status})
        clean = sweep() if sandboxed else False
        send(fd_out, {"op": "ready", "clean": clean, "persistent": sandboxed})
        if not clean or status is None:
            return


def watch(pid, fd_in):
    """Wait for the kernel `pid` to end, passing on the grader's {"op": "signal", "signal"}s to
    its process group; its wait status, or None (it was killed) if the grader closed the pipe
    or sent anything else."""
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            ready, _, _ = select.select([fd_in, pidfd], [], [])
            if pidfd in ready:
                return os.waitpid(pid, 0)[1]
            msg = receive(fd_in, limit=4096)
            sig = msg.get("signal") if isinstance(msg, dict) and msg.get("op") == "signal" else None
            if sig not in SIGNALS:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
    finally:
        os.close(pidfd)


def become(msg, isolated=True, imported_env=None):
    """In the forked process: become `python -m ipykernel_launcher *msg["argv"]` (-f, the
    connection file, ...) in msg["cwd"] (a tmpfs of msg["work_bytes"] if `isolated`: see
    child.isolate), with msg["env"] (and what the server's imports set in its environment,
    preload(), where msg["env"] does not say) and msg["limits"]; the exit code when the kernel ends."""
    os.setsid()  # a session and process group of its own, as jupyter_client starts a kernel
    if isolated:
        isolate(msg["cwd"], int(msg["work_bytes"]))
    for name, value in msg["limits"].items():
        resource.setrlimit(LIMITS[name], (value, value + 5) if name == "cpu_seconds" else (value, value))
    if msg.get("one_process"):
        oneprocess.apply()  # no process of its own: the limits above bound the learner whole
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir(msg["cwd"])
    os.environ.clear()
    os.environ.update(msg["env"], PWD=msg["cwd"])  # PWD: as bubblewrap's --chdir sets it
    for name, value in (imported_env or {}).items():
        os.environ.setdefault(name, value)
    confine(msg["cwd"], msg["argv"])
    return launch(msg["argv"])


def confine(work, argv):
    """Writes only into the kernel's capped folders, sockets only into its socket folder (writes.py)."""
    try:
        writes.only([work, "/tmp", "/dev/shm", "/dev"], writes.sockets_of(argv))
    except OSError:
        pass  # a kernel without Landlock's rules: its files there are capped one by one


def own(work, work_bytes, argv):
    """A kernel in a sandbox of its own (kernel_server.SandboxedKernelManager._launch_own,
    started in the sandbox's /tmp so that nothing of the learner's folder is imported here):
    its working folder `work` becomes a tmpfs of `work_bytes` holding its copy, as a forked
    kernel's does (child.isolate), then `python -m ipykernel_launcher *argv` runs in it."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    try:
        isolate(work, work_bytes)
    except OSError:
        pass  # no unprivileged user namespaces: its files are capped one by one (RLIMIT_FSIZE)
    os.chdir(work)
    os.environ["PWD"] = work
    confine(work, argv)
    return launch(argv)


def launch(argv):
    """Run `python -m ipykernel_launcher *argv` in this process; the exit code when it ends."""
    ctypes.CDLL(None).prctl(15, b"ipykernel", 0, 0, 0)  # PR_SET_NAME: what ps and top call it
    import random

    import numpy
    random.seed()
    numpy.random.seed()
    import ipykernel_launcher
    from ipykernel import kernelapp
    sys.argv = [ipykernel_launcher.__file__, *argv]
    try:
        kernelapp.launch_new_instance(argv=sys.argv[1:])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    import atexit
    atexit._run_exitfuncs()  # as the interpreter would at exit (IPython's history, ...)
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["--own"] and len(sys.argv) > 4 and sys.argv[3].isdigit():
        sys.exit(own(sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
    main(serve, "autograder.grader.kernels")
