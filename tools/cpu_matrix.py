"""Run the checks of stored and asserted figures under every CPU kernel path torch can take on
this machine, at 1 and at 2 threads: nbval over notebooks/ and the numeric unit tests.

    .venv/bin/python tools/cpu_matrix.py [--jobs N]

float32 results differ in the last digits between kernel paths (AVX2, AVX-512, none) and
between thread counts; what the notebooks store and the tests assert must not. torch picks
its path from the CPU, or from ATEN_CPU_CAPABILITY, which can only lower it: so one machine
with AVX-512 checks all three x86 paths. The settings run N at a time (default: one per core),
each in its own pytest process; a failing setting's output is printed in full. Exit status 1
if any setting failed.
"""
import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every path torch 2.13 can dispatch to: x86-64 (default, avx2, avx512) and arm64 (default, sve256).
CANDIDATES = ["default", "avx2", "avx512", "sve256"]
THREADS = [1, 2]
NBVAL = ["--nbval", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "notebooks"]
UNIT_TESTS = ["tests/test_compare.py", "tests/test_model.py", "tests/test_scoring.py", "tests/test_fairness.py"]


def capabilities():
    """The kernel paths this CPU supports: those torch reports back when asked for them."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"

    def reported(cap):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": cap}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        return out.stdout.strip().lower()

    with ThreadPoolExecutor(len(CANDIDATES)) as pool:
        return [c for c, r in zip(CANDIDATES, pool.map(reported, CANDIDATES)) if r == c]


def run(setting):
    """(setting, ok, seconds, output) of one pytest run."""
    cap, threads = setting
    env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NBVAL, *UNIT_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return setting, proc.returncode == 0, time.perf_counter() - start, proc.stdout + proc.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="settings run at once")
    args = parser.parse_args(argv)
    caps = capabilities()
    settings = [(cap, threads) for cap in caps for threads in THREADS]
    print(f"nbval and the numeric unit tests under {len(settings)} settings: "
          f"ATEN_CPU_CAPABILITY in {caps} x OMP_NUM_THREADS in {THREADS}", flush=True)
    failed = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for (cap, threads), ok, seconds, output in pool.map(run, settings):
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
