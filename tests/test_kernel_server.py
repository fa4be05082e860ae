"""The learners' kernels are forked from one sandboxed kernel server per grading process
(kernel_server.KernelServer, kernels.py): do they run as a kernel started afresh does, and does
nothing one kernel does (its code is the learner's, unrestricted) reach the server or the
next kernel? Each test runs cells in real kernels, as nbgrader's Execute does."""
import os
import time

import psutil
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

from autograder.grader import kernel_server, sandbox

pytestmark = pytest.mark.skipif(not sandbox.shutil.which("bwrap"), reason="the kernel server runs under bubblewrap")


def run(cells, folder, timeout=60):
    """(what each cell printed, whether the kernel was forked from the server), for cells run
    in one kernel in `folder` (nbclient, as nbgrader runs a notebook)."""
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=timeout, kernel_manager_class=kernel_server.SandboxedKernelManager,
                            resources={"metadata": {"path": str(folder)}}, allow_errors=True)
    with client.setup_kernel():
        forked = isinstance(client.km.provisioner.process, kernel_server.ForkedKernel)
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
    printed = ["".join(o.get("text", "") or o.get("evalue", "") for o in c.outputs).strip() for c in nb.cells]
    return printed, forked, nb


def server_pid():
    server = kernel_server.kernel_servers.server
    return server.proc.pid if server is not None and server.proc.poll() is None else None


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "notes.txt").write_text("mine\n")
    kernel_server.kernel_servers.stop()
    yield tmp_path
    kernel_server.kernel_servers.stop()


PROBE = ["import os, sys, torch, matplotlib.pyplot as plt",
         "print(sorted(f for f in os.listdir('.') if f[0] != '.'), os.environ['HOME'] == os.getcwd(), sys.argv[1] == '-f', os.getuid() != 0)",
         "print(torch.ones(3).sum().item(), torch.get_num_threads(), sorted(k for k in os.environ if not k.startswith('JPY')))",
         "plt.plot([1, 2, 3]); plt.show()"]


def test_kernels_are_forked_from_one_server_and_run_as_a_fresh_kernel_does(folder, monkeypatch):
    printed, forked, nb = run(PROBE, folder)
    assert forked
    first = server_pid()
    assert first is not None
    for _ in range(2):
        again, forked, _ = run(PROBE, folder)
        assert forked and again == printed
    assert server_pid() == first, "the server was started again"
    assert "image/png" in nb.cells[3].outputs[0]["data"], "matplotlib's inline backend draws in the notebook"
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", "0")
    fresh, forked, _ = run(PROBE, folder)
    assert not forked
    assert fresh == printed, "a forked kernel sees what a kernel started afresh sees"


LOOK = ("import os\n"
        "mine = {os.getpid(), os.getppid(), 1}\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in mine]\n"
        "print((sorted(os.listdir('/tmp')), os.listdir('/dev/shm'), sorted(os.listdir('.')), others))")


def test_nothing_a_kernel_leaves_reaches_the_next(folder):
    """Do the files and processes a kernel leaves (in /tmp, its home, /dev/shm, its session or
    another) reach neither the next kernel nor the machine? The next kernel's /tmp holds nothing
    a first kernel's did not (what the sandbox binds there: this checkout's folder when it lies
    in /tmp)."""
    marker = f"4242.{os.getpid()}"  # this run's sleepers, not another run's on the machine
    before, forked, _ = run([LOOK], folder)
    assert forked
    left, forked, _ = run([
        "import os, subprocess\n"
        "for p in ['/tmp/left', os.path.expanduser('~/left')]:\n"
        "    open(p, 'w').write('x')\n"
        "os.makedirs('/tmp/d/e'); os.chmod('/tmp/d', 0)\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"subprocess.Popen(['sh', '-c', '(setsid sleep {marker} &)'])\n"
        "print('left')"], folder)
    assert forked and left == ["left"]
    server = server_pid()
    seen, forked, _ = run([LOOK], folder)
    assert forked and server_pid() == server, "the same server: it swept, it did not give up"
    tmp, shm, cwd, others = eval(seen[0])
    assert set(tmp) <= set(eval(before[0])[0]), "a file in /tmp outlived its kernel"
    assert shm == [] and cwd == [".ipython", "notes.txt"], "files outlived their kernel"
    assert others == [], "a process outlived its kernel"
    time.sleep(0.2)
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])
                and p.status() != psutil.STATUS_ZOMBIE]


