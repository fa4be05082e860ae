"""The sandboxed process that runs learner code: `python -m autograder.grader.child IN OUT`.

A fork server: it imports torch, numpy, RestrictedPython and the replay once, reads the jobs
(plain data built by the grader: answer statements, each case's inputs) from file descriptor
IN, and for each exercise forks a fresh child that replays that exercise's answers
(replay.py, in restricted.py's language) and exits. The server itself runs no learner code
and holds nothing any answer wrote, so nothing one exercise's statements change (a module's
attribute, a list on a module, a cache in a closure, a class attribute) is visible to the
next exercise: each starts from the same pristine process image. The forked child talks to
the server over a pipe pair of its own; the server relays each answer to the grader over OUT
and the grader's reply (the value the namespace holds from then on) back to the child. A
child that crashes, runs out of its CPU time or memory, or sends garbage costs its own
exercise only: the server reports it as `failed` and goes on with the next.

It holds no reference gradient, no hidden case's definition and no gradient code: the true
value of a gradient reaches a child only after the learner's answer for it has gone out.
The whole server runs under bubblewrap as an unprivileged user of its own (sandbox.py), and
so does every child it forks. The messages are wire.py's.
"""
import os
import resource
import signal
import sys

import torch

from .wire import WireError, receive, send

CHILD_SECONDS = 60  # CPU seconds of one exercise's child (set from the grader's limits)
_exit, _kill = os._exit, os.kill  # the real ones: harden() takes them from answers, in the child


def harden():
    """Before learner code: grad mode off for good (nothing an answer can reach switches it
    back on: restricted.py), autograd's entry points and the ways to end the process refuse."""
    def refuse(what):
        def f(*a, **k):
            raise RuntimeError(f"{what} is not allowed in an answer")
        return f
    torch.autograd.grad_mode.set_grad_enabled(False)
    torch.Tensor.backward = refuse("autograd")
    torch.autograd.grad = refuse("autograd")
    torch.autograd.backward = refuse("autograd")
    os._exit = refuse("os._exit")
    os.abort = refuse("os.abort")
    os.kill = refuse("os.kill")


def plain(value):
    """The job's data as the answers may see it: tensors detached, never requiring grad."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(False)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def answer(value):
    """An answer as it goes over the wire: a plain dense float CPU tensor (a copy), or a
    string saying what it is instead (score.valid keeps it as the reason it is not judged)."""
    from ..score import REFUSED, describe
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    why = describe(value)
    if why:
        return REFUSED + why
    try:
        with torch._C.DisableTorchFunction():  # a clean copy: nothing the watch noted on the tensor
            return torch.Tensor.detach(value).clone().contiguous()
    except Exception:
        return REFUSED + "an unreadable tensor"


def run_child(exercise, job, fd_in, fd_out):
    """In the forked child: replay one exercise, report over fd_out, read replies from fd_in."""
    from .. import replay
    from . import detect
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_SECONDS, CHILD_SECONDS + 5))
    harden()

    def give(case, run, name, value):
        send(fd_out, {"op": "give", "exercise": exercise, "case": case, "run": run, "name": name,
                      "value": answer(value)})
        reply = receive(fd_in)
        value = reply.get("value") if isinstance(reply, dict) else None
        return plain(value) if isinstance(value, torch.Tensor) else None

    job = plain(job)  # the grader's own copies, made before the watch starts
    with detect.Watch(job) as watch:
        errors = replay.run_job(job, give, watch)
    send(fd_out, {"op": "done", "exercise": exercise, "errors": {str(k): str(v) for k, v in errors.items()}})
    _exit(0)


def serve(fd_in, fd_out):
    from .. import forward, replay, score  # noqa: F401  (replay: the only module that executes learner code)
    from . import detect, restricted  # noqa: F401  (all imported once, before any fork)
    import torch.nn.functional  # noqa: F401
    global CHILD_SECONDS
    replay.LANGUAGE = restricted  # answers run in RestrictedPython here
    torch.set_num_threads(1)
    restricted.compile_answer("x = 1", "<warm-up>")
    setup = receive(fd_in)
    replay.STATEMENT_SECONDS = setup["statement_seconds"]
    CHILD_SECONDS = int(setup.get("child_seconds", CHILD_SECONDS))
    for exercise, job in setup["jobs"].items():
        relay(exercise, job, fd_in, fd_out)
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    send(fd_out, {"op": "end", "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in usage)})


def relay(exercise, job, fd_in, fd_out):
    """Fork the child of one exercise and relay its messages; report `failed` if it does not
    end with its `done`."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(to_child_w)
            os.close(from_child_r)
            os.close(fd_in)
            os.close(fd_out)
            run_child(exercise, job, to_child_r, from_child_w)
        finally:
            _exit(70)  # never back into the server's loop
    os.close(to_child_r)
    os.close(from_child_w)
    done, why = False, ""
    try:
        while True:
            msg = receive(from_child_r, limit=64 * 2**20)
            if msg is None:
                break
            if msg.get("op") == "give" and msg.get("exercise") == exercise:
                send(fd_out, msg)
                reply = receive(fd_in)
                send(to_child_w, reply if isinstance(reply, dict) else {"value": None})
            elif msg.get("op") == "done" and msg.get("exercise") == exercise:
                send(fd_out, msg)
                done = True
                break
            else:
                why = "sent an unexpected message"
                break
    except (WireError, OSError) as e:
        why = why or f"sent a message that could not be read ({type(e).__name__})"
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
        if not done:
            try:
                _kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if not done:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            why = why or {signal.SIGXCPU: "used more than its CPU time", signal.SIGKILL: "was killed (memory or time)",
                          signal.SIGSEGV: "crashed"}.get(sig, f"was stopped by signal {sig}")
        why = why or f"exited with code {os.WEXITSTATUS(status)}"
        send(fd_out, {"op": "failed", "exercise": exercise, "why": f"the process running your code {why}"})


if __name__ == "__main__":
    if len(sys.argv) != 3 or not all(a.isdigit() for a in sys.argv[1:]):
        sys.exit("usage: python -m autograder.grader.child FD_IN FD_OUT (started by the grader, see autograder/grader/sandbox.py)")
    serve(int(sys.argv[1]), int(sys.argv[2]))
