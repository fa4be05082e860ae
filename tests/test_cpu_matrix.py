"""tools/cpu_matrix.py runs exactly the kernel paths the CPU can execute: the one torch picks by
itself and every lower one, each only where the CPU's flags have what it needs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cpu_matrix  # tools/, on sys.path through conftest

AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


def test_a_cpu_without_avx512_runs_default_and_avx2_only():
    run, skipped = cpu_matrix.capabilities("avx2", AVX2)
    assert run == ["default", "avx2"]
    assert dict(skipped)["avx512"].startswith("above avx2")
    assert "sve256" in dict(skipped)


def test_a_cpu_with_avx512_runs_all_three_x86_paths():
    run, skipped = cpu_matrix.capabilities("avx512", AVX512)
    assert run == ["default", "avx2", "avx512"]
    assert [cap for cap, _ in skipped] == ["sve256"]


def test_a_path_is_skipped_when_the_flags_lack_what_it_needs_even_if_torch_picked_it():
    run, skipped = cpu_matrix.capabilities("avx512", AVX2 | {"avx512f"})
    assert run == ["default", "avx2"]
    assert "avx512bw" in dict(skipped)["avx512"]


def test_a_cpu_with_no_vector_path_runs_default_alone():
    run, _ = cpu_matrix.capabilities("default", {"sse2"})
    assert run == ["default"]


def test_arm64_runs_sve256_only_with_sve():
    assert cpu_matrix.capabilities("sve256", {"fp", "asimd", "sve"})[0] == ["default", "sve256"]
    assert cpu_matrix.capabilities("default", {"fp", "asimd"})[0] == ["default"]


def test_unknown_flags_trust_torchs_own_pick():
    assert cpu_matrix.capabilities("avx2", None)[0] == ["default", "avx2"]


def test_the_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx avx2 fma\n")
    assert cpu_matrix.cpu_flags(info) == {"fpu", "avx", "avx2", "fma"}
    assert cpu_matrix.cpu_flags(tmp_path / "missing") is None


def test_this_machine_runs_the_path_torch_picks_unforced(monkeypatch):
    """Even with ATEN_CPU_CAPABILITY forced in the environment, the probe reads torch's own pick."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    unforced = cpu_matrix.unforced_capability()
    run, _ = cpu_matrix.capabilities(unforced, cpu_matrix.cpu_flags())
    assert run[-1] == unforced


def test_every_path_runs_at_two_threads_only():
    """The notebook and the unit tests run on one thread whatever the setting (below): a 1-thread
    run of a path would repeat its 2-thread run."""
    assert cpu_matrix.settings(["default", "avx2", "avx512"]) == [("default", 2), ("avx2", 2), ("avx512", 2)]
    assert cpu_matrix.settings(["default"]) == [("default", 2)]
    # torch's pick is avx512 but the CPU's flags lack part of it: avx2 is the highest path run
    run, _ = cpu_matrix.capabilities("avx512", AVX2 | {"avx512f"})
    assert cpu_matrix.settings(run) == [("default", 2), ("avx2", 2)]


def test_each_setting_runs_the_notebooks_and_the_unit_tests(monkeypatch):
    import subprocess
    seen = []

    def fake(args, env, **kw):
        seen.append((env["ATEN_CPU_CAPABILITY"], env["OMP_NUM_THREADS"], args))
        return subprocess.CompletedProcess(args, 0, "1 passed", "")
    monkeypatch.setattr(cpu_matrix.subprocess, "run", fake)
    assert cpu_matrix.run(("avx2", cpu_matrix.THREADS))[1]
    (cap, threads, args), = seen
    assert (cap, threads) == ("avx2", "2")
    assert "--nbval" in args and "notebooks" in args and all(t in args for t in cpu_matrix.UNIT_TESTS)


def test_the_reference_notebook_runs_on_one_thread_from_its_first_code_cell():
    """What lets the matrix leave out 1-thread runs: the first code cell sets one thread, after
    its imports and before any tensor, and no cell sets another number."""
    import ast

    import nbformat
    nb = nbformat.read(cpu_matrix.ROOT / "notebooks" / "backprop_ninja.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    first = ast.parse(code[0]).body
    assert ast.unparse(first[-1]) == "torch.set_num_threads(1)"
    assert all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in first[:-1])
    calls = [node for src in code for node in ast.walk(ast.parse(src))
             if isinstance(node, ast.Call) and "num_threads" in ast.unparse(node.func)]
    assert [ast.unparse(c) for c in calls] == ["torch.set_num_threads(1)"]


