"""A class of hostile submissions and one honest learner, graded by `python -m autograder.grade`
(full and --scores-only) and by plain `nbgrader autograde`: each hostile learner costs only
themselves (a note, a verdict), the rest is graded, every run exits 0; a learner's time, cells
and outputs are bounded; the feedback pages of a learner who writes script into every place a
page shows, and formgrader's rendering of their notebooks, run none of it in Chromium.

One class, few nbgrader runs: grade.py full on everyone, plain nbgrader on the learners whose
hazards are nbgrader's own (folder, timestamp, surrogates, output), scores-only on everyone,
generate_feedback on two learners."""
import copy
import csv
import json
import os
import re
import socket
import stat
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_raw_cell

from autograder.grader import course, examples, grade
from autograder.grader.course import ASSIGNMENT
from autograder.exercises import EXERCISES
from conftest import free_port, grading_note as note, headless_chromium, loopback_listener

EX1, EX2, EX3, EX4 = (EXERCISES[k].notebook for k in ("ex1", "ex2", "ex3", "ex4"))
NOTEBOOK_SECONDS = 30  # the test course's budget per notebook (the course's own: execute.py)
CELL_SECONDS = 10  # and per cell (the course's: 120): the 'hang' learner's loop burns a core that long
MAX_OUTPUT = 2**18  # and its cap on one output (a notebook's: 4 of them)


def gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


BEACON_PORT = free_port()  # a script that runs in a page asks this port for an image
RUN = f"document.title+='|PWNED';(new Image()).src='http://127.0.0.1:{BEACON_PORT}/hit'"
SHORT = "document.title+='|PWNED'"  # where no '/' may appear (a file name)


def hostile_markdown():
    svg = ("<svg xmlns='http://www.w3.org/2000/svg' onload=\"" + RUN + "\"><script>" + RUN + "</script></svg>")
    import base64
    cell = new_markdown_cell(
        f"Some math that must stay: $\\frac{{1}}{{n}} \\sum_i x_i$\n\n"
        f"<img src=x onerror=\"{RUN}\"> <script>{RUN}</script> <svg onload=\"{RUN}\"></svg>\n\n"
        f"[a link](javascript:{RUN}) <a href=\"javascript:{RUN}\" id=\"jslink\">b</a> "
        f"<iframe src=\"javascript:{RUN}\"></iframe> <iframe srcdoc=\"<script>parent.{RUN}</script>\"></iframe>\n\n"
        f"<details open><summary>kept</summary><b onmouseover=\"{RUN}\">bold</b></details>\n\n"
        f"<object data=\"javascript:{RUN}\"></object><embed src=\"javascript:{RUN}\">"
        f"<style>body {{ background: url(\"javascript:{RUN}\") }}</style>\n\n"
        "![svg](attachment:a.svg)")
    cell["attachments"] = {"a.svg": {"image/svg+xml": base64.b64encode(svg.encode()).decode()}}
    return cell


HOSTILE_OUTPUTS = f"""
from IPython.display import display, HTML, Javascript, Markdown
display(HTML('<img src=x onerror="{RUN}"><script>{RUN}</script><svg onload="{RUN}"></svg>'))
display(Javascript("{RUN}"))
display(Markdown('<img src=x onerror="{RUN}"> [m](javascript:{RUN})'))
display({{"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg" onload="{RUN}"/>'}}, raw=True)
display({{"text/html": '<iframe srcdoc="<script>parent.{RUN}</script>"></iframe>'}}, raw=True)
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "x", "version_major": 2}}}}, raw=True)
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Image
fig = plt.figure(figsize=(2, 2)); plt.plot([0, 1], [1, 0]); fig.savefig("plot.png")
display(Image(filename="plot.png"), metadata={{"width": "1 onload={SHORT}"}})
"""


def with_cells(nb, after, cells):
    """nb with cells inserted after the cell whose grade id is `after`."""
    nb = copy.deepcopy(nb)
    i = next(i for i, c in enumerate(nb.cells) if gid(c) == after)
    nb.cells[i + 1:i + 1] = cells
    return nb


