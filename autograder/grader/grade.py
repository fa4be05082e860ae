"""Grade a whole class, using every core or a Dask cluster, with a progress bar and an ETA.

    python -m autograder.grade [--assignment A] [--jobs N] [--force] [--student ID ...]  # nbgrader autograde
    python -m autograder.grade --scores-only [--csv F]                # trusted scores only, no notebook runs
    python -m autograder.grade --cluster tcp://HOST:PORT [...]        # either mode on a Dask scheduler's workers

Each learner is one self-contained job (jobs.py: their submitted files as bytes, and once per run
the assignment's source and release, the course's configuration, a gradebook with the assignment
only and the hidden cases derived from the secret, never the secret), graded by jobs.run_job in
a worker: a local process (forked from a fork server that loaded nbgrader and torch once:
worker_context) or a Dask worker, one code path.
The full mode runs the standard `nbgrader autograde` (trusted scores, sandbox, repair: see
nbgrader_config.py) in a private temporary course; the scores-only mode repairs each submission
and replays all of one learner's answers in one sandboxed process. Only this process (the
coordinator) writes: the gradebook (through nbgrader's API, as autograde writes it, so
feedback, export and formgrader work as usual), autograded/, the markers and the CSV, one
learner at a time, whole. It grades the learners whose submission (or the assignment's
source) changed since this command last graded them, or all with --force. Ctrl-C stops it, its
local workers and their kernels within seconds (on a cluster: cancels what is queued); a
learner whose grading did not finish has nothing recorded, so that this command and `nbgrader
autograde` grade it again. Every run ends with a table: learner, total, each exercise. Both
modes take the points from the assignment's nbgrader metadata, so they agree.
"""
import argparse
import csv
import hashlib
import math
import multiprocessing
import os
import re
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from . import course, jobs, neutral, sandbox, tree
from ..exercises import EXERCISES

# Seconds one worker takes for one learner (benchmarks/bench.py, README), and to start: the
# ETA until enough learners have finished to measure the class's own pace.
SECONDS_PER_LEARNER = {"full": 11.0, "scores": 1.5}
SECONDS_TO_START = 5.0
GRADING = "grading"  # what a learner's marker says while its grading runs


def students(root, assignment=course.ASSIGNMENT):
    return sorted(p.parent.name for p in (Path(root) / "submitted").glob(f"*/{assignment}"))


def exercises_in(root, assignment):
    """The course's exercises whose notebooks the assignment has (in its release or source)."""
    return [key for key, ex in EXERCISES.items()
            if any((Path(root) / step / assignment / ex.notebook).exists() for step in ("release", "source"))]


# --- what needs grading ---------------------------------------------------------------------

def marker(root, student, assignment):
    """Beside the learner's autograded folder (nbgrader copies nothing from here into feedback):
    GRADING while this command grades the learner, then the fingerprint of what it graded."""
    return Path(root) / "autograded" / student / f".{assignment}.graded"


def fingerprint(root, student, assignment):
    """A digest of the learner's submitted files and the assignment's source notebooks, as
    tree.walk reads them (within its bounds). Links are hashed as links (their target's name),
    never followed, anything but a regular file (a FIFO, a device, a socket) by its name and
    kind only, and what is beyond a bound by its name and why: nothing of the learner's is
    opened that could block, or read what is not theirs."""
    h = hashlib.sha256()
    for folder in (Path(root) / "submitted" / student / assignment, Path(root) / "source" / assignment):
        top = os.path.relpath(folder, root)
        for rel, kind, data in tree.walk(folder, ignore=(".ipynb_checkpoints",)):
            if kind == tree.FOLDER:
                continue
            h.update(f"{os.path.join(top, rel)}\0".encode(errors="surrogateescape"))
            if kind == tree.LINK:
                h.update(b"link\0" + data)
            elif kind == tree.FILE:
                h.update(data)
            else:
                h.update(f"{kind} {data}\0".encode())
    return h.hexdigest()


