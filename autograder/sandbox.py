"""Run learner code in a separate, sandboxed, resource-limited process, and talk to it.

The child (`python -m autograder.child`, see child.py) replays the answers and reports each
one over a pipe as soon as it is recorded; the grader checks it (torch.load with
weights_only=True, then score.valid) and answers with the value the child may use from then
on. On Linux the child runs under bubblewrap: no network, a read-only view of Python and the
autograder package only (not the course's source/, gradebook or submissions), and one
writable scratch folder.
"""
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

import torch
from jupyter_client.manager import AsyncKernelManager

from . import data

PACKAGE = Path(__file__).resolve().parent
# Limits per learner process, in one place.
LIMITS = dict(cpu_seconds=60, wall_seconds=120, memory_bytes=6 * 2**30, file_bytes=64 * 2**20,
              processes=256, statement_seconds=10)


class SandboxError(RuntimeError):
    """The learner's process failed as a whole (timeout, crash, memory): no tensors came back."""


def bwrap_prefix(scratch, writable=(), readable=()):
    """The bubblewrap command line that confines a child to Python, the autograder package,
    the data and `scratch` (its working folder), or [] where bwrap is missing."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return []
    ro = {"/usr", "/lib", "/lib64", "/bin", "/etc/alternatives", "/etc/fonts", sys.base_prefix,
          sys.prefix, sysconfig.get_paths()["purelib"], str(PACKAGE), str(data.DEFAULT_PATH), *readable}
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--unsetenv", "JPY_PARENT_PID",  # ipykernel would take pid 1 (bwrap) as its parent gone
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in sorted(ro):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in [str(scratch), *writable]:
        args += ["--bind", path, path]
    return args + ["--chdir", str(scratch), "--"]


def _limit():
    """In the child, before exec: CPU, memory, file size and process limits."""
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (LIMITS["cpu_seconds"],) * 2)
    resource.setrlimit(resource.RLIMIT_AS, (LIMITS["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMITS["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (LIMITS["processes"],) * 2)


_warned = False
last_cpu_seconds = None  # CPU time of the last child, as it measured itself (for benchmarks)
MAX_MESSAGE = 64 * 2**20  # bytes: a bigger message from the child is refused, and the child stopped


def run_many(jobs, collectors):
    """{exercise: replay errors} for jobs {exercise: job} (see score.build_job), all replayed
    in one sandboxed child (one learner's answers: Python and torch start once). Each answer
    the child reports goes to collectors[exercise].give, whose reply (the value the namespace
    holds from then on) goes back to the child. Raises SandboxError if the child fails as a
    whole (time, memory, a crash, a broken message)."""
    global _warned, last_cpu_seconds
    with tempfile.TemporaryDirectory(prefix="ninja-sandbox-") as scratch:
        scratch = Path(scratch)
        prefix = bwrap_prefix(scratch)
        if not prefix and not _warned:
            _warned = True
            warnings.warn("bubblewrap (bwrap) not found: learner code runs WITHOUT a sandbox "
                          "(still in a separate, resource-limited process). Install it: apt-get install bubblewrap")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(PACKAGE.parent), "PYTHONNOUSERSITE": "1"}
        child_in, to_child = os.pipe()    # the grader writes, the child reads
        from_child, child_out = os.pipe()  # the child writes, the grader reads
        cmd = prefix + [sys.executable, "-s", "-m", "autograder.child", str(child_in), str(child_out)]
        proc = subprocess.Popen(cmd, env=env, cwd=scratch, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(scratch / "stderr", "wb"),
                                preexec_fn=_limit, pass_fds=(child_in, child_out))
        os.close(child_in)
        os.close(child_out)
        os.set_blocking(to_child, False)
        deadline = time.monotonic() + LIMITS["wall_seconds"]
        results, ended, failure = {}, False, None
        try:
            _send(to_child, {"jobs": jobs, "statement_seconds": LIMITS["statement_seconds"]}, deadline)
            while not ended:
                msg = _receive(from_child, deadline)
                if msg is None:
                    break
                op, ex = msg.get("op"), msg.get("exercise")
                if op == "give" and ex in collectors:
                    fields = [msg.get(k) for k in ("case", "run", "name")]
                    if not all(isinstance(f, str) and len(f) < 100 for f in fields):
                        raise ValueError("a malformed answer")
                    reply = collectors[ex].give(*fields, msg.get("value"))
                    _send(to_child, {"value": reply}, deadline)
                elif op == "done" and ex in jobs and isinstance(msg.get("errors"), dict):
                    results[ex] = {str(k)[:200]: str(v)[:500] for k, v in list(msg["errors"].items())[:2000]}
                elif op == "end":
                    ended = True
                    try:
                        last_cpu_seconds = float(msg.get("cpu_seconds"))
                    except (TypeError, ValueError):
                        last_cpu_seconds = float("nan")
                else:
                    raise ValueError(f"an unexpected message ({str(op)[:20]})")
        except TimeoutError:
            failure = f"your code ran longer than {LIMITS['wall_seconds']} s and was stopped"
        except (OSError, EOFError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            failure = f"its results could not be read ({type(e).__name__})"
        finally:
            for fd in (to_child, from_child):
                os.close(fd)
            if failure is None and not ended:  # it ended by itself: let it say how
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            except ProcessLookupError:
                pass
            code = proc.wait()
        if ended and set(results) == set(jobs):
            return results
        if failure is None:
            if code > 128:  # bwrap passes on a signal's death as 128 + signal
                code = -(code - 128)
            tail = (scratch / "stderr").read_bytes()[-600:].decode(errors="replace").strip().splitlines()
            why = {-signal.SIGXCPU: "used more than its CPU time", -signal.SIGKILL: "was killed (memory or time)",
                   -signal.SIGSEGV: "crashed"}.get(code, f"exited with code {code}")
            failure = f"the process running your code {why}" + (f": {tail[-1][:200]}" if tail else "")
        raise SandboxError(failure)


def _send(fd, message, deadline):
    import io
    buf = io.BytesIO()
    torch.save(message, buf)
    data = memoryview(struct.pack(">Q", len(buf.getvalue())) + buf.getvalue())
    while data:
        if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
            raise TimeoutError
        data = data[os.write(fd, data):]


def _receive(fd, deadline):
    """One message from the child (a dict), None at end of file."""
    import io
    head = _read(fd, 8, deadline)
    if not head:
        return None
    (size,) = struct.unpack(">Q", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes")
    body = _read(fd, size, deadline)
    if len(body) < size:
        raise EOFError("a message cut short")
    msg = torch.load(io.BytesIO(body), weights_only=True)
    if not isinstance(msg, dict):
        raise ValueError("a message that is not a dict")
    return msg


def _read(fd, size, deadline):
    chunks, got = [], 0
    while got < size:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class SandboxedKernelManager(AsyncKernelManager):
    """A Jupyter kernel manager whose kernels run under bubblewrap: the notebook's folder is
    their only writable place, and they talk to nbgrader over Unix sockets (no network)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        if shutil.which("bwrap"):
            self._sockets = tempfile.mkdtemp(prefix="ninja-kernel-")
            self.transport, self.ip = "ipc", os.path.join(self._sockets, "kernel")

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        cwd = kw.get("cwd") or os.getcwd()
        prefix = bwrap_prefix(cwd, writable=[getattr(self, "_sockets", cwd)], readable=[self.connection_file])
        if not prefix:
            warnings.warn("bubblewrap (bwrap) not found: the learner's kernel runs WITHOUT a sandbox")
        kw["env"] = {**kw.get("env", os.environ), "HOME": cwd, "MPLCONFIGDIR": os.path.join(cwd, ".mpl")}
        return await super()._async_launch_kernel(prefix + kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart)
        if not restart and hasattr(self, "_sockets"):
            shutil.rmtree(self._sockets, ignore_errors=True)