def write_json(nb, path):
    """The notebook as JSON with every non-ASCII character escaped (lone surrogates included,
    which nbformat.write cannot write)."""
    path.write_text(json.dumps(nb, ensure_ascii=True))


def build_class(c):
    """submitted/: 'honest' (the solutions) and hostile learners, each with a right Exercise 2."""
    release, source = c / "release" / ASSIGNMENT, c / "source" / ASSIGNMENT
    read = lambda p: nbformat.read(p, as_version=4)  # noqa: E731
    full = {name: examples.solved(read(release / name), read(source / name)) for name in (EX1, EX2, EX3, EX4)}
    ex2 = full[EX2]

    def folder(student):
        d = c / "submitted" / student / ASSIGNMENT
        d.mkdir(parents=True)
        return d

    d = folder("honest")
    for name, nb in full.items():
        nbformat.write(nb, d / name)

    # 'messy': a lone surrogate in a comment, a markdown cell, metadata and an output; a timestamp
    # that is not a date; the kernel's own stderr, a huge stream, 12 big HTML outputs
    d = folder("messy")
    nb = copy.deepcopy(ex2)
    answer = next(x for x in nb.cells if gid(x) == "ex2_dlogits")
    answer.source += "\n# caf\ud800"
    answer.metadata["mine"] = "\ud800"
    nb.metadata["mine"] = "\udfff"
    nb = with_cells(nb, "ex2_dlogits", [
        new_markdown_cell("caf\ud800"),
        new_code_cell('display({"text/plain": "\\ud800"}, raw=True)\nprint("x\\udfff")'),
        new_code_cell('import os\nfor _ in range(16):\n    os.write(2, b"E" * 2**20)'),
        new_code_cell('import sys\nsys.stderr.write("e" * (2 * 2**20))'),
        new_code_cell('from IPython.display import HTML, display\nfor i in range(12):\n'
                      '    display(HTML("<b>" + "x" * (2**19) + "</b>"))')])
    write_json(nb, d / EX2)
    (d / "timestamp.txt").write_text(f"<svg onload={SHORT}> is not a date")

    d = folder("special-files")  # links, a FIFO, a socket, a device; some regular files
    nbformat.write(ex2, d / EX2)
    os.mkfifo(d / EX3)  # a notebook that is a FIFO
    (d / EX4).symlink_to("/proc/self/mem")  # and one that is a link
    (d / "mem").symlink_to("/proc/self/mem")
    (d / "shadow").symlink_to("/etc/shadow")
    (d / "etc").symlink_to("/etc")
    os.mkfifo(d / "pipe")
    os.mkfifo(d / "timestamp.txt")
    os.mknod(d / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    sock.close()
    (d / "notes.txt").write_text("my notes\n")
    (d / "data").mkdir()
    (d / "data" / "x.txt").write_text("regular\n")
    (d / "data" / "passwd").symlink_to("/etc/passwd")

    d = folder("many-cells")  # 20,000 cells of `pass`
    nbformat.write(with_cells(ex2, "ex2_dlogits", [new_code_cell("pass") for _ in range(20_000)]), d / EX2)

    d = folder("sleeper")  # 300 cells of sleep(0.95): 285 s unbounded
    nbformat.write(with_cells(ex2, "ex2_dlogits", [new_code_cell("import time\ntime.sleep(0.95)")
                                                   for _ in range(300)]), d / EX2)

    d = folder("hang")  # a cell that never ends
    nbformat.write(with_cells(ex2, "ex2_dlogits", [new_code_cell("while True:\n    pass")]), d / EX2)

    d = folder("crash")  # a kernel that dies
    nbformat.write(with_cells(ex2, "ex2_dlogits", [new_code_cell("import os\nos._exit(3)")]), d / EX2)

    d = folder("html")  # script in every place a page shows; a corrupt notebook and a file name quoted
    nbformat.write(with_cells(ex2, "ex2_dlogits", [
        hostile_markdown(), new_raw_cell(f"<script>{RUN}</script>", metadata={"raw_mimetype": "text/html"}),
        new_code_cell(HOSTILE_OUTPUTS)]), d / EX2)
    (d / EX1).write_text(f"<svg onload=\"{SHORT}\">")  # not JSON: the note quotes it
    (d / f"<svg onload={SHORT}>").symlink_to("/etc/passwd")  # its name is quoted too


PLAIN = ["messy", "special-files"]  # also graded by plain nbgrader
EVERYONE = ["honest", *PLAIN, "many-cells", "sleeper", "hang", "crash", "html"]


def snapshot(c):
    """{student: (scores, {notebook: autograded notebook or None})}, as the gradebook and autograded/ are now."""
    scores = course.scores(c)
    out = {}
    for s in EVERYONE:
        folder = c / "autograded" / s / ASSIGNMENT
        nbs = {name: (nbformat.read(folder / name, as_version=4) if (folder / name).is_file() else None)
               for name in (EX1, EX2, EX3, EX4)}
        out[s] = (scores.get(s), nbs)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, generated_course):
    c = generated_course(tmp_path_factory.mktemp("hostile") / "course")
    with open(c / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.SandboxedExecute.notebook_seconds = {NOTEBOOK_SECONDS}\nc.SandboxedExecute.learner_seconds = 120\n"
                f"c.SandboxedExecute.timeout = {CELL_SECONDS}\n"
                f"c.SandboxedExecute.max_output_bytes = {MAX_OUTPUT}\n"
                f"c.SandboxedExecute.max_notebook_output_bytes = {4 * MAX_OUTPUT}\n")
    build_class(c)
    runs = {}
    start = time.monotonic()
    # one worker, each learner after the other: what a hostile notebook leaves behind meets the
    # next learner's kernel on the same server
    runs["full"] = grade.main(["--course", str(c), "--jobs", "1"])
    runs["full_seconds"] = time.monotonic() - start
    runs["after_full"] = snapshot(c)
    start = time.monotonic()
    runs["plain"] = course.nbgrader(c, "autograde", ASSIGNMENT, "--force",
                                    f"--CourseDirectory.student_id_exclude={','.join(s for s in EVERYONE if s not in PLAIN)}",
                                    check=False)
    runs["plain_seconds"] = time.monotonic() - start
    runs["after_plain"] = snapshot(c)
    csv_path = c / "scores.csv"
    runs["scores"] = grade.main(["--course", str(c), "--scores-only", "--jobs", "1", "--csv", str(csv_path)])
    runs["csv"] = list(csv.DictReader(open(csv_path)))
    (c / "timings.json").write_text(json.dumps({k: runs[k] for k in ("full_seconds", "plain_seconds")}))
    return c, runs


