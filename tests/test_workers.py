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
