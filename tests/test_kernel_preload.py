"""The kernel server's imports (kernels.preload) leave a kernel forked from it next to nothing
to import as it starts: every graded notebook starts a kernel, four per learner."""
import json
import subprocess
import sys

PROBE = """
import json, os, sys
from autograder.grader import kernels
kernels.preload()
before = set(sys.modules)
from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
app.initialize(["-f", sys.argv[1]])
new = sorted(set(sys.modules) - before)
with open(sys.argv[2], "w") as f:
    json.dump(new, f)
os._exit(0)
"""


def test_a_kernel_forked_from_the_server_imports_next_to_nothing_as_it_starts(tmp_path):
    """Does IPKernelApp.initialize, after the server's preload, import none of the debugger
    (debugpy: about 80 modules), psutil or the shell's history, and few modules in all, and
    does the server's preload print nothing (pydevd's warning of frozen modules)?"""
    out = tmp_path / "new.json"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "kernel.json"), str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Debugger warning" not in proc.stderr and "frozen modules" not in proc.stderr, proc.stderr
    new = json.loads(out.read_text())
    heavy = [m for m in new if m.split(".")[0] in ("debugpy", "_pydevd_bundle", "pydevd", "psutil", "sqlite3")]
    assert heavy == [], heavy
    assert len(new) < 30, new