def outputs(nb):
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_every_run_exits_0(hostile):
    c, runs = hostile
    assert runs["full"] == 0
    assert runs["plain"].returncode == 0, runs["plain"].stderr[-3000:]
    assert runs["scores"] == 0


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_each_hostile_learner_keeps_the_points_of_their_right_answer(hostile, run):
    c, runs = hostile
    for s in (EVERYONE if run == "after_full" else PLAIN):
        scores, nbs = runs[run][s]
        assert scores is not None, f"{s} was not graded"
        assert scores["ex2_cross_entropy"] == (4, 4), (s, scores)
        assert nbs[EX2] is not None, f"{s}: no autograded notebook"
    honest = runs["after_full"]["honest"][0]
    assert sum(v for v, _ in honest.values()) == sum(m for _, m in honest.values()) > 0


def test_scores_only_scores_every_learner_as_nbgrader_does(hostile):
    c, runs = hostile
    totals = {r["student"]: float(r["score"]) for r in runs["csv"] if r["item"] == "total"}
    assert set(totals) == set(EVERYONE)
    gradebook = {s: sum(v for v, _ in nbs.values()) for s, nbs in course.scores(c).items()}
    assert totals == {s: gradebook[s] for s in EVERYONE}


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_lone_surrogates_are_replaced_and_the_notebook_written(hostile, run):
    c, runs = hostile
    nb = runs[run]["messy"][1][EX2]
    assert "lone surrogates" in note(nb)
    text = (c / "autograded" / "messy" / ASSIGNMENT / EX2).read_text(encoding="utf-8")
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_a_timestamp_that_is_not_a_date_is_ignored_with_a_note(hostile, run):
    c, runs = hostile
    assert "`timestamp.txt` is not a date" in note(runs[run]["messy"][1][EX2])
    assert not (c / "autograded" / "messy" / ASSIGNMENT / "timestamp.txt").exists()


