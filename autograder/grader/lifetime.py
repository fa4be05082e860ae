"""Nothing outlives the process that started it: a grading process ends with its coordinator
(the class runner), however that one ends (Ctrl-C, SIGTERM, SIGKILL, the out-of-memory
killer); its servers then end with it (bubblewrap's --die-with-parent, and each server's end
of file on its pipe from the grading process).

Two rules, each enough on its own where it applies:
- die_with(parent), in the child: Linux's parent-death signal (PR_SET_PDEATHSIG, SIGKILL),
  then a check that the parent is still its parent (it may have ended before the signal was
  armed). The signal fires when the *thread* that started the child ends, not the process, so
  it also ends a child whose starting thread ends first: use it where that thread lives as
  long as the process (or where an early end only costs a restart).
- end_with(fd), in the child: a thread that reads the read end of a pipe whose write end only
  the parent holds; end of file means the parent has gone, whichever thread started the child
  and on any system: it kills every process below this one and exits.
"""
import ctypes
import os
import signal
import threading

PR_SET_PDEATHSIG = 1
try:  # looked up once, here: die_with runs between fork and exec, where nothing may load
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: end_with alone
    _prctl = None


def die_with(parent):
    """Be killed when `parent` (this process's parent's pid) ends; exit now if it has."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def end_with(fd):
    """Watch `fd` (a pipe's read end, its write end the parent's alone) from a thread: at its end
    of file, kill every process below this one (servers, kernels, their sandboxes) and exit."""
    def watch():
        try:
            while os.read(fd, 4096):
                pass
        except OSError:  # closed under us: the parent is not known to be gone
            return
        kill_below(os.getpid())
        os._exit(1)
    threading.Thread(target=watch, name="ninja-end-with-parent", daemon=True).start()


def kill_below(pid):
    """SIGKILL every process below `pid`, each process group first (a server and what it runs
    in its sandbox), then each process found."""
    import psutil
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in procs:
        for kill in (lambda: os.killpg(p.pid, signal.SIGKILL), p.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                pass
