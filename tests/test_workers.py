"""The class runner's default number of workers is the number of cores it may run on (its CPU
affinity: taskset, a container's cpuset, a batch scheduler's share), not the machine's."""
import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_the_default_jobs_are_the_cores_the_process_may_use():
    one = sorted(os.sched_getaffinity(0))[:1]
    from autograder.grader import grade
    assert grade.usable_cores() == len(os.sched_getaffinity(0))
    helped = subprocess.run([sys.executable, "-m", "autograder.grade", "--help"], capture_output=True, text=True,
                            check=True, preexec_fn=lambda: os.sched_setaffinity(0, one))
    assert "may use, 1)" in " ".join(helped.stdout.split())


def test_a_scheduler_address_nothing_listens_on_is_refused_at_once():
    """Is a tcp:// address whose port refuses connections (a stopped or mistyped scheduler) said
    to be unreachable before Dask's Client retries it, and any other address left to the Client?"""
    pytest.importorskip("distributed")
    from autograder.grader import grade
    from conftest import free_port
    import socket
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(grade.SchedulerGone, match="cannot reach the Dask scheduler at .*connection refused"):
        grade.ClusterWorkers(address)
    with socket.socket() as listening:  # a port something listens on is not refused
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert grade.ClusterWorkers.refused(f"tcp://127.0.0.1:{listening.getsockname()[1]}") == ""
    assert grade.ClusterWorkers.refused("tls://127.0.0.1:1") == ""  # another scheme: the Client's to judge


WORKER = """if True:
    import json, multiprocessing, os, sys
    from concurrent.futures import ProcessPoolExecutor
    from autograder.grader import grade

    def has(name):  # in the worker, before its job imports anything
        loaded = [m for m in ("torch", "nbgrader.apps", "autograder.grader.trusted") if m in sys.modules]
        return loaded, os.environ.get(name), os.getppid()

    if __name__ == "__main__":
        context, server = grade.worker_context(sys.argv[1])
        os.environ["BPN_SET_AFTER_THE_FORK_SERVER"] = "now"  # the fork server's environment is older
        with ProcessPoolExecutor(1, mp_context=context, initializer=grade._start_worker,
                                 initargs=(False, None, None, dict(os.environ), server)) as pool:
            loaded, value, parent = pool.submit(has, "BPN_SET_AFTER_THE_FORK_SERVER").result(timeout=120)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            spawned = pool.submit(has, "HOME").result(timeout=120)[0]  # for comparison
        print(json.dumps([context.get_start_method(), loaded, value, parent == server, spawned]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server and its parent-death signal")
@pytest.mark.parametrize("mode, imports", [("full", ["torch", "nbgrader.apps", "autograder.grader.trusted"]),
                                           ("scores", ["torch"])])
def test_workers_are_forked_from_a_fork_server_that_loaded_their_imports_and_get_the_environment_of_now(
        tmp_path, mode, imports):
    """Does a local worker start from its mode's imports (full: nbgrader's, torch's and the
    trusted grader's; scores-only: torch's and nothing of nbgrader), loaded once by the fork
    server and not by each worker, with the coordinator's environment as it is when the pool
    starts (the fork server's is older)? A spawned process has none of them before its job."""
    import json
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["forkserver", imports, "now", True, []]


def test_one_process_has_one_fork_server_and_a_later_run_in_another_mode_forks_from_it_too():
    """A second run in the same process (as in the tests, which grade in their own process), in
    another mode, forks its workers from the fork server the first run started."""
    code = ("from autograder.grader.grade import worker_context as w; "
            "runs = [w(m) for m in ('scores', 'full', 'scores')]; "
            "print(*[c.get_start_method() for c, _ in runs], len({s for _, s in runs}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "forkserver forkserver forkserver 1\n"


def test_where_the_fork_servers_socket_cannot_be_made_the_workers_are_spawned(tmp_path):
    """A temporary folder whose path is longer than a Unix socket's may be (a deep TMPDIR):
    the fork server cannot listen there, so the workers are spawned, each loading its imports."""
    deep = tmp_path / ("deep-" * 24)
    deep.mkdir()
    probe = "from autograder.grader.grade import worker_context; c, s = worker_context('full'); print(c.get_start_method(), s)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "TMPDIR": str(deep)}).stdout
    assert out == "spawn None\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.startswith("forkserver ")
