"""Run learner code in a separate, sandboxed, resource-limited process; get tensors back.

The child (`python -m autograder.sandbox JOB OUT`) replays the answers and saves plain tensors
and error strings; the parent loads them with `torch.load(weights_only=True)`. On Linux the
child runs under bubblewrap: no network, a read-only view of Python and the autograder package
only (not the course's source/, gradebook or submissions), and one writable scratch folder.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
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


def run(exercise, sources):
    """(tensors, errors) from replaying sources [(cell_id, source)] in a sandboxed child."""
    return run_many({exercise: sources})[exercise]


def run_many(jobs):
    """{exercise: (tensors, errors)} for jobs {exercise: sources}, all in one sandboxed child
    (one learner's answers: Python and torch start once)."""
    global _warned
    with tempfile.TemporaryDirectory(prefix="ninja-sandbox-") as scratch:
        scratch = Path(scratch)
        job, out = scratch / "job.json", scratch / "out.pt"
        job.write_text(json.dumps({"jobs": jobs, "statement_seconds": LIMITS["statement_seconds"]}))
        prefix = bwrap_prefix(scratch)
        if not prefix and not _warned:
            _warned = True
            warnings.warn("bubblewrap (bwrap) not found: learner code runs WITHOUT a sandbox "
                          "(still in a separate, resource-limited process). Install it: apt-get install bubblewrap")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(PACKAGE.parent) if not prefix else "", "PYTHONNOUSERSITE": "1",
               "BACKPROP_NINJA_NAMES": str(data.DEFAULT_PATH)}
        cmd = prefix + [sys.executable, "-s", "-m", "autograder.sandbox", str(job), str(out)]
        proc = subprocess.Popen(cmd, env=env, cwd=scratch, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(scratch / "stderr", "wb"),
                                preexec_fn=_limit)
        try:
            code = proc.wait(timeout=LIMITS["wall_seconds"])
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            except ProcessLookupError:
                pass
            proc.wait()
        if code is None:
            raise SandboxError(f"your code ran longer than {LIMITS['wall_seconds']} s and was stopped")
        if code > 128:  # bwrap passes on a signal's death as 128 + signal
            code = -(code - 128)
        if code != 0 or not out.exists():
            tail = (scratch / "stderr").read_bytes()[-600:].decode(errors="replace").strip().splitlines()
            why = {-signal.SIGXCPU: "used more than its CPU time", -signal.SIGKILL: "was killed (memory or time)",
                   -signal.SIGSEGV: "crashed"}.get(code, f"exited with code {code}")
            raise SandboxError(f"the process running your code {why}" + (f": {tail[-1]}" if tail else ""))
        try:
            result = torch.load(out, weights_only=True)
            global last_cpu_seconds
            last_cpu_seconds = float(result.get("cpu_seconds", float("nan")))
            return {ex: (dict(result[ex]["tensors"]), dict(result[ex]["errors"])) for ex in jobs}
        except Exception as e:
            raise SandboxError(f"the results of your code could not be read ({type(e).__name__})") from None


def _harden():
    """Inside the child, before learner code: autograd's public entry points and the ways to
    end the process refuse (a static check in the grader catches more)."""
    def refuse(what):
        def f(*a, **k):
            raise RuntimeError(f"{what} is not allowed in an answer")
        return f
    torch.Tensor.backward = refuse("autograd")
    torch.autograd.grad = refuse("autograd")
    torch.autograd.backward = refuse("autograd")
    torch.set_grad_enabled(False)
    os._exit = refuse("os._exit")
    os.abort = refuse("os.abort")
    os.kill = refuse("os.kill")


def main(job_path, out_path):
    from . import replay  # the only module that executes learner code
    job = json.loads(Path(job_path).read_text())
    torch.set_num_threads(1)
    replay.STATEMENT_SECONDS = job["statement_seconds"]
    prepared = {ex: replay.prepare(ex) for ex in job["jobs"]}
    _harden()
    result = {}
    for ex, sources in job["jobs"].items():
        tensors, errors = replay.replay(ex, [tuple(s) for s in sources], prepared[ex])
        tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()
                   if isinstance(v, torch.Tensor) and not v.is_sparse}
        result[ex] = {"tensors": tensors, "errors": {str(k): str(v)[:500] for k, v in errors.items()}}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # its parent cannot see it through bwrap
    torch.save(result, out_path)


if __name__ == "__main__":
    import argparse
    cli = argparse.ArgumentParser(
        prog="python -m autograder.sandbox",
        description="The grader's sandboxed child process: replay the answers listed in JOB and "
                    "save the resulting tensors to OUT. The grader starts it (run_many); it is "
                    "not meant to be run by hand.")
    cli.add_argument("job", help="a JSON file: {'jobs': {exercise: [[cell_id, source], ...]}, 'statement_seconds': s}")
    cli.add_argument("out", help="where to save the tensors and errors (torch.save)")
    args = cli.parse_args()
    main(args.job, args.out)


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
