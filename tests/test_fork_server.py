"""The sandboxed fork server outlives one learner (sandbox.Server, child.serve): does it keep
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
from autograder.grader import child, sandbox
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
    init, = psutil.Process(sandbox._server.proc.pid).children()
    server, = init.children()
    return init, server


def escaped(script):
    """Run `sh -c script` inside the server's sandbox as the sandbox's user, in the background
    (a process of its own session, as an escaped child would start it). Returns what it printed
    within a second."""
    init, _ = server_process()
    uid = str(sandbox._server.uid)
    proc = subprocess.Popen(["nsenter", "-t", str(init.pid), "-p", "-m", "-n", "-i", "-u", "--",
                             "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                             "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    time.sleep(1)
    out = proc.stdout.read1(10000).decode() if proc.poll() is not None else ""
    return proc, out


@pytest.fixture
def fresh():
    sandbox.stop_server()
    yield
    sandbox.stop_server()


def test_one_server_serves_learner_after_learner(fresh):
    assert graded_right()
    first = sandbox._server.proc.pid
    assert sandbox._server.persistent
    for _ in range(3):
        assert graded_right()
    assert sandbox._server.proc.pid == first, "the server was started again"


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
    assert sandbox._server.persistent


def test_without_a_sandbox_a_server_serves_one_learner(fresh, monkeypatch):
    """Outside bubblewrap nothing can sweep a learner's leftovers: each learner gets its own
    server, and the server never kills what it can signal (it would be the machine's)."""
    assert not child.in_own_sandbox()
    monkeypatch.setattr(sandbox, "bwrap_prefix", lambda *a, **k: [])
    for _ in range(2):
        cases = score.make_cases("ex2")
        collector = score.Collector("ex2", cases)
        job = score.build_job("ex2", score.statements(RIGHT["ex2"]), cases)
        assert sandbox.run_many({"ex2": job}, {"ex2": collector}) == {"ex2": {}}
        assert score.score("ex2", collector, {})["logits"].ok
        assert sandbox._server is None, "a server outside a sandbox was kept for the next learner"


def test_changed_limits_start_a_new_server(fresh, monkeypatch):
    assert graded_right()
    first = sandbox._server.proc.pid
    monkeypatch.setitem(sandbox.LIMITS, "memory_bytes", 5 * 2**30)
    assert graded_right()
    assert sandbox._server.proc.pid != first
