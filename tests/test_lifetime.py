"""Nothing the class runner starts outlives it: `python -m autograder.grade`, in either mode,
killed (SIGKILL, as the out-of-memory killer or a closed session kills it), stopped (SIGTERM)
or interrupted (Ctrl-C), leaves none of its workers, kernel servers, fork servers, kernels or
sandboxes running. Each run is found by its own marks only (its TMPDIR in the
processes' environment, the process tree seen before the kill), never by the machine's."""
import copy
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from autograder.grader import examples, grade, sandbox
from autograder.grader.course import ASSIGNMENT
from autograder.exercises import EXERCISES
from conftest import is_kernel

EX2 = EXERCISES["ex2"].notebook
SLOW = 'import os, time\nif os.path.exists("slow.flag"):  # copied beside the notebook while grading\n    time.sleep(600)\n'
PROMPTLY = 5  # seconds within which everything of a run has ended

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc and process groups")


def read(path):
    import nbformat
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="module")
def klass(tmp_path_factory, generated_course):
    """A course whose learners keep both workers busy: two whose Exercise 2 sleeps in its kernel
    (full mode), and the examples' class (scores-only mode takes a few seconds for them)."""
    import nbformat
    c = generated_course(tmp_path_factory.mktemp("lifetime") / "course")
    examples.write_submissions(c)
    right = examples.solved(read(c / "release" / ASSIGNMENT / EX2), read(c / "source" / ASSIGNMENT / EX2))
    slow = copy.deepcopy(right)
    answer = next(x for x in slow.cells if x.metadata.get("nbgrader", {}).get("grade_id") == "ex2_dlogits")
    answer.source = SLOW + answer.source
    for student in ("a_slow", "b_slow"):
        (c / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(slow, c / "submitted" / student / ASSIGNMENT / EX2)
        (c / "submitted" / student / ASSIGNMENT / "slow.flag").write_text("")
    return c


def start(c, tmp, mode):
    """The class runner on course c with two workers, its TMPDIR `tmp` (the run's mark), in its
    own session (as a terminal's job)."""
    tmp.mkdir(parents=True, exist_ok=True)
    args = ["--student", "a_slow", "--student", "b_slow"] if mode == "full" else ["--scores-only", "--csv",
                                                                                 str(tmp.parent / "s.csv")]
    env = {**os.environ, "TMPDIR": str(tmp), "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    return subprocess.Popen([sys.executable, "-m", "autograder.grade", "--course", str(c), "--jobs", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def below(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(p):
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def workers(proc):
    """The run's worker processes: spawned, or forked from its fork server (grade.worker_context)."""
    def forked(p):
        try:
            return "multiprocessing.forkserver" in cmdline(p) and "multiprocessing.forkserver" in cmdline(p.parent())
        except (psutil.Error, AttributeError):
            return False
    return [p for p in below(proc.pid) if "spawn_main" in cmdline(p) or forked(p)]


def servers(worker, module):
    """The worker's servers of `module` (the Python inside the sandbox, not bubblewrap's processes)."""
    return [p for p in below(worker.pid) if f"-m {module}" in cmdline(p) and p.name() not in ("bwrap", "ipykernel")]


def running(proc, mode):
    """Both workers run, each with its fork server, and in full mode with its kernel server and a
    learner's kernel (asleep in its answer cell)."""
    ws = workers(proc)
    ready = len(ws) == 2 and all(servers(w, "autograder.grader.child") for w in ws)
    if mode == "full":
        ready = ready and all(servers(w, "autograder.grader.kernels") for w in ws) and \
            sum(is_kernel(p) for p in below(proc.pid)) == 2
    return ready


def wait_until(proc, ready, timeout=240):
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def marked(tmp):
    """The machine's processes whose environment names the run's TMPDIR."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("TMPDIR") == str(tmp) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def kernel_folders(seen, tmp):
    """The run's kernels' folders left in its TMPDIR, /tmp or /var/tmp (named by the pids of their makers)."""
    pids = {p.pid for p in seen}
    return [f"{base}/{f}" for base in {str(tmp), *sandbox.grading_folders()} for f in os.listdir(base)
            if re.match(r"ninja-kernels?-(\d+)-", f) and int(f.split("-")[2]) in pids]


def left(seen, tmp):
    """What of the run still runs PROMPTLY seconds from now (zombies are ended)."""
    deadline = time.time() + PROMPTLY
    while True:
        alive = [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] + marked(tmp)
        if not alive or time.time() > deadline:
            return sorted({f"{p.pid} {cmdline(p)[:120]}" for p in alive})
        time.sleep(0.2)


@pytest.mark.parametrize("mode, sig", [("full", signal.SIGKILL), ("scores", signal.SIGKILL),
                                       ("full", signal.SIGTERM),
                                       ("scores", signal.SIGINT)])
def test_nothing_the_class_runner_started_outlives_it(klass, tmp_path, mode, sig):
    """Killed, stopped or interrupted while its workers grade (their servers, sandboxes and, in
    full mode, the learners' kernels running), does the class runner leave no process of its
    own running within seconds, and, stopped or interrupted, end with its message and no
    traceback?"""
    tmp = tmp_path / "tmp"
    proc = start(klass, tmp, mode)
    try:
        wait_until(proc, lambda: running(proc, mode))
        seen = below(proc.pid) + [psutil.Process(proc.pid)]
        assert marked(tmp), "the run's processes carry its TMPDIR"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals the job's process group
        else:
            os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=180)  # a loaded machine
        assert left(seen, tmp) == [], f"outlived the class runner ({signal.Signals(sig).name})"
        folders = kernel_folders(seen, tmp)
    finally:
        for p in below(proc.pid):
            p.kill()
        proc.kill()
        for p in seen:
            grade.remove_kernel_folders(p.pid)  # killed (SIGKILL), nothing of the run could remove them
    if sig != signal.SIGKILL:
        assert proc.returncode == 130, out
        assert "interrupted" in out and "Traceback" not in out, out
        assert folders == [], "the kernels' folders of the workers it stopped are left"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_class_runner_stopped_while_it_starts_says_so_and_leaves_nothing(klass, tmp_path, sig):
    """Stopped while its workers start (their sandbox's check not done yet), does the class runner
    end with its message, no traceback, and nothing of its own left running?"""
    tmp = tmp_path / "tmp"
    proc = start(klass, tmp, "scores")
    try:
        wait_until(proc, lambda: len(workers(proc)) == 2)
        seen = below(proc.pid) + [psutil.Process(proc.pid)]
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=180)  # a loaded machine
        assert left(seen, tmp) == []
    finally:
        for p in below(proc.pid):
            p.kill()
        proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted while starting" in out and "Traceback" not in out, out


STOPPED = """
import multiprocessing, time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import process
from autograder.grader.grade import stop, worker_context
slow = process._ExecutorManagerThread.wait_result_broken_or_wakeup
def late(self):  # the pool's manager thread, slow to notice a worker's end (a loaded machine)
    found = slow(self)
    time.sleep(2)
    return found
process._ExecutorManagerThread.wait_result_broken_or_wakeup = late
pool = ProcessPoolExecutor(2, mp_context=worker_context("full")[0])  # as the class runner's
busy = [pool.submit(time.sleep, 600) for _ in range(12)]  # the call queue full, as in a class
time.sleep(3)
stop(pool)
print(sorted(p.exitcode for p in multiprocessing.active_children()), flush=True)
"""


def test_stopped_workers_are_reaped_where_the_pool_sees_them_end():
    """After `stop`, does multiprocessing itself know its workers have ended (nobody else reaped
    them), so that the pool's manager thread ends and the process exits at once? A worker
    reaped behind the pool's back looks alive to it for ever, and the exit waits on it (as it did
    after a Ctrl-C in about 1 run in 6)."""
    run = subprocess.run([sys.executable, "-c", STOPPED], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "[]\n", run.stdout + run.stderr


def test_what_killed_grading_processes_left_is_swept_by_the_next_run(tmp_path, monkeypatch):
    """A grading process killed outright leaves its kernels' and jobs' folders (named by its
    pid): does the next run's sweep remove those of ended processes, however deep, and keep
    those of live ones and of other users?"""
    import tempfile
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    names = {f"bpn-job-{gone.pid}-abc": False, f"ninja-kernel-{gone.pid}-x": False,
             f"ninja-kernels-{gone.pid}-y": False, f"ninja-kernel-work-{gone.pid}-z": False,
             f"bpn-job-{os.getpid()}-live": True, f"ninja-kernel-{gone.pid}-theirs": True, "bpn-job-other": True}
    for name in names:
        deep = tmp_path / name / "/".join(["d"] * 50)
        deep.mkdir(parents=True)
        (deep / "f").write_text("x")
    if os.geteuid() == 0:  # another user's (only root can make one)
        os.chown(tmp_path / f"ninja-kernel-{gone.pid}-theirs", 12345, 12345)
    else:
        names[f"ninja-kernel-{gone.pid}-theirs"] = False
    grade.sweep_left()
    assert {n: (tmp_path / n).exists() for n in names} == names