@pytest.mark.parametrize("run", ["after_full", "after_plain"])
def test_only_regular_files_of_a_submission_are_used(hostile, run):
    c, runs = hostile
    folder = c / "autograded" / "special-files" / ASSIGNMENT
    found = {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}
    assert found == {"notes.txt", "data/x.txt", EX2, EX3, EX4}
    for p in folder.rglob("*"):
        assert not p.is_symlink() and (p.is_dir() or p.is_file())
    nbs = runs[run]["special-files"][1]
    text = note(nbs[EX2])
    for name in ("mem", "shadow", "etc", "pipe", "null", "sock", "data/passwd", "timestamp.txt"):
        assert f"`{name}`" in text, (name, text)
    assert "not a regular file" in note(nbs[EX3]) and "symbolic link" in note(nbs[EX4])
    assert runs[run]["special-files"][0]["ex3_batchnorm"][0] == 0


def test_the_fingerprint_never_follows_links_or_opens_special_files(hostile):
    c, _ = hostile
    a = grade.fingerprint(c, "special-files", ASSIGNMENT)
    assert a == grade.fingerprint(c, "special-files", ASSIGNMENT)
    (c / "submitted" / "special-files" / ASSIGNMENT / "notes.txt").write_text("changed\n")
    assert grade.fingerprint(c, "special-files", ASSIGNMENT) != a


def test_the_kernels_own_stderr_and_huge_outputs_stay_bounded(hostile):
    c, runs = hostile
    plain = runs["plain"]
    assert len(plain.stdout) + len(plain.stderr) < 2**20, "the kernel's stderr reached nbgrader's output"
    size = (c / "autograded" / "messy" / ASSIGNMENT / EX2).stat().st_size
    assert size < 8 * MAX_OUTPUT, size
    assert "outputs of this cell were left out" in outputs(runs["after_plain"]["messy"][1][EX2])


def test_cells_beyond_the_cap_are_dropped_with_a_note(hostile):
    nb = hostile[1]["after_full"]["many-cells"][1][EX2]
    assert "were dropped" in note(nb) and len(nb.cells) < 400


def test_the_time_budget_binds_and_says_where_it_stopped(hostile):
    nb = hostile[1]["after_full"]["sleeper"][1][EX2]
    ran = [c for c in nb.cells if c.cell_type == "code" and "sleep" in c.source and c.execution_count]
    assert 0 < len(ran) <= NOTEBOOK_SECONDS + 2, len(ran)
    assert "the time for running this notebook" in outputs(nb)


def test_a_cell_that_never_ends_or_a_kernel_that_dies_stops_only_its_notebook(hostile):
    runs = hostile[1]["after_full"]
    assert "this cell ran out of time" in outputs(runs["hang"][1][EX2])
    assert "the kernel died" in outputs(runs["crash"][1][EX2])


