import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

# Every process the tests start (kernels of plain nbgrader and of the class runner, Dask workers,
# sandboxes) computes on one thread unless a test or the CPU matrix sets another number: their
# tensors are small, and on cores the suite keeps busy a second thread spins for nothing (a
# tenth of the CPU of the cluster and grading tests).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # solutions.py, the notebook builders


# The slow tier: modules whose tests start kernels, sandboxes, nbgrader, a browser or a class
# run. Plain `pytest` runs the fast tier (pyproject's addopts: -m "not slow"), for everyday
# work; `make test` (and CI) runs both (-m ""). Listed longest first (their seconds in a full
# run of 2026-12-07, from --durations), and collected in this order, before the fast tier: make
# test hands whole modules to two workers in collection order (--dist loadfile
# --no-loadscope-reorder), so the last modules to start are short and neither worker waits
# long for the other at the end.
SLOW = ("test_hostile_notebooks",  # 211 s
        "test_instructor",  # 162
        "test_grading",  # 147
        "test_cluster",  # 134
        "test_hostile_class",  # 95
        "test_term",  # 89
        "test_exchange",  # 77
        "test_fork_server",  # 68
        "test_kernel_server",  # 67
        "test_hostile_replay",  # 60
        "test_learner_bounds",  # 58
        "test_neutral_output",  # 47
        "test_trusted",  # 46
        "test_lifetime",  # 44
        "test_explain",  # 36
        "test_release",  # 36
        "test_demo",  # 34
        "test_agreement",  # 29
        "test_learner_trees",  # 15
        "test_honest_idioms",  # 8
        "test_browser")  # run alone after the others (real-time waits)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW)}
    for item in items:  # (nbval's notebook cells too: they have no module, only a path)
        if Path(str(item.fspath)).stem in rank:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only contends (and changes float32 sums)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def names_in_the_user_cache():
    """The grading sandboxes read names.txt only at its per-user cache path: keep a verified copy
    there (from $BACKPROP_NINJA_NAMES in CI) and name it for the kernels nbgrader starts."""
    from autograder import data
    os.environ[data.ENV_VAR] = str(data.ensure_names())


def grading_note(nb):
    """The note repair.py puts at the top of a graded notebook ('' if it has none or there is no notebook)."""
    return nb.cells[0].source if nb is not None and nb.cells and nb.cells[0].get("id") == "grading_note" else ""


def solution_cells(exercise):
    """{answer cell id: source} of the instructor solution, as a learner would submit it."""
    from autograder.grader.examples import solution_sources
    return solution_sources(exercise)


@pytest.fixture(scope="session")
def generated_course(tmp_path_factory):
    """generated_course(dest) -> a fresh course at dest with the assignment generated (source/,
    release/, gradebook.db, nbgrader_config.py), as `course.copy_course` and
    `nbgrader generate_assignment backprop_ninja --force` make it; generated once per session
    (10 s) and copied for each test that grades a class."""
    import shutil

    from autograder.grader import course
    template = course.copy_course(tmp_path_factory.mktemp("generated") / "course")
    course.nbgrader(template, "generate_assignment", course.ASSIGNMENT, "--force")

    def make(dest):
        if os.path.exists(dest):
            shutil.rmtree(dest)
        shutil.copytree(template, dest)
        return Path(dest)
    return make


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judged_in_batches(answers, size=6):
    """{name: {gradient: Verdict}} for answers {name: (exercise, [(cell id, source)])}, each
    replayed in a fresh child as trusted_verdicts does, `size` of them as one learner's replay
    (its wall time is for all of them): one learner process per batch, not per answer."""
    from autograder import score
    from autograder.grader import replay_server
    out, names = {}, list(answers)
    for i in range(0, len(names), size):
        jobs, collectors = {}, {}
        for name in names[i:i + size]:
            ex, sources = answers[name]
            cases = score.make_cases(ex)
            jobs[name] = score.build_job(ex, score.statements(sources), cases)
            collectors[name] = score.Collector(ex, cases)
        errors = replay_server.run_many(jobs, collectors)
        out.update({name: score.score(answers[name][0], collectors[name], errors[name]) for name in jobs})
    return out


def is_kernel(process):
    """Whether a psutil.Process is a learner's kernel: started as `python -m ipykernel_launcher`,
    or forked from the kernel server or started by kernels.own (its command line is the
    course's, its name ipykernel)."""
    import psutil
    try:
        cmd = " ".join(process.cmdline())
        return "ipykernel_launcher" in cmd or ("autograder.grader.kernels" in cmd and process.name() == "ipykernel")
    except psutil.Error:
        return False


def orphaned_sandboxed():
    """Sandboxed processes (a sandbox's own user id) that no grader owns any more: their parent
    chain reaches the machine's init through sandboxed processes and bubblewrap only. A process
    of a grading run still going on here (another test session's, an instructor's) has that
    run's grader among its ancestors, and is not counted."""
    import psutil

    def sandboxed(p):
        return p.uids().real >= 200_000 or p.name() == "bwrap"
    left = []
    for p in psutil.process_iter():
        try:
            if p.uids().real < 200_000 or p.status() == psutil.STATUS_ZOMBIE:
                continue
            chain = p.parents()
            if all(q.pid == 1 or sandboxed(q) for q in chain):
                left.append(p)
        except psutil.Error:
            continue
    return left


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@contextlib.contextmanager
def loopback_listener(port, status):
    """An HTTP server on 127.0.0.1:`port` answering every GET with `status`: yields the list of
    the paths asked, as they come (a page's beacon, a stand-in for a remote host)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def headless_chromium(profile, *args):
    """Debian's Chromium under selenium, headless, offline, its profile in `profile`, with extra
    command-line `args`; skipped where it is not installed (a failure in CI)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("chromium and chromedriver are needed in CI")
        pytest.skip("chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                *args, f"--user-data-dir={profile}"]:
        opts.add_argument(arg)
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def grade_every_way(c, base, after, jobs=None, timeout=1800):
    """The class of course `c` graded by the class runner, by its --scores-only (the CSV in
    `base`) and by plain `nbgrader autograde`, each with a TMPDIR of its own in `base`:
    {run: (exit code, output, TMPDIR)}, "after_full" and "after_plain": `after(c)` once each
    has run, "csv": the rows of the scores-only CSV."""
    import csv

    from autograder.grader import course
    runner = [sys.executable, "-m", "autograder.grade", "--course", str(c)] + (["--jobs", str(jobs)] if jobs else [])
    runs = {}
    for name, cmd in [("full", runner), ("scores", runner + ["--scores-only", "--csv", str(base / "scores.csv")]),
                      ("plain", [*course.NBGRADER, "autograde", course.ASSIGNMENT, "--force"])]:
        tmp = base / f"tmp-{name}"
        tmp.mkdir()
        env = {**os.environ, **course.grading_env(), "TMPDIR": str(tmp),
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
        proc = subprocess.run(cmd, cwd=c, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
        runs[name] = (proc.returncode, proc.stdout + proc.stderr, tmp)
        if name != "scores":
            runs[f"after_{name}"] = after(c)
    scores = base / "scores.csv"
    runs["csv"] = list(csv.DictReader(open(scores, newline=""))) if scores.exists() else []
    return runs
