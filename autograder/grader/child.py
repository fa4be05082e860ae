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

The server outlives one learner: it imports torch once for the many learners of one grading
process (replay_server.Server). It never holds anything of any learner either: for each learner it
forks a learner process, which reads that learner's jobs, forks the exercises' children and
exits; the server only waits for it. Then, before it says it is ready for the next learner,
it kills every process left in its sandbox (its own PID namespace: an escaped child's
leftovers included), empties every place a child could write (its folder, /tmp, /dev/shm, the
stderr file) and checks that both held; if not, it exits and the grader starts a fresh one.
No process of one learner can reach another's memory: the server makes itself (and so every
process it forks) non-dumpable before the first fork, so no process of the same user may
ptrace it or open its /proc/<pid>/mem, fd/ or environ; and no folder on its module path is
writable. Each learner process isolates itself first (isolate(): its own user, IPC and mount
namespaces and session keyring, so no IPC object or key of one learner reaches the next) and
waits for its jobs until the grader moved it into the learner's memory cgroup. Outside a
sandbox (bwrap missing), or where unprivileged user namespaces are refused, it sweeps nothing
and serves one learner only.

It holds no reference gradient, no hidden case's definition and no gradient code: the true
value of a gradient reaches a child only after the learner's answer for it has gone out.
The whole server runs under bubblewrap as an unprivileged user of its own (sandbox.py), and
so does every child it forks. The messages are wire.py's.
"""
import ctypes
import gc
import os
import resource
import shutil
import signal
import sys
import time

import torch

from . import oneprocess, tree
from .wire import WireError, ended, receive, send

CHILD_SECONDS = 60  # CPU seconds of one exercise's child, unless the grader's setup says otherwise
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
    from ..score import UNJUDGED, describe
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    why = describe(value)
    if why:
        return UNJUDGED + why
    try:
        with torch._C.DisableTorchFunction():  # a clean copy: nothing the watch noted on the tensor
            return torch.Tensor.detach(value).clone().contiguous()
    except Exception:
        return UNJUDGED + "an unreadable tensor"


def run_child(exercise, job, fd_in, fd_out, rules, cpu_seconds=CHILD_SECONDS, one_process=False):
    """In the forked child: replay one exercise by `rules` (replay.Rules) within cpu_seconds of
    CPU (with `one_process`, starting no process: oneprocess.py), report over fd_out, read
    replies from fd_in."""
    from .. import replay
    from . import detect
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    if one_process:
        oneprocess.apply()
    harden()

    def give(case, run, name, value):
        send(fd_out, {"op": "give", "exercise": exercise, "case": case, "run": run, "name": name,
                      "value": answer(value)})
        reply = receive(fd_in)
        value = reply.get("value") if isinstance(reply, dict) else None
        return plain(value) if isinstance(value, torch.Tensor) else None

    job = plain(job)  # the grader's own copies, made before the watch starts
    with detect.Watch(job) as watch:
        errors = replay.run_job(job, give, watch, rules)
    send(fd_out, {"op": "done", "exercise": exercise, "errors": {str(k): str(v) for k, v in errors.items()}})
    _exit(0)


def serve(fd_in, fd_out, sandboxed=False):
    """Serve learners until the grader closes fd_in: for each {"op": "learner"}, fork a learner
    process (isolate(), then learner()), say {"op": "forked", "pid"}, wait for it, sweep, and
    answer {"op": "ready", "status", "clean"}."""
    from .. import forward, replay, score  # noqa: F401  (replay: the only module that executes learner code)
    from . import detect, restricted  # noqa: F401  (all imported once, before any fork)
    import torch.nn.functional  # noqa: F401
    torch.set_num_threads(1)
    restricted.compile_answer("x = 1", "<warm-up>")
    sandboxed = sandboxed and in_own_sandbox() and isolation_works()  # else one learner per server
    seal()
    gc.freeze()  # what is imported stays put: no collection in a fork copies the whole heap
    send(fd_out, {"op": "ready", "status": 0, "clean": True, "persistent": sandboxed})
    while True:
        msg = receive(fd_in, limit=4096)
        if not isinstance(msg, dict) or msg.get("op") != "learner":
            return
        pid = os.fork()
        if pid == 0:
            try:
                if sandboxed:
                    isolate()
                learner(fd_in, fd_out)
            finally:
                _exit(70)  # never back into the server's loop
        send(fd_out, {"op": "forked", "pid": pid})  # the grader moves it into the learner's cgroup, then sends the jobs
        _, status = os.waitpid(pid, 0)
        clean = sweep() if sandboxed else False
        send(fd_out, {"op": "ready", "status": status, "clean": clean, "persistent": sandboxed})
        if not clean:
            return


def learner(fd_in, fd_out):
    """In the learner process: read one learner's jobs, replay each exercise in a child of its
    own, report the end and the CPU time used."""
    from .. import replay
    setup = receive(fd_in)
    send(fd_out, {"op": "started"})
    from . import restricted
    rules = replay.Rules(restricted, setup["statement_seconds"])  # answers run in RestrictedPython here
    cpu_seconds = int(setup.get("child_seconds", CHILD_SECONDS))
    for exercise, job in setup["jobs"].items():
        relay(exercise, job, fd_in, fd_out, rules, cpu_seconds, setup.get("one_process") is True)
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    send(fd_out, {"op": "end", "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in usage)})
    _exit(0)


def in_own_sandbox():
    """True if this process runs in a PID namespace of its own that bubblewrap made (pid 1 is
    bwrap, its parent): only there may sweep() kill every other process it can signal."""
    try:
        with open("/proc/1/comm") as f:
            return os.getppid() == 1 and f.read().strip() == "bwrap"
    except OSError:
        return False


def seal():
    """Before the first fork: non-dumpable (no process of this user may ptrace this one or its
    forks, or open their /proc/<pid>/mem), and no writable folder on the module path."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    sys.path[:] = [p for p in sys.path if p and os.path.isabs(p) and not os.access(p, os.W_OK)]
    sys.path_importer_cache.clear()


CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
SYSCALLS = {"x86_64": {"keyctl": 250}, "aarch64": {"keyctl": 219}}
KEYCTL_JOIN_SESSION_KEYRING = 1


def isolate(work=None, work_bytes=None):
    """In a learner's process, before any of its code: a user namespace of its own (this user
    mapped to itself, no capabilities) with an IPC and a mount namespace of its own, and a new
    session keyring. So no System V shared memory, message queue or semaphore set, POSIX
    message queue or key (user, session, persistent or named keyring) of one learner is seen
    by the next, and all are freed when the learner's last process ends. With `work`, that
    folder becomes a tmpfs of `work_bytes` holding a copy of what it held (the grader's own copy
    on its disk is left as it was). Raises OSError if any step fails."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what} failed")
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWNS), "unshare")
    check(libc.prctl(4, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 1)")  # /proc/self/*_map are then this user's
    try:
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        if work:
            source = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
            try:
                options = f"size={work_bytes},nr_inodes=10000,mode=0755".encode()
                check(libc.mount(b"tmpfs", os.fsencode(work), b"tmpfs", 2 | 4 | 8, options), "mount")  # nosuid, nodev, noexec
                try:  # the grader's copy, bounded in depth and size by tree.copy: no deep walk here
                    shutil.copytree(f"/proc/self/fd/{source}", work, symlinks=True, dirs_exist_ok=True)
                except shutil.Error:
                    pass  # a file it cannot read: its own loss
            finally:
                os.close(source)
        keyctl = SYSCALLS[os.uname().machine]["keyctl"]
        if libc.syscall(keyctl, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            raise OSError(ctypes.get_errno(), "keyctl(KEYCTL_JOIN_SESSION_KEYRING) failed")
        header, caps = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()  # _LINUX_CAPABILITY_VERSION_3
        check(libc.capset(header, caps), "capset")  # none of the capabilities the namespace gave
    finally:
        check(libc.prctl(4, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 0)")


def isolation_works():
    """Whether isolate() works here (unprivileged user namespaces allowed): tried in a fork."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            isolate()
            code = 0
        finally:
            _exit(code)
    return os.waitpid(pid, 0)[1] == 0


WRITABLE = ("/tmp", "/dev/shm")  # and the working folder: where a child may leave files


def sweep(seconds=5):
    """After a learner: kill every process left in this sandbox but this one, then empty every
    place a child could write. True if both held (nothing left running, nothing left behind)."""
    me, deadline = os.getpid(), time.monotonic() + seconds
    while True:
        try:
            _kill(-1, signal.SIGKILL)  # every process this one may signal, but itself and pid 1
        except ProcessLookupError:
            pass
        if not [p for p in _pids() if p not in (1, me)]:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    try:
        os.ftruncate(2, 0)  # the stderr file: the next learner's messages only
    except OSError:
        pass
    mounts = _mount_points()
    for folder in {os.getcwd(), *WRITABLE}:
        if os.path.isdir(folder):
            # what bubblewrap bound inside /tmp (the working folder, maybe the package): the
            # folders on their way stay, and the working folder is emptied in its own turn
            keep = {e for e in os.listdir(folder) if any((m + "/").startswith(os.path.join(folder, e) + "/") for m in mounts)}
            for entry in os.scandir(folder):
                if entry.name not in keep:
                    remove(entry.path)
            if set(os.listdir(folder)) - keep:
                return False
    return True


def _mount_points():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def _pids():
    """The live processes of this PID namespace (zombies are dead: their parent reaps them)."""
    live = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                live.append(int(name))
    return live


def remove(path):
    """Remove what a child left at path, however deep, whatever modes it set on its folders
    (tree.remove); what cannot go, sweep() finds still there."""
    tree.remove(path)


def relay(exercise, job, fd_in, fd_out, rules, cpu_seconds=CHILD_SECONDS, one_process=False):
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
            run_child(exercise, job, to_child_r, from_child_w, rules, cpu_seconds, one_process)
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
        why = why or ended(status)
        send(fd_out, {"op": "failed", "exercise": exercise, "why": f"the process running your code {why}"})


def main(serve, module):
    """`python -m module FD_IN FD_OUT [--sandboxed]`: a server's command line (replay_server.py's)."""
    args = sys.argv[1:]
    sandboxed = args[-1:] == ["--sandboxed"]
    args = args[:-1] if sandboxed else args
    if len(args) != 2 or not all(a.isdigit() for a in args):
        sys.exit(f"usage: python -m {module} FD_IN FD_OUT [--sandboxed] (started by the grader, "
                 "see autograder/grader/sandbox.py)")
    serve(int(args[0]), int(args[1]), sandboxed)


if __name__ == "__main__":
    main(serve, "autograder.grader.child")