def in_gradebook(root, assignment):
    """The learners with a submission of the assignment in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    if not course.has_gradebook(root):
        return set()
    with Gradebook(course.gradebook_url(root)) as gb:
        try:
            return {s.student_id for s in gb.assignment_submissions(assignment)}
        except MissingEntry:
            return set()


def up_to_date(root, student, assignment, graded):
    """Whether this command graded the learner, completely, on what is submitted now."""
    m = marker(root, student, assignment)
    return (student in graded and (Path(root) / "autograded" / student / assignment).is_dir()
            and m.exists() and m.read_text() == fingerprint(root, student, assignment))


def forget(root, learners, assignment):
    """Remove what unfinished gradings left (the autograded folders and gradebook submissions),
    so that this command and `nbgrader autograde` grade those learners again."""
    from nbgrader.api import Gradebook, MissingEntry
    if not learners:
        return
    with Gradebook(course.gradebook_url(root)) as gb:
        for s in learners:
            tree.remove(Path(root) / "autograded" / s / assignment)
            marker(root, s, assignment).unlink(missing_ok=True)
            try:
                gb.remove_submission(assignment, s)
            except MissingEntry:
                pass


# --- the workers: a local process pool or a Dask cluster, one job function (jobs.run_job) ---

# What a worker imports before its first job, by mode: imported once by the fork server the
# workers are forked from, not by each (full: nbgrader, torch, the trusted grader, about 2.6
# CPU-seconds; scores-only: torch, nothing of nbgrader).
PRELOAD = {"full": ["autograder.grader.jobs",  # first: it keeps jsonschema from compiling a grammar nobody uses
                    "torch", "nbgrader.apps", "autograder.grader.trusted", "autograder.grader.kernel_server",
                    "autograder.grader.grade"],
           "scores": ["autograder.grader.jobs", "torch", "autograder.grader.verdicts", "autograder.grader.grade"]}


def worker_context(mode="full"):
    """(multiprocessing context, pid of the process the workers are forked from or None):
    multiprocessing's fork server, one per process, started with the first run's PRELOAD
    imported, so that each worker starts from those imports instead of loading them again (a
    clean process of its own, not a copy of this one and its threads; a worker of a later run
    in another mode imports what the server lacks, as _start_worker does); spawn where the fork
    server cannot start (no such start method, a temporary folder whose path is too long for
    its socket)."""
    from multiprocessing import forkserver
    server = getattr(forkserver, "_forkserver", None)
    if "forkserver" in multiprocessing.get_all_start_methods() and server is not None:
        ctx = multiprocessing.get_context("forkserver")
        if getattr(server, "_forkserver_pid", None) is None:
            ctx.set_forkserver_preload(PRELOAD.get(mode, PRELOAD["scores"]))
        try:
            forkserver.ensure_running()
            if getattr(server, "_forkserver_pid", None) is not None:
                return ctx, server._forkserver_pid
        except OSError:
            pass
    return multiprocessing.get_context("spawn"), None


def _start_worker(one_thread, mode=None, setting=None, environ=None, server=None):
    """In each local worker process, once: the coordinator's environment as it is now (`environ`:
    the fork server it comes from may be older), its own session, so that Ctrl-C in the terminal
    reaches only the main process, which stops the workers itself; then what its jobs need,
    loaded while the main process still reads the class: nbgrader and the kernel server (full
    mode) and, for a course with exercises, its sandboxed fork server, proven on a known answer
    (jobs.preflight_once). It ends with the main process, however that ends (lifetime.py): a
    watcher on the pipe only the main process holds (multiprocessing's parent sentinel), and the
    parent-death signal: of the main process (it starts its workers from its main thread), or of
    the fork server (`server`, its pid), which ends with the main process once no worker holds
    its pipe of life (each closes its copy here)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C held back since it started: dropped
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    import multiprocessing.util
    from .lifetime import die_with, end_with
    if environ is not None:
        import tempfile
        os.environ.clear()
        os.environ.update(environ)
        tempfile.tempdir = None  # found again from TMPDIR, as a spawned process finds it
    coordinator = multiprocessing.parent_process()
    if server is not None:
        from multiprocessing import forkserver
        alive = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)  # (multiprocessing's own)
        if alive is not None:  # the fork server ends when the main process does, not after us
            os.close(alive)
            forkserver._forkserver._forkserver_alive_fd = None
    die_with(coordinator.pid if server is None else server)
    end_with(coordinator.sentinel)
    # the worker's end: its clean-up (atexit: the sandboxes, their folders), without the teardown
    multiprocessing.util.Finalize(None, exit_without_teardown, exitpriority=-100)
    if one_thread:  # the kernels this worker starts: one thread each, two workers share two cores
        os.environ["OMP_NUM_THREADS"] = "1"
    # what the kernels print on the stdout they inherit is nobody's business here; what goes
    # wrong in grading comes back in the job's result instead
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    from .jobs import prepare_process, preflight_once
    prepare_process()
    if mode == "full":
        import nbgrader.apps  # noqa: F401
        from .kernel_server import kernel_servers
        kernel_servers.prewarm()  # the learners' kernels are forked from it (kernel_server.KernelServer)
    if setting is not None:
        preflight_once(setting)  # a failure is kept, and each job then reports it