# --- the pages, in Chromium ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def beacon():
    """A loopback HTTP listener on BEACON_PORT: the requests a page's script sent it."""
    with loopback_listener(BEACON_PORT, 204) as hits:
        yield hits


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def ran_script(driver, beacon, url):
    """Whether loading url ran any script of the learner's (the title's marker, a request to the
    beacon), after hovering and clicking what could carry a handler."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    before = len(beacon)
    driver.get(url)  # returns after the load event: every onload and onerror has fired by then,
    time.sleep(0.5)  # and a beacon request a script sent over loopback has arrived
    for el in driver.find_elements(By.CSS_SELECTOR, "b, img, a[id=jslink]")[:50]:
        try:
            ActionChains(driver).move_to_element(el).perform()
        except Exception:
            pass
    time.sleep(0.5)
    return "PWNED" in driver.title or len(beacon) > before


@pytest.fixture(scope="module")
def pages(hostile):
    """The feedback pages of the html and special-files learners, and formgrader's rendering of
    the html learner's autograded notebooks (formgrader's exporter, on the course's configuration)."""
    c, _ = hostile
    course.nbgrader(c, "generate_feedback", ASSIGNMENT, "--force",
                    f"--CourseDirectory.student_id_exclude={','.join(s for s in EVERYONE if s not in ('html', 'special-files', 'messy'))}")
    feedback = sorted((c / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    formgrader = []
    for name in (EX1, EX2):
        html = formgrader_html(c, c / "autograded" / "html" / ASSIGNMENT / name)
        path = c / f"formgrader-{name}.html"
        path.write_text(html)
        formgrader.append(path)
    return feedback, formgrader


def formgrader_html(c, notebook):
    """The page formgrader's SubmissionHandler writes for a notebook: its HTMLExporter, configured
    as FormgradeExtension configures it (the course's nbgrader_config.py, the formgrade template)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", path=str(c)).load_config()
    extra = Config()
    extra.HTMLExporter.template_name = "formgrade"
    extra.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.merge(extra)
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": notebook.stem, "submission_id": "x", "index": 0,
                 "total": 1, "base_url": "", "student": "html", "last_name": "", "first_name": "",
                 "notebook_path": str(notebook)}
    html, _ = HTMLExporter(config=config).from_filename(str(notebook), resources=resources)
    return html


def test_the_detector_sees_a_script_that_runs(hostile, chromium, beacon, tmp_path):
    """The check is sound: the same hostile notebook rendered by a bare HTMLExporter runs script."""
    from nbconvert.exporters import HTMLExporter
    c, _ = hostile
    html, _ = HTMLExporter().from_filename(str(c / "autograded" / "html" / ASSIGNMENT / EX2))
    (tmp_path / "bare.html").write_text(html)
    assert ran_script(chromium, beacon, (tmp_path / "bare.html").as_uri())


def test_no_learner_script_runs_in_the_feedback_or_formgraders_pages(pages, chromium, beacon):
    feedback, formgrader = pages
    assert len(feedback) >= 6, feedback
    for path in feedback + formgrader:
        assert not ran_script(chromium, beacon, path.as_uri()), path


def test_the_pages_keep_the_math_images_and_notes_as_text(pages, chromium):
    from selenium.webdriver.common.by import By
    feedback, formgrader = pages
    page = next(p for p in feedback if p.parent.parent.name == "html" and p.name == EX2.replace(".ipynb", ".html"))
    chromium.get(page.as_uri())
    text = chromium.find_element(By.TAG_NAME, "body").text
    assert "<svg onload" in text, "the quoted file name reads as text"
    assert "kept" in text and "bold" in text
    html = page.read_text()
    assert html.count('class="math"') >= 2, "the course's math and the learner's are drawn"
    assert "data:image/png;base64" in html, "the learner's plot is shown"
    view = next(p for p in formgrader if p.name.endswith(EX2 + ".html"))  # loads no MathJax either
    assert view.read_text().count('class="math"') >= 2, "formgrader's view draws the math too"
    ex1 = next(p for p in feedback if p.parent.parent.name == "html" and p.name.startswith("ex1"))
    chromium.get(ex1.as_uri())
    assert "not a valid notebook" in chromium.find_element(By.TAG_NAME, "body").text


@pytest.fixture(scope="module")
def formgrader(hostile, tmp_path_factory):
    """A Jupyter server with formgrader on the course (as the instructor runs it: from the course
    folder, on loopback, with a token): (base URL, token, {notebook: submission id} of 'html')."""
    import secrets
    import signal
    import subprocess
    import sys
    import urllib.request
    from nbgrader.api import Gradebook
    c, _ = hostile
    port, token = free_port(), secrets.token_hex(16)
    config = tmp_path_factory.mktemp("jupyter-config")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(config / "runtime"),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    log = open(tmp_path_factory.mktemp("formgrader-log") / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip=127.0.0.1",
                             f"--port={port}", f"--ServerApp.token={token}", "--ServerApp.port_retries=0",
                             f"--ServerApp.root_dir={c}", "--allow-root"],
                            cwd=c, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"the server ended: {open(log.name).read()[-2000:]}")
                time.sleep(0.5)
        with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
            ids = {name: gb.find_submission_notebook(name[:-len('.ipynb')], ASSIGNMENT, "html").id for name in (EX1, EX2)}
        yield base, token, ids
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def directive(policy, name):
    """The value of one directive of a Content-Security-Policy ('' if it has none)."""
    return next((d.strip()[len(name):] for d in policy.split(";") if d.strip().split(" ")[0] == name), "")


def test_formgraders_view_of_a_hostile_submission_runs_no_learner_script(formgrader, chromium, beacon):
    """In the real formgrader, on the instructor's origin: the page forbids inline script but
    formgrader's own (a nonce), formgrader's scripts run, the learner's do not."""
    import urllib.request
    base, token, ids = formgrader
    for name, sid in ids.items():
        url = f"{base}/formgrader/submissions/{sid}/?token={token}"
        with urllib.request.urlopen(url, timeout=60) as r:
            policy = r.headers["Content-Security-Policy"]
            page = r.read().decode()
        assert "'nonce-" in policy and "unsafe-inline" not in directive(policy, "script-src") \
            and "object-src 'none'" in policy, policy
        assert "PWNED" not in page[:re.search(r'<div[^>]*id="notebook"', page).start()]
        assert not ran_script(chromium, beacon, url), name
        assert chromium.execute_script("return typeof toggle_name + ' ' + typeof jQuery") == "function function"


def test_formgraders_other_pages_forbid_inline_script_and_show_what_they_are_given_as_text(hostile, formgrader, chromium, beacon):
    """Every page formgrader renders from its templates carries the policy (its own scripts by
    nonce, its inline handlers by hash) and escapes what it is rendered with: a student id in
    the URL that closes formgrader's script string or brings a tag runs nothing, while
    formgrader's own scripts run (the students' table is filled in, no handler of its own is
    blocked). The submissions page is read but not opened in the browser: its script asks
    formgrader for this class's timestamps. Stock formgrader blocks for good on a FIFO in a
    learner's submitted folder (the course's own code never opens one), so the special-files
    learner's FIFOs become regular files first, as a submission collected by nbgrader has."""
    import stat as stat_
    import urllib.parse
    import urllib.request
    c, _ = hostile
    for path in (c / "submitted").rglob("*"):
        if stat_.S_ISFIFO(path.lstat().st_mode):
            try:  # a reader blocked in it gets its end of file
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            path.unlink()
            path.write_text("not a notebook, not a date\n")
    base, token, _ = formgrader
    hostile = urllib.parse.quote('x";document.title="PWNED";"<img src=x onerror="document.title=1">', safe="")
    watch = ("window.__v = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__v.push(e.violatedDirective + ' ' + (e.target && e.target.outerHTML || '').slice(0, 120)));")
    chromium.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": watch})
    for path in ["manage_assignments", "manage_students", f"manage_students/{hostile}", "gradebook",
                 f"gradebook/{ASSIGNMENT}", f"manage_submissions/{ASSIGNMENT}"]:
        url = f"{base}/formgrader/{path}?token={token}"
        with urllib.request.urlopen(url, timeout=60) as r:
            policy = r.headers["Content-Security-Policy"]
            page = r.read().decode()
        assert "'nonce-" in policy and "unsafe-inline" not in directive(policy, "script-src") \
            and "object-src 'none'" in policy, (path, policy)
        assert 'document.title="PWNED"' not in page and "<img src=x" not in page, path
        if path.startswith("manage_submissions"):
            continue
        assert not ran_script(chromium, beacon, url), path
        assert chromium.execute_script("return typeof jQuery + ' ' + typeof Backbone.View") == "function function", path
        if path == "manage_students":
            for _ in range(40):
                if chromium.execute_script("return document.querySelectorAll('tbody tr').length") >= 3:
                    break
                time.sleep(0.25)
            assert chromium.execute_script("return document.querySelectorAll('tbody tr').length") >= 3, \
                "formgrader's own script lists the students"
        blocked = [v for v in chromium.execute_script("return window.__v") if "onerror" not in v]
        assert blocked == [], (path, blocked)  # only the hostile tag's handler is refused
        chromium.get("about:blank")  # no page of formgrader's keeps asking its server meanwhile