def test_a_kernel_cannot_read_the_servers_memory_or_pipes(folder):
    printed, forked, _ = run([
        "import os\n"
        "server = os.getppid()\n"
        "def tried(f):\n"
        "    try:\n"
        "        f(); return 'read'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        "print([tried(lambda: open(f'/proc/{server}/{n}', 'rb').read(64)) for n in ('mem', 'environ', 'maps')],"
        " tried(lambda: os.listdir(f'/proc/{server}/fd')), server != 1)"], folder)
    assert forked
    assert printed == ["['PermissionError', 'PermissionError', 'PermissionError'] PermissionError True"]


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL"])
def test_a_kernel_that_stops_or_kills_its_server_costs_only_its_own_notebook(folder, sig):
    first = run(["print(1)"], folder)[1] and server_pid()
    start = time.monotonic()
    try:
        _, forked, _ = run(["import os, signal", f"os.kill(os.getppid(), signal.{sig}); print('done')"],
                           folder, timeout=20)
    except DeadKernelError:  # the server's sandbox took the kernel with it
        forked = True
    assert forked
    assert time.monotonic() - start < 40, "the grader waited on a stopped server"
    again, forked, _ = run(["print(1 + 1)"], folder)
    assert again == ["2"] and forked
    assert server_pid() not in (None, first), "a new server took the next kernel"


@pytest.mark.parametrize("server", ["1", "0"])
def test_a_kernel_found_dead_at_the_end_frees_the_server_and_its_folders(folder, monkeypatch, server):
    """nbclient skips the shutdown of a kernel it finds dead at the end (one that ended, or whose
    server did) and calls cleanup_resources alone: is the kernel server still freed for the next
    kernel, while the dead kernel's manager lives on, and are its folders and cgroup gone?"""
    from jupyter_client.utils import run_sync
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", server)
    nb = new_notebook(cells=[new_code_cell("print(1)")])
    client = NotebookClient(nb, timeout=60, kernel_manager_class=kernel_server.SandboxedKernelManager,
                            resources={"metadata": {"path": str(folder)}})
    with client.setup_kernel():
        km = client.km  # lives on, as a manager caught in a reference cycle does until gc runs
        client.execute_cell(nb.cells[0], 0)
        assert isinstance(km.provisioner.process, kernel_server.ForkedKernel) == (server == "1")
        km.provisioner.process.kill()
        km.provisioner.process.wait(10)
        assert not run_sync(km.is_alive)()
    left = [km._sockets, km._work] + ([km._bound.path] if getattr(km, "_bound", None) and km._bound.path else [])
    assert [p for p in left if os.path.exists(p)] == []
    monkeypatch.setenv("BACKPROP_NINJA_KERNEL_SERVER", "1")
    assert run(["print(2)"], folder)[:2] == (["2"], True)


def test_a_second_kernel_at_the_same_time_gets_a_sandbox_of_its_own(folder):
    nb = new_notebook(cells=[new_code_cell("print('outer')")])
    outer = NotebookClient(nb, timeout=60, kernel_manager_class=kernel_server.SandboxedKernelManager,
                           resources={"metadata": {"path": str(folder)}})
    with outer.setup_kernel():
        assert isinstance(outer.km.provisioner.process, kernel_server.ForkedKernel)
        inner, forked, _ = run(["print('inner')"], folder)
        assert inner == ["inner"] and not forked
        outer.execute_cell(nb.cells[0], 0)
    assert nb.cells[0].outputs[0]["text"] == "outer\n"
    assert run(["print('next')"], folder)[1], "the server is free again"


def test_a_server_for_another_environment_or_interpreter_is_started_anew(folder, monkeypatch):
    assert run(["print(1)"], folder)[1]
    first = server_pid()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # read when torch loads: the server's must match
    printed, forked, _ = run(["import torch; print(torch.get_num_threads())"], folder)
    assert forked and printed == ["2"] and server_pid() != first
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")  # read by cells only: the same server
    second = server_pid()
    printed, forked, _ = run(["import os; print(os.environ.get('NBGRADER_EXECUTION'))"], folder)
    assert forked and printed == ["autograde"] and server_pid() == second


def test_each_kernel_is_in_a_memory_cgroup_of_its_own_gone_after_it(folder):
    """Is each kernel (forked from the server, or in a sandbox of its own beside it) in a memory
    cgroup of its own, limited to the learner's bound, and is that cgroup gone after it?"""
    from autograder.grader import cgroup
    from conftest import is_kernel
    if cgroup.base() is None:
        pytest.skip("no writable memory cgroup here")
    version, base = cgroup.base()
    limit_file = "memory.limit_in_bytes" if version == 1 else "memory.max"

    def cgroups():
        found = {}
        for name in os.listdir(base):
            path = os.path.join(base, name)
            if name.startswith(f"ninja-learner-{os.getpid()}-") and os.path.isdir(path):  # this run's only
                pids = [int(p) for p in open(os.path.join(path, "cgroup.procs")).read().split()]
                found[name] = ([p for p in pids if psutil.pid_exists(p) and is_kernel(psutil.Process(p))],
                               int(open(os.path.join(path, limit_file)).read()))
        return found
    before = set(cgroups())
    nb = new_notebook(cells=[new_code_cell("print('outer')")])
    outer = NotebookClient(nb, timeout=60, kernel_manager_class=kernel_server.SandboxedKernelManager,
                           resources={"metadata": {"path": str(folder)}})
    with outer.setup_kernel():
        assert isinstance(outer.km.provisioner.process, kernel_server.ForkedKernel)
        inner = NotebookClient(new_notebook(cells=[new_code_cell("print('inner')")]), timeout=60,
                               kernel_manager_class=kernel_server.SandboxedKernelManager, resources={"metadata": {"path": str(folder)}})
        with inner.setup_kernel():
            assert not isinstance(inner.km.provisioner.process, kernel_server.ForkedKernel)
            during = {k: v for k, v in cgroups().items() if k not in before}
        outer.execute_cell(nb.cells[0], 0)
    assert len(during) == 2, during
    assert all(kernels and limit == sandbox.LEARNER["memory_bytes"] for kernels, limit in during.values()), during
    kernel_server.kernel_servers.stop()
    assert not set(cgroups()) & set(during), "a kernel's cgroup outlived it"