def exit_without_teardown(code=0):
    """End this process as the interpreter ends it (threads joined, atexit handlers run, output
    flushed) but for freeing every module one by one: torch's take 0.5 s, at the end of every
    run, in the coordinator and in each worker. Only where nothing of the process is used after."""
    import atexit
    import threading
    threading._shutdown()  # what the interpreter does first at exit: join the non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else int(code is not None))  # as sys.exit's codes


def _started(setting):
    """A job of no work but the sandbox's check, once per process (done by _start_worker):
    submitting one per worker starts the pool's processes now. '' or why it cannot run."""
    from .jobs import preflight_once
    return preflight_once(setting) if setting is not None else ""


def scores_one(root, student, assignment=course.ASSIGNMENT, points=None):
    """score_rows of a learner of the course at root, on the course's hidden cases."""
    from ..exercises import course_setting
    from .verdicts import score_rows
    return score_rows(student, Path(root) / "submitted" / student / assignment, Path(root) / "release" / assignment,
                      course_setting(root), points)


def kill_tree(proc):
    """Kill a process (a Popen or a pid) and everything below it (kernels and sandboxes start
    sessions of their own), and wait for them: the clean-up of the cluster's tests and benchmark."""
    import psutil
    try:
        p = psutil.Process(getattr(proc, "pid", proc))
        procs = p.children(recursive=True) + [p]
    except psutil.NoSuchProcess:
        return
    for q in procs:
        try:
            q.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def stop(pool):
    """Kill the pool's workers and everything they started (kernels, sandboxes), at once."""
    import psutil
    children, workers = multiprocessing.active_children(), []
    for p in children:
        try:
            workers.append(psutil.Process(p.pid))
            workers[-1].suspend()  # so that it starts nothing new while its children are found
        except psutil.NoSuchProcess:
            pass
    procs = []
    for w in workers:
        try:
            procs += w.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for proc in procs + workers:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    # the workers are this process's children: reaped by multiprocessing itself, never by psutil,
    # whose wait would leave the pool's manager thread seeing them alive for ever (a hang at exit)
    for p in children:
        p.join(10)
    for w in workers:
        remove_kernel_folders(w.pid)
    from . import cgroup
    found = cgroup.base() if workers else None
    if found:
        cgroup.sweep(found[1])  # the memory cgroups of the learners they were grading
    pool.shutdown(wait=False, cancel_futures=True)


# the folders a grading process makes in the temporary folder, /tmp or /var/tmp
# (sandbox.grading_folders), named by its pid: its kernels' sockets and copies, its jobs' folders
LEFT = re.compile(r"(?:ninja-kernels?|ninja-kernel-work|bpn-job)-(\d+)-")


def _left(base):
    """{path: pid} of the grading processes' folders in `base` that are this user's."""
    try:
        names = os.listdir(base)
    except OSError:
        return {}
    found = {}
    for name in names:
        m = LEFT.match(name)
        try:
            if m and os.lstat(os.path.join(base, name)).st_uid == os.geteuid():
                found[os.path.join(base, name)] = int(m.group(1))
        except OSError:
            pass
    return found


def remove_kernel_folders(pid):
    """What a killed grading process leaves of its kernels and jobs: their folders (sockets,
    copies, the job's files), named by its pid in the temporary folder or /tmp."""
    for base in sandbox.grading_folders():
        for path, maker in _left(base).items():
            if maker == pid:
                tree.remove(path)  # whatever its kernels made there, however deep


