"""Where a learner's kernel may write: only into folders with a size cap of their own.

A kernel's sockets must live in a folder on the grader's side (the grader reaches them by
path), which the kernel's sandbox therefore shows writable, on the grader's disk, with no cap
of its own. Before the kernel starts (kernels.become, kernels.own), a Landlock ruleset makes
every folder but its capped ones (its working folder, /tmp and /dev/shm, all size-capped
tmpfs, and /dev) refuse every kind of write; in its socket folder it may only make sockets
(ipykernel binds them as it starts). Landlock binds the process and everything it starts,
threads included, and cannot be undone by it. Where the kernel has no Landlock (Linux before
5.13, or not enabled), nothing changes: each file there is still capped by RLIMIT_FSIZE.
"""
import ctypes
import os
import struct

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446  # the same numbers on every architecture
RULE_PATH_BENEATH = 1
WRITE_FILE, REMOVE_DIR, REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
MAKE = {"char": 1 << 6, "dir": 1 << 7, "reg": 1 << 8, "sock": 1 << 9, "fifo": 1 << 10, "block": 1 << 11, "sym": 1 << 12}
REFER, TRUNCATE = 1 << 13, 1 << 14  # Landlock ABI 2 and 3


def version():
    """The running kernel's Landlock ABI version, 0 where it has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    found = libc.syscall(CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(found, 0)


def writes(abi):
    """Every write right the Landlock ABI `abi` knows."""
    rights = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | sum(MAKE.values())
    return rights | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)


def only(capped, sockets=None):
    """Confine this process (and all it starts) to writing beneath the folders `capped`, and to
    making sockets (and removing them) in the folder `sockets`. True if it holds, False where
    the kernel has no Landlock; raises OSError if a step failed."""
    abi = version()
    if abi < 1:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    handled = writes(abi)

    def check(result, what):
        if result < 0:
            raise OSError(ctypes.get_errno(), f"landlock: {what} failed")
        return result
    attr = ctypes.create_string_buffer(struct.pack("Q", handled))
    ruleset = check(libc.syscall(CREATE_RULESET, attr, 8, 0), "create_ruleset")
    try:
        rules = [(path, handled) for path in capped] + ([(sockets, MAKE["sock"] | REMOVE_FILE)] if sockets else [])
        for path, allowed in rules:
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd))  # packed: 12 bytes
                check(libc.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, rule, 0), f"add_rule {path}")
            finally:
                os.close(fd)
        check(libc.prctl(38, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        check(libc.syscall(RESTRICT_SELF, ruleset, 0), "restrict_self")
    finally:
        os.close(ruleset)
    return True


def sockets_of(argv):
    """The folder of a kernel's sockets, from its command line's connection file (-f PATH), or
    None."""
    import json
    try:
        with open(argv[argv.index("-f") + 1]) as f:
            info = json.load(f)
        return os.path.dirname(info["ip"]) if info.get("transport") == "ipc" else None
    except (ValueError, IndexError, OSError, KeyError, TypeError):
        return None
