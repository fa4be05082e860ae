"""The grader's side of the replay: one sandboxed fork server per grading process (child.py),
a learner's answers replayed in it, each answer the child reports checked (wire.decode, then
score.valid) and answered with the value the child may use from
then on. The sandbox itself (bubblewrap, the limits) is sandbox.py's."""
import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from .. import score
from . import sandbox, wire

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


class Server(sandbox.Spawned):
    """One sandboxed fork server (child.py) for the learners a grading process replays: Python
    and torch start once, not once per learner. Each learner's jobs go to a learner process it
    forks; after each learner the server kills what is left in its sandbox and empties the
    places a child could write, or exits (see child.py). A server that fails in any way is
    killed, and the next learner gets a fresh one. Without bubblewrap a server serves one
    learner only (nothing can sweep its leftovers)."""

    @staticmethod
    def wanted():
        """What a server is started from: the sandbox's command line, the limits, the Python."""
        return sandbox.bwrap_prefix, tuple(sorted(sandbox.LIMITS.items())), tuple(sorted(sandbox.LEARNER.items())), sys.executable

    def __init__(self):
        self.key = self.wanted()
        self.uid = sandbox.sandbox_uid()
        prefix = sandbox.bwrap_prefix(None, uid=self.uid)  # its folder: the sandbox's /tmp, gone with it
        # without a sandbox, a folder of its own on the machine (it serves one learner only)
        self.scratch = None if prefix else Path(tempfile.mkdtemp(prefix="ninja-sandbox-"))
        global _warned
        if not prefix and not _warned:
            _warned = True
            warnings.warn("bubblewrap (bwrap) not found: learner code runs WITHOUT a sandbox "
                          "(still in a separate, resource-limited process). Install it: apt-get install bubblewrap")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.scratch or "/tmp"), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(sandbox.PACKAGE.parent), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        # the server's own CPU is its start and its sweeps; each exercise's child has its own limit
        server_limits = {**sandbox.LIMITS, "cpu_seconds": sandbox.LIMITS["cpu_seconds"] * 4}
        self._spawn("autograder.grader.child", prefix, sys.executable, env, self.scratch or "/", server_limits,
                    python_args=["-s"])
        self.persistent = False
        try:
            self._ready(time.monotonic() + sandbox.LIMITS["wall_seconds"])
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
        deadline = time.monotonic() + sandbox.LIMITS["wall_seconds"]
        results, ended, started = {}, False, False
        try:
            wire.send(self.to_child, {"op": "learner"}, deadline)
            self.enter(deadline)
            wire.send(self.to_child, {"jobs": _detached(jobs), "statement_seconds": sandbox.LIMITS["statement_seconds"],
                                      "child_seconds": sandbox.LIMITS["cpu_seconds"],
                                      "one_process": sandbox.one_process()}, deadline)
            while not ended:
                msg = wire.receive(self.from_child, deadline, MAX_MESSAGE)
                if msg is None:
                    break
                op, ex = msg.get("op"), msg.get("exercise")
                if op == "started" and not started:
                    started = True
                elif not started:
                    raise sandbox.NotStarted(f"the server answered {str(op)[:20]} to a learner")
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
                    raise sandbox.SandboxError(f"the process running your code {wire.ended(msg.get('status'))}")
                else:
                    raise wire.WireError(f"an unexpected message ({str(op)[:20]})")
            if ended:
                self._ready(deadline)
        except (sandbox.NotStarted, sandbox.SandboxError):
            raise
        except TimeoutError:
            raise sandbox.SandboxError(f"your code ran longer than {sandbox.LIMITS['wall_seconds']} s and was stopped")
        except Exception as e:  # a broken message, a closed pipe: this learner's failure only
            if not started:
                raise sandbox.NotStarted(f"its results could not be read ({type(e).__name__})")
            raise sandbox.SandboxError(f"its results could not be read ({type(e).__name__})")
        finally:
            self.release()
        if ended and set(results) == set(jobs):
            return results
        self.persistent = False
        raise sandbox.SandboxError(self.death())

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
    collector is then emptied. Raises sandbox.SandboxError if the learner's replay fails as a whole
    (the wall time, a crash, a broken message); the server is then replaced."""
    global _server
    with _server_lock:
        for attempt in (1, 2):
            try:
                if _server is None or not _server.usable():
                    stop_server()
                    _server = Server()
                results = _server.replay(jobs, collectors)
            except sandbox.NotStarted as e:  # a server that died between learners: the grader's, not theirs
                stop_server()
                if attempt == 2:
                    raise sandbox.SandboxError(str(e))
                continue
            except sandbox.SandboxError:
                stop_server()
                raise
            except (OSError, wire.WireError, TimeoutError) as e:  # the server did not start
                stop_server()
                if attempt == 2:
                    raise sandbox.SandboxError(f"its results could not be read ({type(e).__name__})")
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


