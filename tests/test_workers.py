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
