"""Grading a generated class: the course's pipeline against stock nbgrader (see bench.py)."""
import copy
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from autograder import course, examples
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


def timed(cmd, cwd):
    start = time.perf_counter()
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout[-1500:], proc.stderr[-1500:], file=sys.stderr)
    return time.perf_counter() - start


def bench_grading(n, report):
    ours = course.copy_course(BUILD / "ours")
    stock = course.copy_course(BUILD / "stock")
    (stock / "nbgrader_config.py").write_text(STOCK_CONFIG)
    for c in (ours, stock):
        course.nbgrader(c, "generate_assignment", course.ASSIGNMENT, "--force")
        make_class(c, n)
    nb = [sys.executable, "-m", "nbgrader"]
    t_stock = timed(nb + ["autograde", course.ASSIGNMENT, "--force"], stock)
    report(f"class of {n}: stock nbgrader autograde (serial)", f"{t_stock:.0f} s", "1.00x")
    t_full = timed([sys.executable, "-m", "autograder.grade"], ours)
    report("class: course pipeline (trusted, sandbox, repair; 2 jobs)", f"{t_full:.0f} s", f"{t_stock / t_full:.2f}x")
    t_scores = timed([sys.executable, "-m", "autograder.grade", "--scores-only", "--csv", "scores.csv"], ours)
    report("class: scores-only mode (2 jobs)", f"{t_scores:.0f} s", f"{t_stock / t_scores:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report("peak memory of one grading process (max RSS)", f"{peak:.0f} MiB")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = resource.getrusage(resource.RUSAGE_SELF)
    from autograder.trusted import trusted_verdicts
    trusted_verdicts("ex4", list(examples.solution_sources("ex4").items()))
    after, end = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime +
           end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime)
    report("Exercise 4 trusted grading, CPU per submission", f"{cpu:.1f} s")
