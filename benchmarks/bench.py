"""Benchmarks, side by side in one run, printed as a table of figures and ratios:

  1. the training step of Exercise 4: the reference manual backward pass (the instructor
     solution in source/) against the same step with autograd (same forward pass,
     initialisation and batches), and against the lecture's autograd step;
  2. grading a generated class: the course's pipeline against stock `nbgrader autograde`;
  3. the test tiers' wall times against their goals: the fast tier (plain `pytest`, for
     everyday work) under 2 minutes, the whole test command (`make test`, what CI runs) at
     most 12 minutes, on a 2-core machine.

    python benchmarks/bench.py [--steps 3000] [--students 40] [--skip-grading] [--skip-tests]
"""
import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from autograder import model  # noqa: E402
from autograder.grader.examples import solution_sources  # noqa: E402
from autograder.exercises import training_set  # noqa: E402

rows = []


def report(what, figure, ratio=""):
    rows.append((what, figure, ratio))
    print(f"{what:58s} {figure:>16s} {ratio:>10s}", flush=True)


def reference_backward():
    ns = {"torch": torch, "F": F}
    exec(solution_sources("ex4")["ex4_backward"], ns)
    return ns["backward"]


def lecture_forward(Xb, Yb, parameters):
    """The lecture's Exercise 4 forward pass, as written for autograd: PyTorch's var and
    cross-entropy (the course's forward computes the variance from bndiff instead)."""
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    embcat = C[Xb].view(Xb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)
    hpreact = bngain * (hprebn - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
    logits = torch.tanh(hpreact) @ W2 + b2
    return F.cross_entropy(logits, Yb), None


def bench_step(steps, rounds=5):
    """Per-step time of autograd vs the manual backward pass, best of alternating rounds.
    Every step is forward, gradients and the SGD update p -= lr * grad, in one call for all
    seven parameters (torch._foreach_add_, as torch.optim.SGD does)."""
    torch.set_num_threads(1)
    backward = reference_backward()
    Xtr, Ytr = training_set()
    g = torch.Generator().manual_seed(1)
    batches = [model.sample_batch(Xtr, Ytr, 32, g) for _ in range(steps)]
    params = list(model.init_params(200).values())

    def autograd_run(forward):
        def run(ps):
            for Xb, Yb in batches:
                loss, _ = forward(Xb, Yb, ps)
                for p in ps:
                    p.grad = None
                loss.backward()
                with torch.no_grad():
                    torch._foreach_add_(ps, [p.grad for p in ps], alpha=-0.1)
        return run

    def manual_run(ps):
        with torch.inference_mode():
            for Xb, Yb in batches:
                _, cache = model.forward_ex4(Xb, Yb, ps)
                torch._foreach_add_(ps, backward(Xb, Yb, ps, cache), alpha=-0.1)

    runs = {"autograd": (autograd_run(model.forward_ex4), True),
            "autograd, lecture": (autograd_run(lecture_forward), True),
            "manual": (manual_run, False)}
    best = dict.fromkeys(runs, 1e9)
    for _ in range(rounds):
        for name, (run, req) in runs.items():
            ps = [p.clone().requires_grad_(req) for p in params]
            start = time.perf_counter()
            run(ps)
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    # same first step, same gradients?
    Xb, Yb = batches[0]
    _, cache = model.forward_ex4(Xb, Yb, params)
    pairs = list(zip(backward(Xb, Yb, params, cache), model.autograd_step_grads(params, Xb, Yb)))
    worst = max((m - a).abs().max().item() for m, a in pairs) / max(a.abs().max().item() for _, a in pairs)
    us = {k: f"{v * 1e6:.0f} us" for k, v in best.items()}
    report(f"training step, autograd ({steps} steps, 1 thread)", us["autograd"])
    report("training step, manual backward (reference solution)", us["manual"],
           f"{best['autograd'] / best['manual']:.2f}x")
    report("  gradients: max |manual - autograd| / max |autograd|", f"{worst:.1e}")
    report("  autograd with the lecture's forward (var, cross_entropy)", us["autograd, lecture"],
           f"{best['autograd, lecture'] / best['manual']:.2f}x")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--students", type=int, default=40)
    p.add_argument("--skip-grading", action="store_true")
    p.add_argument("--skip-tests", action="store_true")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}\n")
    bench_step(args.steps)
    if not args.skip_grading:
        sys.path.insert(0, str(Path(__file__).parent))
        from grading import bench_grading
        bench_grading(args.students, report)
    if not args.skip_tests:
        for what, cmd, goal in [("fast tier (pytest)", [sys.executable, "-m", "pytest", "-q"], 120),
                                ("test command (make test)", ["make", "test"], 720)]:
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            took = time.perf_counter() - start
            report(f"{what}, goal {goal} s", f"{took:.0f} s",
                   ("passed" if proc.returncode == 0 else "FAILED") + (" (slow)" if took > goal else ""))


if __name__ == "__main__":
    main()