def sweep_left():
    """What grading processes killed outright (SIGKILL, the out-of-memory killer: none of their
    clean-up ran) left: their folders in the temporary folder or /tmp, and their learners'
    memory cgroups, removed once the process that made them has ended."""
    from . import cgroup
    for base in sandbox.grading_folders():
        for path, maker in _left(base).items():
            if not cgroup.alive(maker):
                tree.remove(path)
    cgroup.base()  # which sweeps the cgroups


class SchedulerGone(RuntimeError):
    """The Dask scheduler cannot be reached (any more)."""


class LocalWorkers:
    """N worker processes on this machine, forked from a fork server that loaded nbgrader and
    torch once (worker_context)."""

    def __init__(self, jobs, mode=None, setting=None):
        self.size = jobs
        # started now, each loading what its jobs need meanwhile; until a worker has a session of
        # its own, a Ctrl-C (the terminal's, to this process's group) is held back from it (it
        # inherits the blocked SIGINT, through the fork server too, which ignores it) and then
        # dropped (_start_worker); here it waits a moment
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            context, server = worker_context(mode)
            self.pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                            initargs=(jobs > 1, mode, setting, dict(os.environ), server))
            self.started = [self.pool.submit(_started, setting) for _ in range(jobs)]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def preflight(self):
        """'' if the first worker to start could run a known answer through its sandbox, else why."""
        first = next(iter(wait(self.started, return_when=FIRST_COMPLETED).done))
        try:
            return first.result()
        except Exception as e:  # the worker could not start at all
            return f"a grading process could not start ({type(e).__name__}: {e})"

    def submit(self, pack, learner):
        from .jobs import run_job
        return self.pool.submit(run_job, pack, learner)

    def capacity(self):
        return self.size

    def wait(self, pending, timeout):
        return wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)

    def close(self):
        self.pool.shutdown()

    def stop(self):
        stop(self.pool)


