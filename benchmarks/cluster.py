"""Throughput of the class runner: learners per second on 1 and 2 local workers and through a Dask
cluster (a scheduler and two workers started here, on 127.0.0.1), the coordinator's own cost per
learner (packing a job, and in full mode recording its result: what limits scale, since one
coordinator writes everything), and from those measured figures the expected time for a large
class on many workers.

    python benchmarks/cluster.py [--students 8] [--full] [--big 10000 --workers 50]
"""
import argparse
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading import make_class  # noqa: E402

from autograder.grader import course, grade, jobs  # noqa: E402

BUILD = course.ROOT / "build" / "bench-cluster"
ENV = {**os.environ, "PYTHONPATH": str(course.ROOT),
       "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}


def timed_run(c, args):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autograder.grade", "--course", str(c), "--force", *args],
                          cwd=BUILD, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"grading failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


class LocalCluster:
    """`dask scheduler` and `dask worker --nthreads 1` processes, each worker in its own folder."""

    def __init__(self, workers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address, self.procs = f"tcp://127.0.0.1:{port}", []
        self.tmp = Path(tempfile.mkdtemp(prefix="bpn-dask-"))
        self.procs.append(self.spawn("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"))
        for i in range(workers):
            (self.tmp / f"w{i}").mkdir()
            self.procs.append(self.spawn("worker", self.address, "--nthreads", "1", "--no-nanny",
                                         "--local-directory", str(self.tmp / f"w{i}"), "--no-dashboard"))
        from distributed import Client
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def spawn(self, *args):
        return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.tmp, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def close(self):
        from autograder.grader.grade import kill_tree
        for proc in self.procs:
            kill_tree(proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def coordinator_cost(c, mode, rounds=3):
    """Seconds of the coordinator's own work per learner: the job packed and pickled (as sent),
    the fingerprint, and in full mode the result recorded into the gradebook and autograded/."""
    from nbgrader.api import Gradebook
    from autograder.exercises import course_setting
    learners = grade.students(c)
    setting = course_setting(c)
    pack = jobs.make_pack(c, course.ASSIGNMENT, mode, setting, course.points(c, course.ASSIGNMENT))
    start = time.perf_counter()
    for _ in range(rounds):
        for s in learners:
            pickle.dumps(jobs.make_learner(c, course.ASSIGNMENT, s))
            if mode == "full":
                grade.fingerprint(c, s, course.ASSIGNMENT)
    cost = (time.perf_counter() - start) / (rounds * len(learners))
    print(f"  coordinator: packing a learner's job{' and its fingerprint' if mode == 'full' else ''}: "
          f"{cost * 1000:.1f} ms")
    if mode == "full":  # one real result, recorded again and again into a scratch copy
        result = jobs.run_job(pack, jobs.make_learner(c, course.ASSIGNMENT, "right-000"))
        scratch = BUILD / "scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        shutil.copy(c / "gradebook.db", scratch)
        with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
            start = time.perf_counter()
            for i in range(20):
                jobs.record(gb, scratch, course.ASSIGNMENT, {**result, "student": f"learner-{i:03d}"})
            recording = (time.perf_counter() - start) / 20
        print(f"  coordinator: recording a result (gradebook rows, autograded notebooks): {recording * 1000:.1f} ms")
        cost += recording
    return cost


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=8)
    p.add_argument("--full", action="store_true", help="full nbgrader autograde (default: --scores-only)")
    p.add_argument("--big", type=int, default=10_000, help="the large class to estimate for")
    p.add_argument("--workers", type=int, default=50, help="the workers to estimate for")
    p.add_argument("--coordinator-only", action="store_true", help="only the coordinator's cost per learner")
    args = p.parse_args(argv)
    mode = "full" if args.full else "scores"
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    c = course.copy_course(BUILD / "course")
    course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
    make_class(c, args.students)
    flags = [] if args.full else ["--scores-only", "--csv", str(BUILD / "scores.csv")]
    if args.coordinator_only:
        cost = coordinator_cost(c, mode)
        print(f"{mode}: coordinator, own cost per learner {cost * 1000:.1f} ms (at most {1 / cost:.0f} learners/s)")
        return
    n = args.students
    rows = []
    t1 = timed_run(c, ["--jobs", "1", *flags])
    rows.append(("local, 1 worker", n / t1))
    t2 = timed_run(c, ["--jobs", "2", *flags])
    rows.append(("local, 2 workers", n / t2))
    cluster = LocalCluster(2)
    try:
        tc = timed_run(c, ["--cluster", cluster.address, *flags])
    finally:
        cluster.close()
    rows.append(("Dask cluster, 2 workers (127.0.0.1)", n / tc))
    print(f"mode: {'full nbgrader autograde' if args.full else 'scores-only'}; class of {n}; "
          f"{os.cpu_count()} CPU cores; each run includes its start-up")
    for what, rate in rows:
        print(f"{what:45s}{rate:8.3f} learners/s")
    cost = coordinator_cost(c, mode)
    print(f"{'coordinator, own cost per learner':45s}{cost * 1000:8.1f} ms (at most {1 / cost:.0f} learners/s)")
    per_worker = t1 / n  # seconds of one worker per learner, start-up included
    grading = args.big * per_worker / args.workers
    total = max(grading, args.big * cost)
    print(f"expected for {args.big} learners on {args.workers} workers: {total / 60:.0f} min "
          f"({args.big} x {per_worker:.1f} s / {args.workers} workers; the coordinator's share "
          f"{args.big * cost / 60:.1f} min, so it is {'not ' if grading >= args.big * cost else ''}the limit)")


if __name__ == "__main__":
    main()
