"""One learner, one process: where no memory cgroup bounds a learner's processes together
(cgroup.py), its code runs in a single process, so that the one process's memory limit
(RLIMIT_AS) bounds all of the learner's memory at once.

A seccomp filter, set in the learner's process before any of its code runs and kept by
everything it becomes (exec included), refuses with EPERM every system call that makes a
process (fork, vfork, clone without CLONE_THREAD; clone3 says ENOSYS, so that threads are
made with clone, whose flags the filter can read) and the two kinds of memory that outlive
their mappings without a file system's size cap (System V shared memory, memfd). Threads
share their process's address space, so they stay within its limit. System calls of another
ABI (x32, 32-bit) are refused whole. The filter is classic BPF, as the kernel takes it.
"""
import ctypes
import errno
import os
import struct

# struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low 32 bits, little-endian)
NR, ARCH, ARG0 = 0, 4, 16
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, ..., BPF_RET|K
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
CLONE_THREAD = 0x00010000
X32_BIT = 0x40000000
MACHINES = {  # audit arch, then the numbers of the system calls the filter refuses
    "x86_64": (0xC000003E, dict(clone=56, fork=57, vfork=58, shmget=29, memfd_create=319, memfd_secret=447,
                                clone3=435)),
    "aarch64": (0xC00000B7, dict(clone=220, shmget=194, memfd_create=279, memfd_secret=447, clone3=435)),
}


def _op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine=None):
    """The filter's instructions (struct sock_filter[], as bytes) for `machine`, or None where
    the course does not know its system call numbers."""
    if (machine or os.uname().machine) not in MACHINES:
        return None
    arch, calls = MACHINES[machine or os.uname().machine]
    refused = [n for name, n in calls.items() if name not in ("clone", "clone3")]
    # laid out as: the checks, "allow", then clone's check of CLONE_THREAD and the endings
    # (classic BPF jumps forward only)
    clone_at = 5 + len(refused) + 2  # ld arch, jeq arch, ld nr, jge x32, jeq clone3, refused..., jeq clone, ret allow
    refuse, nosys = clone_at + 3, clone_at + 4

    def jump(at, target):  # a jump's offset counts from the instruction after it
        return target - at - 1
    ops = [_op(LD_ABS, ARCH), _op(JEQ, arch, 0, jump(1, refuse)), _op(LD_ABS, NR),
           _op(JGE, X32_BIT, jump(3, refuse), 0), _op(JEQ, calls["clone3"], jump(4, nosys), 0)]
    for n in refused:
        ops.append(_op(JEQ, n, jump(len(ops), refuse), 0))
    ops.append(_op(JEQ, calls["clone"], jump(len(ops), clone_at), 0))
    ops.append(_op(RET, ALLOW))
    ops += [_op(LD_ABS, ARG0), _op(JSET, CLONE_THREAD, 0, 1), _op(RET, ALLOW),
            _op(RET, ERRNO | errno.EPERM), _op(RET, ERRNO | errno.ENOSYS)]
    assert len(ops) == nosys + 1
    return b"".join(ops)


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def apply():
    """Set the filter on this process (and all it becomes); True if it holds, False where this
    machine's system calls are unknown or the kernel refused it."""
    code = program()
    if code is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    prog = _Program(len(code) // 8, code)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required to set a filter unprivileged
        return False
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def memfd():
    """A file descriptor holding the filter, for bubblewrap's --seccomp FD (it sets the filter
    just before it starts the sandbox's command), or None where the machine is unknown."""
    code = program()
    if code is None:
        return None
    fd = os.memfd_create("ninja-one-process", 0)
    os.write(fd, code)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
