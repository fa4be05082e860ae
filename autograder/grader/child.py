"""The sandboxed process that runs learner code: `python -m autograder.grader.child IN OUT`.

It reads jobs (plain data built by the grader: answer statements, each case's inputs) from
file descriptor IN, replays them (replay.py), and reports every answer over OUT as soon as it
is recorded; the grader answers each report with the value to put in the namespace from then
on. It holds no reference gradient, no hidden case's definition and no gradient code: the
true value of a gradient reaches it only after the learner's answer for it has gone out.
The messages are wire.py's.
"""
import os
import resource
import sys

import torch

from .wire import receive, send


def harden():
    """Before learner code: autograd's public entry points and the ways to end the process
    refuse (the grader's static check of the answers catches more)."""
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


def main(fd_in, fd_out):
    from .. import replay  # the only module that executes learner code
    from . import restricted
    replay.LANGUAGE = restricted  # answers run in RestrictedPython here
    torch.set_num_threads(1)
    setup = receive(fd_in)
    replay.STATEMENT_SECONDS = setup["statement_seconds"]
    harden()
    for exercise, job in setup["jobs"].items():
        def give(case, run, name, value, exercise=exercise):
            send(fd_out, {"op": "give", "exercise": exercise, "case": case, "run": run, "name": name,
                          "value": value.detach().clone().contiguous() if isinstance(value, torch.Tensor) else
                          (value if isinstance(value, str) else None)})
            reply = receive(fd_in)
            return reply.get("value") if isinstance(reply, dict) else None
        errors = replay.run_job(job, give)
        send(fd_out, {"op": "done", "exercise": exercise, "errors": {str(k): str(v) for k, v in errors.items()}})
    usage = resource.getrusage(resource.RUSAGE_SELF)
    send(fd_out, {"op": "end", "cpu_seconds": usage.ru_utime + usage.ru_stime})


if __name__ == "__main__":
    if len(sys.argv) != 3 or not all(a.isdigit() for a in sys.argv[1:]):
        sys.exit("usage: python -m autograder.grader.child FD_IN FD_OUT (started by the grader, see autograder/grader/sandbox.py)")
    main(int(sys.argv[1]), int(sys.argv[2]))
