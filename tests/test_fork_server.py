"""The sandboxed fork server outlives one learner (replay_server.Server, child.serve): does it keep
learners apart? Each test plays a learner whose code escaped RestrictedPython (a process of
the sandbox's user inside the sandbox, started with nsenter) and checks that nothing it does
reaches the server or the next learner, and that the next learner keeps every point."""
import os
import signal
import subprocess
import time

import psutil
import pytest

from autograder import score
from autograder.grader import child, replay_server, sandbox
from autograder.grader.trusted import trusted_verdicts_many
from conftest import solution_cells

RIGHT = {"ex2": list(solution_cells("ex2").items()), "ex3": list(solution_cells("ex3").items())}
root_only = pytest.mark.skipif(os.geteuid() != 0 or not sandbox.shutil.which("nsenter"),
                               reason="entering the sandbox from outside takes root and nsenter")


def graded_right():
    """One learner's Exercises 2 and 3, right: every gradient must be full marks."""
    verdicts = trusted_verdicts_many(RIGHT)
    return all(v.ok for vs in verdicts.values() for v in vs.values())


def server_process():
    """The sandboxed server (psutil.Process), outside: bwrap, its PID 1 (bwrap), then Python."""
    init, = psutil.Process(replay_server._server.proc.pid).children()
    server, = init.children()
    return init, server