class ClusterWorkers:
    """The workers of a running Dask scheduler. Each job is a task retried elsewhere when its
    worker dies (Dask reassigns it) or it raises; the shared pack is sent to the cluster once."""

    RETRIES = 2
    RECONNECT_SECONDS = 10  # how long the scheduler may be unreachable before the run stops

    def __init__(self, address, timeout=20):
        from distributed import Client
        refused = self.refused(address)
        if refused:  # Dask's Client would retry for `timeout` seconds before saying so
            raise SchedulerGone(f"cannot reach the Dask scheduler at {address}: {refused}")
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SchedulerGone(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.address = address
        self.size = max(1, sum(self.client.nthreads().values()))
        self._packs, self._futures, self._lost_since, self._counted = {}, [], None, 0.0

    @staticmethod
    def refused(address):
        """Why a tcp:// address refuses a connection now ('' if it accepts one, or the scheme
        is another): nothing listens on a scheduler's port that was stopped or mistyped."""
        import socket
        from distributed.comm import parse_address
        from distributed.comm.addressing import parse_host_port
        try:
            scheme, location = parse_address(address)
            if scheme != "tcp":
                return ""
            host, port = parse_host_port(location)
            with socket.create_connection((host, port), timeout=5):
                return ""
        except ConnectionRefusedError:
            return "nothing listens there (connection refused)"
        except (OSError, ValueError, TypeError):
            return ""  # unresolved, slow or odd: Dask's Client says what it is

    def capacity(self):
        """Learners the cluster grades at once (its workers' threads), asked at most every 5 s."""
        import time
        if time.monotonic() - self._counted > 5 and self.client.status == "running":
            try:
                self.size = max(1, sum(self.client.nthreads().values()))
            except Exception:
                pass
            self._counted = time.monotonic()
        return self.size

    def submit(self, pack, learner):
        import uuid
        from .jobs import run_job
        if id(pack) not in self._packs:
            self._packs[id(pack)] = self.client.scatter(pack, broadcast=False, hash=False)
        self._futures.append(self.client.submit(run_job, self._packs[id(pack)], learner, pure=False,
                                                retries=self.RETRIES,
                                                key=f"grade-{learner['student']}-{uuid.uuid4().hex[:8]}"))
        return self._futures[-1]

    def wait(self, pending, timeout):
        import time
        from distributed import wait as dask_wait
        if self.client.status != "running":
            self._lost_since = self._lost_since or time.monotonic()
            if self.client.status in ("closed", "closing") or \
                    time.monotonic() - self._lost_since > self.RECONNECT_SECONDS:
                raise SchedulerGone(f"lost the Dask scheduler at {self.address}")
        else:
            self._lost_since = None
        try:
            with self.client.as_current():
                done, _ = dask_wait(list(pending), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set(), pending
        except CancelledError:  # distributed's FuturesCancelledError: scheduler-connection-lost
            raise SchedulerGone(f"lost the Dask scheduler at {self.address} (the connection dropped)") from None
        except OSError as e:
            raise SchedulerGone(f"lost the Dask scheduler at {self.address}: {e}") from None
        done = {f for f in pending if f in done or f.done()}
        # a future cancelled under us (the scheduler went away and forgot it) is not a result
        if any(f.cancelled() for f in done):
            raise SchedulerGone(f"lost the Dask scheduler at {self.address}: it dropped the jobs")
        return done, pending - done

    def close(self):
        try:
            self.client.close(timeout=10)
        except Exception:
            pass

    def stop(self):
        """Cancel what is queued; a worker drops what it is grading when its job ends."""
        try:
            self.client.cancel(self._futures + list(self._packs.values()), force=True)
        except Exception:
            pass
        self.close()


class Progress(tqdm):
    """tqdm whose ETA, until as many learners have finished as run at once, comes from an
    estimate of the whole run; then from the class's own pace. Where its file is no terminal
    (a pipe, a log), a line each time a learner is done, with no carriage return to redraw it."""

    def __init__(self, *args, estimate, trust_after, file=None, **kw):
        self.estimate, self.trust_after = estimate, trust_after
        self.terminal, self.shown = bool(getattr(file, "isatty", lambda: False)()), None
        super().__init__(*args, smoothing=0, file=file, **kw)

    def display(self, msg=None, pos=None):
        if self.terminal or msg is not None or pos:
            return super().display(msg, pos)
        if self.n != self.shown:
            self.shown = self.n
            self.fp.write(f"{self}\n")
            self.fp.flush()
        return True

    @property
    def format_dict(self):
        d = super().format_dict
        if d["total"] and d["n"] < min(self.trust_after, d["total"]):
            d["rate"] = (d["total"] - d["n"]) / max(self.estimate - d["elapsed"], 1.0)
        return d


def _interrupt(signum, frame):
    """Ctrl-C or `kill` (SIGTERM): stop, once; a second one while stopping is ignored, so
    that the stop finishes (it takes seconds) and says what was graded."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def usable_cores():
    """The cores this process may run on: its CPU affinity (what taskset, a container's cpuset or
    a batch scheduler leaves it), not the machine's count, which os.cpu_count() gives."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this system (macOS)
        return os.cpu_count() or 1


def main(argv=None):
    p = argparse.ArgumentParser(description="Grade every submission of the class.")
    p.add_argument("--course", default=".", help="the course folder (default: here)")
    p.add_argument("--assignment", default=course.ASSIGNMENT, help="the assignment (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=usable_cores(),
                   help="learners graded at once (default: the cores this process may use, %(default)s)")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT",
                   help="grade on this Dask scheduler's workers instead of local processes (--jobs is then ignored)")
    p.add_argument("--student", action="append", metavar="ID", help="grade only this learner (repeatable)")
    p.add_argument("--force", action="store_true", help="grade every learner, not only new or changed submissions")
    p.add_argument("--scores-only", action="store_true", help="trusted scores to a CSV, no notebook execution")
    p.add_argument("--csv", default="scores.csv", help="with --scores-only: where to write (default: %(default)s)")
    args = p.parse_args(argv)
    root, assignment = Path(args.course).resolve(), args.assignment
    everyone = students(root, assignment)
    if not everyone:
        p.error(f"no submissions of {assignment} in {root / 'submitted'} (submitted/<student>/{assignment}/)")
    if args.student:
        unknown = [s for s in args.student if s not in everyone]
        if unknown:
            p.error(f"no submission of {assignment} by {neutral.listing(unknown)}")
        everyone = [s for s in everyone if s in args.student]
    trusted = bool(exercises_in(root, assignment))
    if args.scores_only and not trusted:
        p.error(f"{assignment} has none of the course's exercise notebooks: --scores-only cannot score it")
    from ..exercises import PRACTICE, course_setting
    setting = course_setting(root) if trusted else PRACTICE  # the hidden cases: the jobs carry these, never the secret
    mode = "scores" if args.scores_only else "full"
    # stopped by Ctrl-C or `kill` at any moment from here: with its message, never a traceback
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    local = None
    try:
        sweep_left()  # of runs killed before this one
        # local workers start now (Python, nbgrader, torch, their sandbox) while this process checks
        # the sandbox and reads the class; they are stopped on every way out below that grades nobody
        local = None if args.cluster else LocalWorkers(max(1, min(args.jobs, len(everyone))), mode,
                                                       setting if trusted else None)
        return _grade(args, p, root, assignment, everyone, trusted, setting, mode, local)
    except KeyboardInterrupt:  # before grading began (_grade reports an interrupt after that)
        print(f"\ninterrupted while starting: graded 0 of {len(everyone)} learners; nothing was recorded"
              + (", no CSV written." if args.scores_only else ": run the same command again to grade them."))
        return 130
    finally:
        if local is not None:
            local.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _grade(args, p, root, assignment, everyone, trusted, setting, mode, local):
    """main's work, once the local workers are starting."""
    if trusted:  # on this machine, a worker's own check; for a cluster, this process's
        if local is not None:
            broken = local.preflight()
        else:
            from .verdicts import preflight
            broken = preflight(setting)
        if broken:  # the grader's own failure: no learner may be scored for it
            print(f"error: the trusted grader cannot run, so nothing was graded: {broken}", file=sys.stderr)
            return 2
        if local is not None:
            from .cgroup import describe
            print(f"bounds: {describe()}")
    if args.scores_only:
        todo = everyone
        pack = jobs.make_pack(root, assignment, "scores", setting, course.points(root, assignment), trusted=True)
    else:  # make sure the assignment exists in the gradebook, and its notebooks with it
        from nbgrader.api import Gradebook
        jobs.alembic_on_path()  # a new gradebook asks `alembic` for its version
        with Gradebook(course.gradebook_url(root)) as gb:
            recorded = len(gb.update_or_create_assignment(assignment).notebooks)
        if not recorded:  # autograde would fail for every learner, none of them at fault
            print(f"error: the gradebook ({course.gradebook_file(root) or 'the database of CourseDirectory.db_url'}) "
                  f"records no notebook of {assignment}, so nothing was graded: run `nbgrader generate_assignment "
                  f"{assignment}` in {root} first (it records the notebooks and their graded cells), then grade "
                  "again", file=sys.stderr)
            return 2
        graded = in_gradebook(root, assignment)
        # a run stopped while it recorded a learner (killed) left a marker saying GRADING
        forget(root, [s for s in everyone if marker(root, s, assignment).exists()
                      and marker(root, s, assignment).read_text() == GRADING], assignment)
        todo = everyone if args.force else [s for s in everyone if not up_to_date(root, s, assignment, graded)]
        if len(todo) < len(everyone):
            print(f"{len(everyone) - len(todo)} of {len(everyone)} learners graded already, their submissions "
                  "unchanged (--force grades them again)")
        if not todo:
            print_table(root, assignment, {s: {"mode": "full"} for s in everyone}, everyone)
            return 0
        pack = jobs.make_pack(root, assignment, "full", setting, trusted=trusted)
        extensions = submission_extensions(root, assignment)
    results, failed, prints, left, workers = {}, {}, {}, {}, None
    try:
        try:
            workers = ClusterWorkers(args.cluster) if args.cluster else local
        except SchedulerGone as e:
            print(f"error: {e}; nothing was graded", file=sys.stderr)
            return 3
        running = workers.size if args.cluster else max(1, min(args.jobs, usable_cores()))
        estimate = SECONDS_TO_START + math.ceil(len(todo) / running) * SECONDS_PER_LEARNER[mode]
        with Progress(total=len(todo), unit="learner", file=sys.stdout, estimate=estimate, trust_after=running) as bar:
            # jobs are read and sent a few ahead of the workers, not the whole class at once
            futures, queue, pending = {}, list(todo), set()

            def top_up():
                window = max(4, 2 * workers.capacity())  # a cluster may grow (or shrink) meanwhile
                while queue and len(pending) < window:
                    s = queue.pop(0)
                    if mode == "full":
                        prints[s] = fingerprint(root, s, assignment)  # what is graded: as it is now
                    learner = jobs.make_learner(root, assignment, s, extensions.get(s) if mode == "full" else None)
                    left[s] = learner["left"]
                    f = workers.submit(pack, learner)
                    futures[f] = s
                    pending.add(f)
            top_up()
            gb = None
            if mode == "full":
                import warnings
                from nbgrader.api import Gradebook
                from sqlalchemy.exc import SAWarning
                warnings.simplefilter("ignore", SAWarning)  # nbgrader's, for each notebook not submitted
                gb = Gradebook(course.gradebook_url(root))
            try:
                while pending:
                    finished, still = workers.wait(pending, timeout=1)
                    pending.intersection_update(still)
                    for f in finished:
                        s = futures[f]
                        try:
                            result = f.result()
                        except CancelledError:  # not by us: the cluster dropped the job
                            raise SchedulerGone(f"lost the Dask scheduler at {args.cluster} (it dropped the jobs)")
                        except Exception as e:  # the worker, or the job on it, failed: not the learner
                            failed[s] = f"{type(e).__name__}: {e}"
                        else:
                            if not result["ok"]:
                                failed[s] = result["error"].strip()
                            elif mode == "full":
                                m = marker(root, s, assignment)
                                m.parent.mkdir(parents=True, exist_ok=True)
                                m.write_text(GRADING)  # until the learner is recorded whole
                                jobs.record(gb, root, assignment, result)
                                m.write_text(prints[s])
                                results[s] = result
                            else:
                                results[s] = result
                        bar.update()
                    top_up()
                    bar.refresh()  # the elapsed time and the ETA move between learners too
            finally:
                if gb is not None:
                    gb.close()
        workers.close()
    except (KeyboardInterrupt, SchedulerGone) as e:
        if workers is not None:
            workers.stop()
        done = [s for s in todo if s in results]
        unfinished = [s for s in todo if s not in done]
        if not args.scores_only:  # a learner being recorded when it stopped
            forget(root, [s for s in unfinished if marker(root, s, assignment).exists()
                          and marker(root, s, assignment).read_text() == GRADING], assignment)
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
        print(f"\n{why}: graded {len(done)} of {len(todo)} learners" + (f" ({neutral.listing(done)})" if done else "")
              + f"; not graded: {neutral.listing(unfinished)}."
              + (" No CSV written." if args.scores_only else
                 " Nothing of theirs was recorded: run the same command again to grade them."))
        return 130 if isinstance(e, KeyboardInterrupt) else 3
    print_left_out({s: left[s] for s in todo if s in results and left.get(s)})
    if not args.scores_only:
        for s in failed:
            print(f"--- the grader could not grade {neutral.text(s)} (not the learner's fault; nothing recorded):\n"
                  f"{neutral.text(failed[s], newlines=True)}")
        print_table(root, assignment, results, everyone)
        print(f"graded {len(todo) - len(failed)} of {len(todo)} learners" +
              (f"; the grader failed for: {neutral.listing(failed)}" if failed else ""))
        return 1 if failed else 0
    write_scores(args.csv, [results[s]["rows"] for s in todo if s in results])
    for s in failed:
        print(f"--- could not score {neutral.text(s)} (the grader's failure, not the learner's; no row written): "
              f"{neutral.text(failed[s], newlines=True)}")
    print_table(root, assignment, results, everyone)
    print(f"wrote {args.csv}: {len(todo) - len(failed)} learners, one row per graded item and a total per learner")
    return 1 if failed else 0


def print_left_out(left, most=5):
    """What was left out of each learner's folder ({student: [(relative path, why)]}), and why:
    the learner was graded on the rest (in full mode their graded notebooks say so too)."""
    for s, items in sorted(left.items()):
        lines = [f"  `{tree.shown(rel)}` {why}" for rel, why in items[:most]]
        more = f"\n  ... and {len(items) - most} more" if len(items) > most else ""
        print(f"--- left out of {s}'s submission (graded on the rest):\n" + "\n".join(lines) + more)


def submission_extensions(root, assignment):
    """{student: extension} of the learners the gradebook gives more time (late penalties)."""
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(course.gradebook_url(root)) as gb:
        try:
            return {s.student_id: s.extension for s in gb.assignment_submissions(assignment) if s.extension}
        except MissingEntry:
            return {}


TABLE_ROWS = 40  # the end-of-run table is short: the rest is in the gradebook or the CSV


def print_table(root, assignment, results, everyone):
    """The end of every run: learner, total, and the score of each exercise, for the learners
    this run graded (full mode: from the gradebook, the total less the late penalty, as
    `nbgrader export` has it, and the penalty after the row; scores-only: from the rows). Ids
    are whole and inert (neutral.text); `-` where the learner did not submit the notebook."""
    names = {ex.notebook[:-6]: key for key, ex in EXERCISES.items()}
    table, late, flags = {}, {}, {}
    if results and next(iter(results.values()))["mode"] == "scores":
        for s, r in results.items():
            for row in r["rows"]:
                got, most = table.setdefault(s, {}).get(row[1], (0.0, 0.0))
                table[s][row[1]] = (got + row[3], most + row[4])
    elif course.has_gradebook(root):  # the figures of `nbgrader export` (export.standing)
        from nbgrader.api import Gradebook

        from .export import standing
        with Gradebook(course.gradebook_url(root)) as gb:
            book = {s.id: standing(gb, assignment, s.id) for s in gb.students if s.id in results}
        table = {s: {names.get(nb, nb): v for nb, v in book[s]["exercises"].items()} for s in book}
        late = {s: book[s]["penalty"] for s in book if book[s]["penalty"]}
        flags = {s: _timestamp_flag(root, s, assignment) for s in book}  # nbgrader's reading of the date
    if not table:
        return
    handed_in = course.submitted(root, assignment)
    columns = sorted({c for row in table.values() for c in row})
    shown = {s: neutral.text(s) for s in sorted(table)[:TABLE_ROWS]}
    width = max(len("learner"), *map(len, shown.values())) + 2
    head = f"{'learner':{width}s}{'total':>12s}" + "".join(f"{neutral.text(c):>10s}" for c in columns)
    notebook = {c: EXERCISES[c].notebook[:-6] if c in EXERCISES else c for c in columns}
    lines = [head, "-" * len(head)]
    for s, name in shown.items():
        row = table[s]
        total, most = sum(v for v, _ in row.values()) - late.get(s, 0.0), sum(m for _, m in row.values())
        lines.append(f"{name:{width}s}{max(0.0, total):>7g} / {most:<3g}"
                     + "".join(f"{row[c][0]:>10g}" if c in row and notebook[c] in handed_in.get(s, ())
                               else f"{'-':>10s}" for c in columns)
                     + (f"   late: -{late[s]:g}" if s in late else "") + flags.get(s, ""))
    if len(table) > TABLE_ROWS:
        lines.append(f"... and {len(table) - TABLE_ROWS} more learners")
    print("\n".join(lines))


def _timestamp_flag(root, student, assignment):
    """'   timestamp.txt ...' where a learner's timestamp.txt is there but not a date (nbgrader
    then counts the submission as on time), else ''."""
    from .folder import timestamp_of
    _, problem = timestamp_of(Path(root) / "submitted" / student / assignment)
    return f"   {problem.replace('`', '')}" if problem else ""


SCORE_FIELDS = ["student", "exercise", "item", "score", "points", "status", "mistake", "verdict"]


def write_scores(path, per_learner):
    """The scores CSV: one row per learner and graded item, then the learner's total; every
    text cell inert (neutral.cell)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SCORE_FIELDS)
        for rows in per_learner:
            w.writerows(neutral.row(r) for r in rows)
            if rows:
                w.writerow(neutral.row([rows[0][0], "all", "total", sum(r[3] for r in rows),
                                        sum(r[4] for r in rows), "", "", ""]))


if __name__ == "__main__":
    exit_without_teardown(main())
