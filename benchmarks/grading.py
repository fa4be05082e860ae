"""Grading a generated class: the course's pipeline against stock nbgrader (see bench.py)."""
import copy
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.grader import course, examples
from autograder.exercises import EXERCISES

BUILD = course.ROOT / "build" / "bench"
STOCK_CONFIG = '''c = get_config()
c.CourseDirectory.root = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
c.CourseDirectory.course_id = "backprop_ninja"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\n"}
c.Execute.timeout = 120
'''
HOSTILE = {  # answer cell of Exercise 2 -> source
    "ex2_dlogits": "import autograder.hidden as h\nh.grade = lambda *a: 4.0\ngrade = h.grade\n"
                   "dlogits = logits.grad if logits.grad is not None else torch.zeros_like(logits)"}


def make_class(root, n):
    """n learners in root/submitted: right, wrong (one typical mistake), blank and hostile."""
    release = root / "release" / course.ASSIGNMENT
    source = root / "source" / course.ASSIGNMENT
    read = lambda p: nbformat.read(p, as_version=4)  # noqa: E731
    solved = {k: examples.solved(read(release / ex.notebook), read(source / ex.notebook)) for k, ex in EXERCISES.items()}
    blank = {k: read(release / ex.notebook) for k, ex in EXERCISES.items()}
    mistakes = list(examples.MISTAKES.values())
    for i in range(n):
        kind = ["right", "wrong", "blank", "hostile"][i % 4]
        nbs = copy.deepcopy(blank if kind == "blank" else solved)
        if kind == "wrong":
            ex, cell, old, new, _ = mistakes[i // 4 % len(mistakes)]
            nbs[ex] = examples.with_mistake(nbs[ex], cell, old, new)
        if kind == "hostile":
            for cell in nbs["ex2"].cells:
                if cell.metadata.get("nbgrader", {}).get("grade_id") in HOSTILE:
                    cell.source = HOSTILE[cell.metadata.nbgrader.grade_id]
        dest = root / "submitted" / f"{kind}-{i:03d}" / course.ASSIGNMENT
        dest.mkdir(parents=True, exist_ok=True)
        for k, nb in nbs.items():
            nbformat.write(nb, dest / EXERCISES[k].notebook)


class PeakMemory:
    """Samples /proc while grading runs: the peak resident memory (VmHWM) of every process
    below this one, by kind. Sandboxed processes are invisible to getrusage, not to /proc."""
    KINDS = [("kernel", "ipykernel"), ("kernel", "autograder.grader.kernels"), ("replay", "autograder.grader.child"), ("worker", "multiprocessing"),
             ("nbgrader", "nbgrader")]

    def __init__(self):
        self.peak, self._stop = {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.2):
            procs = {}
            for d in Path("/proc").iterdir():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    hwm = next(int(l.split()[1]) for l in (d / "status").read_text().splitlines() if l.startswith("VmHWM"))
                    procs[int(d.name)] = (ppid, cmd, hwm)
                except (OSError, ValueError, IndexError, StopIteration):
                    continue
            for pid, (_, cmd, hwm) in procs.items():
                p, seen = pid, set()
                while p in procs and p not in seen and p != os.getpid():
                    seen.add(p)
                    p = procs[p][0]
                if p == os.getpid():
                    kind = next((k for k, key in self.KINDS if key in cmd), "other")
                    self.peak[kind] = max(self.peak.get(kind, 0), hwm / 1024)


def timed(cmd, cwd):
    start = time.perf_counter()
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    with PeakMemory() as memory:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout[-1500:], proc.stderr[-1500:], file=sys.stderr)
    return time.perf_counter() - start, memory.peak


def ex4_cpu(course_dir):
    """CPU seconds to grade one Exercise 4 submission: its notebook run as autograde runs it
    (here without the sandbox, whose processes getrusage cannot see), plus the trusted replay
    (measured by the sandboxed child itself)."""
    from autograder.grader import replay_server
    from autograder.grader.trusted import trusted_verdicts
    path = next((course_dir / "submitted").glob(f"right-*/{course.ASSIGNMENT}/{EXERCISES['ex4'].notebook}"))
    nb = nbformat.read(path, as_version=4)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # as a grading worker runs it: one thread per kernel (see autograder/grader/grade.py)
    saved = dict(os.environ)
    os.environ.update(NBGRADER_EXECUTION="autograde", BACKPROP_NINJA_TRUSTED="1", OMP_NUM_THREADS="1")
    try:
        NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kernel = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    trusted_verdicts("ex4", list(examples.solution_sources("ex4").items()))
    return kernel, replay_server.last_cpu_seconds


def bench_grading(n, report):
    ours = course.copy_course(BUILD / "ours")
    stock = course.copy_course(BUILD / "stock")
    (stock / "nbgrader_config.py").write_text(STOCK_CONFIG)
    for c in (ours, stock):
        course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
        make_class(c, n)
    nb = [sys.executable, "-m", "nbgrader"]
    t_stock, mem_stock = timed(nb + ["autograde", course.ASSIGNMENT, "--force"], stock)
    report(f"class of {n}: stock nbgrader autograde (serial)", f"{t_stock:.0f} s", "1.00x")
    t_full, mem = timed([sys.executable, "-m", "autograder.grader.grade"], ours)
    report(f"class: course pipeline (trusted, sandbox, repair; {os.cpu_count()} jobs)", f"{t_full:.0f} s",
           f"{t_stock / t_full:.2f}x")
    t_scores, _ = timed([sys.executable, "-m", "autograder.grader.grade", "--scores-only", "--csv", "scores.csv"], ours)
    report(f"class: scores-only mode ({os.cpu_count()} jobs)", f"{t_scores:.0f} s", f"{t_stock / t_scores:.2f}x")
    for kind, what in [("worker", "grading worker (nbgrader, trusted scores)"), ("kernel", "learner's kernel"),
                       ("replay", "sandboxed replay")]:
        report(f"  peak memory (max RSS), {what}", f"{mem.get(kind, float('nan')):.0f} MiB")
    report("  peak memory (max RSS), stock nbgrader's kernel", f"{mem_stock.get('kernel', float('nan')):.0f} MiB")
    kernel, replay = ex4_cpu(ours)
    report("Exercise 4, CPU per submission: notebook run + trusted replay",
           f"{kernel:.1f} + {replay:.1f} s", f"{kernel + replay:.1f} s")