def escaped(script):
    """Run `sh -c script` inside the server's sandbox as the sandbox's user, in the background
    (a process of its own session, as an escaped child would start it). Returns what it printed
    within a second."""
    init, _ = server_process()
    uid = str(replay_server._server.uid)
    proc = subprocess.Popen(["nsenter", "-t", str(init.pid), "-p", "-m", "-n", "-i", "-u", "--",
                             "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                             "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    time.sleep(1)
    out = proc.stdout.read1(10000).decode() if proc.poll() is not None else ""
    return proc, out


@pytest.fixture
def fresh():
    replay_server.stop_server()
    yield
    replay_server.stop_server()


def test_one_server_serves_learner_after_learner(fresh):
    assert graded_right()
    first = replay_server._server.proc.pid
    assert replay_server._server.persistent
    for _ in range(3):
        assert graded_right()
    assert replay_server._server.proc.pid == first, "the server was started again"


@root_only
def test_an_escaped_learner_leaves_no_process_and_no_file_for_the_next(fresh):
    assert graded_right()
    _, server = server_process()
    marker = "4242.25"
    proc, _ = escaped(f"echo x > /tmp/left; echo x > /dev/shm/left; echo x > left; mkdir -p /tmp/d/e;"
                      f" chmod 000 /tmp/d; (setsid sleep {marker} &); sleep {marker}")
    assert any(marker in " ".join(p.cmdline()) for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"])
    assert graded_right(), "the next learner lost points"
    time.sleep(0.2)
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and marker in " ".join(p.info["cmdline"])
            and p.pid != proc.pid]
    assert [p for p in left if p.status() != psutil.STATUS_ZOMBIE] == [], "a learner's process outlived its learner"
    assert server_process()[1].pid == server.pid, "the same server: it swept, it did not give up"
    _, out = escaped("ls -A /tmp /dev/shm . | tr '\\n' ' '")
    assert "left" not in out and " d " not in out, out
    proc.kill()


@root_only
def test_an_escaped_learner_cannot_read_or_write_the_servers_memory(fresh):
    """The server is non-dumpable: a process of the same user may not open its /proc/<pid>/mem,
    environ or fd/ (the pipes to the grader), nor ptrace it."""
    assert graded_right()
    _, out = escaped("for f in mem maps environ fd/0 fd/4; do head -c1 /proc/2/$f >/dev/null 2>&1 && echo READ-$f; done;"
                     " echo done")
    assert "done" in out and "READ" not in out, out
    assert graded_right()


@root_only
def test_a_lingering_process_that_signals_the_next_learner_is_gone_first(fresh):
    """An escaped learner leaves a loop that kills every process of the sandbox's user, to cost
    the next learner its points (it kills the server too): the next learner is graded in full,
    by a server swept or started afresh."""
    assert graded_right()
    proc, _ = escaped("(setsid sh -c 'while :; do kill -9 -1; sleep 0.01; done' &); sleep 1000")
    assert graded_right()
    proc.kill()


def test_a_server_that_died_between_learners_is_replaced_not_the_learners_loss(fresh):
    assert graded_right()
    _, server = server_process()
    server.send_signal(signal.SIGKILL)
    server.wait(5)
    assert graded_right()
    assert replay_server._server.persistent


def test_without_a_sandbox_a_server_serves_one_learner(fresh, monkeypatch):
    """Outside bubblewrap nothing can sweep a learner's leftovers: each learner gets its own
    server, and the server never kills what it can signal (it would be the machine's)."""
    assert not child.in_own_sandbox()
    monkeypatch.setattr(sandbox, "bwrap_prefix", lambda *a, **k: [])
    for _ in range(2):
        cases = score.make_cases("ex2")
        collector = score.Collector("ex2", cases)
        job = score.build_job("ex2", score.statements(RIGHT["ex2"]), cases)
        assert replay_server.run_many({"ex2": job}, {"ex2": collector}) == {"ex2": {}}
        assert score.score("ex2", collector, {})["logits"].ok
        assert replay_server._server is None, "a server outside a sandbox was kept for the next learner"


def test_changed_limits_start_a_new_server(fresh, monkeypatch):
    assert graded_right()
    first = replay_server._server.proc.pid
    monkeypatch.setitem(sandbox.LIMITS, "memory_bytes", 5 * 2**30)
    assert graded_right()
    assert replay_server._server.proc.pid != first


def replay_slowly(seconds_of_loop=3_000_000, isolated_within=10):
    """Start one learner's Exercise 2, right but slow, in a thread; returns the thread and the
    learner's process (psutil.Process, outside), once the server forked it and it isolated
    itself (a user namespace other than the server's, where it gets one within
    `isolated_within` seconds): its own code runs only after that, so what the test runs in
    its namespaces must too."""
    import threading
    slow = [("ex2_dlogits", f"t = 0\nfor i in range({seconds_of_loop}):\n    t = t + 1\n" + RIGHT["ex2"][0][1])]
    cases = score.make_cases("ex2")
    collector = score.Collector("ex2", cases)
    job = score.build_job("ex2", score.statements(slow), cases)
    done = {}
    thread = threading.Thread(target=lambda: done.update(errors=replay_server.run_many({"ex2": job}, {"ex2": collector})))
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            learners = server_process()[1].children()
        except (ValueError, AttributeError, psutil.NoSuchProcess):
            learners = []
        if learners:
            thread.done, thread.collector = done, collector
            server, learner = server_process()[1], learners[0]
            until = time.monotonic() + isolated_within
            while time.monotonic() < until:
                try:
                    if os.readlink(f"/proc/{learner.pid}/ns/user") != os.readlink(f"/proc/{server.pid}/ns/user"):
                        break
                except OSError:
                    break
                time.sleep(0.01)
            return thread, learner
        time.sleep(0.01)
    raise AssertionError("no learner process")


def inside_learner(learner, code):
    """Run Python `code` in the learner's namespaces (user, IPC, mount, PID), as the sandbox's
    user: a process the learner's code started after escaping RestrictedPython. What it printed."""
    uid = replay_server._server.uid
    own = os.readlink(f"/proc/{learner.pid}/ns/user") != os.readlink("/proc/self/ns/user")
    enter = (  # setns, not nsenter: an exec between entering the user namespace and setuid drops the capabilities
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"fds = [os.open(f'/proc/{learner.pid}/ns/{{ns}}', os.O_RDONLY) for ns in {['pid'] + (['user'] if own else []) + ['ipc', 'mnt']}]\n"
        "for fd in fds:\n"
        "    if libc.setns(fd, 0) != 0:\n"
        "        raise OSError(ctypes.get_errno(), fd)\n"
        f"{'' if own else 'os.setgroups([])'}\n"
        f"os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    os.execv('/usr/bin/python3', ['python3', '-c', {code!r}])\n"
        "os.waitpid(pid, 0)\n")
    done = subprocess.run(["/usr/bin/python3", "-c", enter], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or done.stderr.strip()[-300:]


@root_only
def test_ipc_objects_and_keys_a_learner_leaves_are_not_seen_by_the_next(fresh):
    """Is every IPC object and key (SysV shm, msg, sem, a POSIX mqueue, user and named
    keyrings) an escaped learner's process leaves gone for the next learner's processes?"""
    from test_learner_bounds import IPC
    assert graded_right()
    thread, learner = replay_slowly()
    left = inside_learner(learner, IPC + "print(leave(), found())")
    thread.join()
    assert left.startswith("[True, True, True, True, True, True, True]") and "user key" in left, left
    assert score.score("ex2", thread.collector, thread.done["errors"]["ex2"])["logits"].ok
    thread, learner = replay_slowly()
    seen = inside_learner(learner, IPC + "print(found())")
    thread.join()
    assert seen == "[]", f"the next learner's processes found {seen}"
    assert score.score("ex2", thread.collector, thread.done["errors"]["ex2"])["logits"].ok


@root_only
def test_a_learners_processes_are_in_a_memory_cgroup_of_their_own_gone_after(fresh):
    """Is a learner's replay (its learner process and exercise children) in a memory cgroup of
    its own, limited to the learner's bound, and is the cgroup gone after the learner?"""
    from autograder.grader import cgroup
    if cgroup.base() is None:
        pytest.skip("no writable memory cgroup here")
    assert graded_right()
    thread, learner = replay_slowly()
    version, _ = cgroup.base()

    def memory_cgroup(pid):
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if (version == 2 and names == "") or (version == 1 and "memory" in names.split(",")):
                    return path
    deadline = time.monotonic() + 5  # the learner's process waits for its jobs until the grader moved it
    while not os.path.basename(mine := memory_cgroup(learner.pid)).startswith("ninja-learner-") and time.monotonic() < deadline:
        time.sleep(0.01)
    path = (cgroup.V1 if version == 1 else cgroup.V2) + mine
    limit = open(os.path.join(path, "memory.limit_in_bytes" if version == 1 else "memory.max")).read().strip()
    thread.join()
    assert os.path.basename(path).startswith("ninja-learner-") and mine != memory_cgroup(server_process()[1].pid)
    assert int(limit) == sandbox.LEARNER["memory_bytes"]
    assert not os.path.exists(path), "the learner's cgroup outlived it"
    assert score.score("ex2", thread.collector, thread.done["errors"]["ex2"])["logits"].ok


@root_only
@pytest.mark.parametrize("where, cap", [("/tmp", "tmp_bytes"), ("/dev/shm", "shm_bytes")])
def test_an_escaped_learner_writing_512_mib_is_stopped_at_the_cap(fresh, where, cap):
    """Is 512 MiB written into the replay sandbox's /tmp or /dev/shm stopped at the folder's
    cap, and does the next learner keep every point?"""
    assert graded_right()
    writer, _ = escaped(f"for i in $(seq 32); do head -c 16777216 /dev/zero > {where}/fill-$i || break; done")
    writer.wait(60)
    _, out = escaped(f"du -skx {where} | cut -f1")  # -x: not what is bound below it (a clone under /tmp)
    assert out and int(out.split()[-1]) * 1024 <= sandbox.LEARNER[cap], f"{out} KiB in {where}"
    assert graded_right(), "the next learner lost points"
