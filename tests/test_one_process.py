"""One learner, one process (oneprocess.py): where no memory cgroup bounds a learner's
processes together, does the seccomp filter keep threads and refuse every way to make a
process or memory that outlives its mapping?"""
import struct
import subprocess
import sys

import pytest

from autograder.grader import oneprocess, sandbox


ONE_PROCESS = r'''
import ctypes, os, subprocess, sys, threading
from autograder.grader import oneprocess
assert oneprocess.apply()
results = []
t = threading.Thread(target=lambda: results.append("thread"))
t.start(); t.join()
for name, make in [("fork", os.fork), ("subprocess", lambda: subprocess.run(["true"])),
                   ("posix_spawn", lambda: os.posix_spawn("/bin/true", ["true"], {})),
                   ("memfd", lambda: os.memfd_create("x"))]:
    try:
        make()
        results.append(name)
    except PermissionError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if libc.shmget(0x4243, 1 << 20, 0o1600) >= 0:
    results.append("shmget")
if os.uname().machine == "x86_64" and libc.syscall(57 | 0x40000000) >= 0:  # fork through the x32 ABI
    results.append("x32 fork")
print(results)
'''


@pytest.mark.skipif(oneprocess.program() is None, reason="the course knows no system call numbers of this machine")
def test_one_process_keeps_threads_and_refuses_every_way_to_start_a_process():
    """With oneprocess.py's filter set, do threads still work while fork, subprocess,
    posix_spawn, memfd, System V shared memory and another ABI's fork are refused?"""
    out = subprocess.run([sys.executable, "-c", ONE_PROCESS], capture_output=True, text=True, timeout=60,
                         cwd=str(sandbox.PACKAGE.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['thread']"


@pytest.mark.parametrize("machine", sorted(oneprocess.MACHINES))
def test_the_one_process_filter_jumps_stay_inside_it(machine):
    """Every jump of the filter lands on an instruction of it (the kernel refuses it otherwise)
    and it ends with a return, for every machine the course knows."""
    code = oneprocess.program(machine)
    ops = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    for at, (op, jt, jf, _) in enumerate(ops):
        if op & 0x07 == 0x05:  # BPF_JMP
            assert at + 1 + max(jt, jf) < len(ops)
    assert ops[-1][0] == oneprocess.RET