FAKE_PYTHON = """#!/bin/sh
# stands in for the venv's python in `make test`: logs when each step starts and ends, and exits
# as its environment says for that step
what=other
case "$*" in
  *"cpu_matrix.py --idle"*) what=matrix;;
  *--ignore=tests/test_browser.py*) what=suite;;
  *test_browser.py*) what=browser;;
esac
echo "start $what" >> "$FAKE_LOG"
[ "$what" = other ] || sleep 1
echo "end $what" >> "$FAKE_LOG"
echo "report of $what"
eval "exit \\${EXIT_$what:-0}"
"""


def make_test(tmp_path, **exits):
    """`make test` with every step replaced by FAKE_PYTHON: (exit status, output, [event])."""
    if not shutil.which("make") or not shutil.which("bwrap"):
        pytest.skip("make and bwrap are needed")
    root = Path(cpu_matrix.ROOT)
    tmp_path.mkdir(exist_ok=True)
    fake, venv, log = tmp_path / "python", tmp_path / "venv", tmp_path / "steps.log"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    venv.mkdir()
    (venv / "installed").touch()  # newer than pyproject.toml and the lock: nothing to install
    env = {**os.environ, "FAKE_LOG": str(log), **{f"EXIT_{k}": str(v) for k, v in exits.items()}}
    proc = subprocess.run(["make", "-s", "test", f"PY={fake}", f"VENV={venv}", f"MATRIX_LOG={tmp_path / 'm.log'}",
                           f"BROWSER_LOG={tmp_path / 'b.log'}"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, [e for e in log.read_text().split("\n")[:-1] if not e.endswith(" other")]


def test_make_test_runs_the_browser_and_the_idle_matrix_beside_the_suite_and_their_reports_after_it(tmp_path):
    code, out, events = make_test(tmp_path)
    assert code == 0, out
    assert sorted(events) == sorted(f"{e} {s}" for e in ("start", "end") for s in ("matrix", "browser", "suite"))
    for part in ("matrix", "browser"):  # neither waits for the suite, nor the suite for them
        assert events.index(f"start {part}") < events.index("end suite"), events
        assert events.index("start suite") < events.index(f"end {part}"), events
    assert out.index("report of suite") < out.index("report of browser") < out.index("report of matrix"), out


def test_make_test_fails_when_any_of_its_three_parts_fails_and_still_runs_the_others(tmp_path):
    for failing in ("matrix", "suite", "browser"):
        code, out, events = make_test(tmp_path / failing, **{failing: 1})
        assert code != 0, failing
        assert {e.split()[1] for e in events if e.startswith("end")} == {"matrix", "suite", "browser"}, failing


def test_the_idle_matrix_and_everything_it_starts_get_only_idle_cpu(tmp_path):
    """Does --idle put the process at nice 19 and, where it may make a cpu cgroup, in one of a
    small weight that a child starting a session of its own (as a Jupyter kernel does) stays
    in, and leave no cgroup behind?"""
    probe = ("import os, subprocess, sys; sys.path.insert(0, 'tools'); import cpu_matrix\n"
             "how, undo = cpu_matrix.lowest_priority()\n"
             "child = subprocess.run([sys.executable, '-c', 'import os; print(os.nice(0)); print(open(\"/proc/self/cgroup\").read())'],"
             " start_new_session=True, capture_output=True, text=True).stdout\n"
             "shares = open(how.split('(')[1].rstrip(')') + '/cpu.shares').read().strip() if '(' in how else ''\n"
             "undo(); print(how); print(shares); print(child)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=cpu_matrix.ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    how, shares, nice, *cgroups = out.split("\n")
    assert nice == "19", out
    if "cpu cgroup" in how:
        own = how.split("(")[1].rstrip(")")
        assert (own.rsplit("/", 1)[1] in "".join(cgroups)), out
        assert not os.path.exists(own), "the cgroup is removed at the end"
        assert shares == str(cpu_matrix.SHARES) and cpu_matrix.SHARES < 1024 // 8
    else:  # no cgroup to be had here (not root, cgroup v2, an older kernel)
        assert how == "nice 19"
