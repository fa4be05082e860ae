"""Run the checks of stored and asserted figures under every CPU kernel path torch can take on
this machine: nbval over notebooks/ and the numeric unit tests.

    .venv/bin/python tools/cpu_matrix.py [--jobs N] [--idle]

float32 results differ in the last digits between kernel paths (AVX2, AVX-512, none) and
between thread counts; what the notebooks store and the tests assert must not. torch picks
its path from the CPU; ATEN_CPU_CAPABILITY makes it take another, and torch obeys even a
path the CPU cannot execute (then dies of an illegal instruction), so its echo of a forced
value proves nothing. The matrix runs the path torch picks unforced and every lower one
(x86-64: avx512 > avx2 > default; arm64: sve256 > default), each only where the CPU's own
flags (/proc/cpuinfo) have what it needs, and prints the paths it skipped and why.

Threads: every path runs at OMP_NUM_THREADS=2, as a learner's machine runs (Colab has two
cores). No path runs at one thread as well: the reference notebook runs on one thread from its
first code cell (torch.set_num_threads(1), and no other cell sets a number: a fast test holds it
to that), and the unit tests are set to one thread by the suite's conftest, so a 1-thread run
would repeat a 2-thread one bit for bit (its 200,000 training steps too, 50 of its 60 s). The
settings run N at a time (default: one per core this process may use), each in its own pytest
process; a failing setting's output is printed in full. Exit status 1 if any setting failed.
With --idle (as `make test` runs it, beside the suite) it runs only on what the CPU would
otherwise leave idle (lowest_priority).
"""
import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograder.grader import cgroup
from autograder.grader.grade import usable_cores

ROOT = Path(__file__).resolve().parent.parent
# The kernel paths of torch (2.0 to 2.13), lowest first, per architecture, and the CPU flags
# (as /proc/cpuinfo names them) each needs, as ATen's own dispatch checks them.
LADDERS = {"x86": ["default", "avx2", "avx512"], "arm": ["default", "sve256"]}
NEEDS = {"default": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"},
         "sve256": {"sve"}}
THREADS = 2  # every path; the notebook and the unit tests then run on one thread (see above)
NBVAL = ["--nbval", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "notebooks"]
UNIT_TESTS = ["tests/test_compare.py", "tests/test_model.py", "tests/test_scoring.py", "tests/test_fairness.py"]


def unforced_capability():
    """The path torch picks on this CPU by itself (ATEN_CPU_CAPABILITY unset), lower case."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().lower()


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (x86 `flags`, arm64 `Features`), or None where they cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found |= set(value.split())
    return found


def capabilities(unforced, flags):
    """([paths to run], [(path, why it is skipped)]): `unforced` (the path torch picks by
    itself) and every lower path of its architecture, each only if the CPU's flags have what
    it needs (flags None: unknown, trust torch's own pick); every higher path is skipped."""
    ladder = next((lad for lad in LADDERS.values() if unforced in lad), None)
    if ladder is None:  # a path this script does not know: run only that one
        return [unforced], []
    run, skipped = [], []
    for cap in ladder:
        if ladder.index(cap) > ladder.index(unforced):
            skipped.append((cap, f"above {unforced}, the path torch picks on this CPU by itself"))
        elif flags is not None and not NEEDS[cap] <= flags:
            skipped.append((cap, f"the CPU lacks {', '.join(sorted(NEEDS[cap] - flags))}"))
        else:
            run.append(cap)
    others = [(cap, "another architecture") for lad in LADDERS.values() if lad is not ladder for cap in lad
              if cap not in ladder]
    return run, skipped + others


def settings(caps):
    """[(path, threads)]: every path at THREADS."""
    return [(cap, THREADS) for cap in caps]


CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu controller
SHARES = 64  # its weight against the 1,024 of each other group: a trickle when the cores are busy


def lowest_priority(cgroups=CPU_CGROUPS):
    """Let this process and everything it starts run on what the CPU would otherwise leave idle,
    and on a trickle besides, as far as this machine allows; say how. Nice 19 alone is not
    enough: where the kernel groups processes by session (autogroup), a Jupyter kernel, which
    starts a session of its own, would compete at full weight. A cpu cgroup of its own holds
    every descendant, whatever their session; its weight (SHARES) is small, not nil: a kernel
    that got no CPU at all for 5 s while the cores are busy would fail nbval's wait for its
    outputs. Returns (how, undo)."""
    os.nice(19 - os.nice(0))
    try:
        here = cgroup.own("cpu")
        if here is None:  # no cgroup v1 cpu controller
            return "nice 19", lambda: None
        parent = cgroups / here.lstrip("/")
        own = parent / f"backprop-ninja-cpu-matrix-{os.getpid()}"
        own.mkdir()
    except OSError:
        return "nice 19", lambda: None
    try:
        (own / "cpu.shares").write_text(str(SHARES))
        (own / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        own.rmdir()
        return "nice 19", lambda: None

    def undo():  # back to where it was; the cgroup goes once its processes have
        try:
            (parent / "cgroup.procs").write_text(str(os.getpid()))
            own.rmdir()
        except OSError:
            pass
    return f"nice 19, in a cpu cgroup of weight {SHARES} ({own})", undo


def run(setting):
    """(setting, ok, seconds, output) of one pytest run: nbval and the unit tests."""
    cap, threads = setting
    env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", *NBVAL, *UNIT_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return setting, proc.returncode == 0, time.perf_counter() - start, proc.stdout + proc.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=usable_cores(),
                        help="settings run at once (default: the cores this process may use, %(default)s)")
    parser.add_argument("--idle", action="store_true",
                        help="run on what the CPU would otherwise leave idle (make test runs it beside the suite)")
    args = parser.parse_args(argv)
    undo = lambda: None  # noqa: E731
    if args.idle:
        how, undo = lowest_priority()
        print(f"at the lowest priority: {how}", flush=True)
    try:
        return check(args.jobs)
    finally:
        undo()


def check(jobs):
    """Every setting, `jobs` at a time: 0 if all passed, else 1 (each failure's output printed)."""
    caps, skipped = capabilities(unforced_capability(), cpu_flags())
    for cap, why in skipped:
        print(f"skipped ATEN_CPU_CAPABILITY={cap}: {why}", flush=True)
    todo = settings(caps)
    print(f"nbval and the numeric unit tests under {len(todo)} settings: ATEN_CPU_CAPABILITY in {caps} "
          f"at OMP_NUM_THREADS={THREADS}", flush=True)
    failed = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for (cap, threads), ok, seconds, output in pool.map(run, todo):
            summary = output.strip().splitlines()[-1] if output.strip() else "no output"
            print(f"  ATEN_CPU_CAPABILITY={cap:7s} OMP_NUM_THREADS={threads}: "
                  f"{'ok' if ok else 'FAILED'} ({summary.strip('= ')}, {seconds:.0f} s)", flush=True)
            if not ok:
                failed.append(((cap, threads), output))
    for (cap, threads), output in failed:
        print(f"\n---- ATEN_CPU_CAPABILITY={cap} OMP_NUM_THREADS={threads} ----\n{output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
