"""The learner's JupyterLab, in a real browser (headless Chromium driven by Selenium).

`make lab` itself runs, on a free loopback port, with a token, its notebook folder and its
Jupyter configuration in a temporary folder (the repository's files are never touched). The
test checks what a learner sees (Validate, and none of nbgrader's instructor tools, no news
notification), then, as a learner would, opens Exercise 2, runs all cells, types a correct and
then a wrong `dlogits`, reads the check rows and presses nbgrader's Validate button; last, that
the server's log holds no warning. Screenshots of each step, the server's log and the measured
width of the check rows go to build/browser-artifacts/.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: `apt-get install chromium
chromium-driver`; .ci/run installs them). Without them the test is skipped, except in CI
(CI=true), where it fails.
"""
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RELEASE = ROOT / "release" / "backprop_ninja"
ARTIFACTS = ROOT / "build" / "browser-artifacts"
NOTEBOOK = "ex2_cross_entropy.ipynb"
VIEWPORT = (1366, 768)  # a common laptop screen

CORRECT = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n"
WRONG = "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1"  # forgets the mean's 1/n

SERVER_WAIT = 90   # s: JupyterLab answering its REST API
RUN_WAIT = 120     # s: Run All imports torch and builds the data splits (~5-10 s here)
VALIDATE_WAIT = 150  # s: nbgrader validate runs the whole notebook in a fresh kernel


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing_or_fail(reason):
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI; .ci/run installs it)")
    pytest.skip(reason)


# Every process this test starts (server, kernels, chromedriver, chromium) inherits this
# variable, so the teardown can find and end any of them that outlive their parent.
MARK_VAR = "BACKPROP_NINJA_BROWSER_TEST"


def marked_pids(mark):
    """Pids of live processes whose environment carries MARK_VAR=mark (Linux /proc)."""
    needle = f"{MARK_VAR}={mark}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours
                pass
    return pids


def end_marked_processes(mark, proc=None):
    """Stop the server's process group (SIGTERM: it shuts its kernels down), then SIGKILL
    whatever carries the mark and is still alive."""
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked_pids(mark)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while marked_pids(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.iterdir():
        if old.is_file():
            old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="module")
def mark():
    return secrets.token_hex(8)


@pytest.fixture(scope="module")
def jupyterlab(artifacts, mark):
    """(base url, token, notebook folder) of the JupyterLab of `make lab`, in a temporary folder."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing_or_fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: "
                        "apt-get install chromium chromium-driver")
    if not shutil.which("make"):
        missing_or_fail("make is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="backprop-ninja-lab-"))
    notebooks = tmp / "backprop_ninja"
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "BACKPROP_NINJA_TRUSTED",
                        "JUPYTER_PORT", "JUPYTER_CONFIG_DIR", "MAKEFLAGS", "MAKELEVEL")}
    env.update({
        MARK_VAR: mark,
        "JUPYTER_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "IPYTHONDIR": str(tmp / "ipython"),
    })
    venv = Path(sys.prefix)  # the Python running the tests, as make's VENV (.venv in CI)
    log = open(artifacts / "jupyterlab.log", "w")
    proc = None
    try:
        url = None
        for _attempt in range(3):  # a free port may be taken between the probe and the bind
            port = free_port()
            cmd = ["make", "-s", "-o", f"{venv}/installed", "lab", f"VENV={venv}",
                   f"LAB_DIR={notebooks}", f"LAB_CONFIG={tmp / 'config'}", f"LAB_PORT={port}",
                   "LAB_ARGS=--no-browser --ServerApp.port_retries=0"]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.monotonic() + SERVER_WAIT
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5) as r:
                        if r.status == 200:
                            url = f"http://127.0.0.1:{port}"
                            break
                except OSError:
                    time.sleep(0.5)
            if url or proc.poll() is None:
                break  # up, or alive but too slow: no point in another port
        if not url:
            pytest.fail(f"JupyterLab did not answer within {SERVER_WAIT} s; "
                        f"see {artifacts / 'jupyterlab.log'}")
        yield url, token, notebooks
    finally:
        end_marked_processes(mark, proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(jupyterlab, mark):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        missing_or_fail(f"selenium is not installed ({e}): pip install -e .")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="backprop-ninja-chromium-")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", f"--user-data-dir={profile}"]:
        opts.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER),
                      env={**os.environ, MARK_VAR: mark, "SE_OFFLINE": "true"})
    driver = None
    offline = pytest.MonkeyPatch()
    # The driver's path is given, so selenium-manager has nothing to do; never let it download.
    offline.setenv("SE_OFFLINE", "true")
    try:
        driver = webdriver.Chrome(service=service, options=opts)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        end_marked_processes(mark)
        offline.undo()
        shutil.rmtree(profile, ignore_errors=True)


class Notebook:
    """What a learner sees of one open notebook in JupyterLab, and what they do to it."""
    CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"

    def __init__(self, driver, artifacts):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait
        self.d, self.artifacts = driver, artifacts
        self.wait = lambda timeout, what: WebDriverWait(
            driver, timeout, poll_frequency=0.25,
            ignored_exceptions=[StaleElementReferenceException]).until(
                lambda _: not self.kernel_asked() and what(), message=f"waited {timeout} s")

    def kernel_asked(self):
        """True after answering JupyterLab's "Select Kernel" dialog with the preferred kernel, as a
        learner does: JupyterLab asks when it restores a notebook before it has found the
        notebook's session (a busy machine); the kernel it then starts runs the notebook as well."""
        return self.js("""
            const d = [...document.querySelectorAll('.jp-Dialog')].find(x => x.textContent.includes('Select Kernel'));
            const ok = d && d.querySelector('.jp-Dialog-button.jp-mod-accept');
            if (ok) { ok.click(); return true; }
            return false;""")

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def cells(self):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, self.CELLS)

    def sources(self):
        """Each cell's source, as the editor shows it (markdown: its rendered text)."""
        return self.js("""
            return [...document.querySelectorAll(arguments[0])].map(c => {
                const lines = c.querySelectorAll('.jp-InputArea-editor .cm-line');
                if (lines.length) return [...lines].map(l => l.textContent).join('\\n');
                return c.querySelector('.jp-InputArea')?.textContent || '';
            });""", self.CELLS)

    def index(self, text):
        found = [i for i, s in enumerate(self.sources()) if text in s]
        assert found, f"no cell contains {text!r}"
        return found[0]

    def prompts(self):
        """The execution prompt of each cell: '' (markdown or never run), ' ', '*' or a number."""
        return self.js("""
            return [...document.querySelectorAll(arguments[0])].map(c => {
                const p = c.querySelector('.jp-InputPrompt');
                return p ? p.textContent.replace(/[\\[\\]:]/g, '').trim() : '';
            });""", self.CELLS)

    def output(self, i):
        return self.js("const c = document.querySelectorAll(arguments[0])[arguments[1]];"
                       "return c.querySelector('.jp-OutputArea')?.textContent || '';", self.CELLS, i)

    def errors(self):
        """Error and stderr outputs, and any output mentioning a Traceback."""
        return self.js("""
            const outs = [...document.querySelectorAll(arguments[0] + ' .jp-OutputArea-output')];
            return outs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr'
                                    || o.textContent.includes('Traceback'))
                       .map(o => o.textContent.slice(0, 2000));""", self.CELLS)

    def kernel_idle(self):
        return self.js("return document.querySelector("
                       "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator')"
                       "?.dataset.status") == "idle"

    def counter(self):
        return max([int(p) for p in self.prompts() if p.isdigit()] or [0])

    def wait_ran(self, first, last, after, timeout=RUN_WAIT):
        """Wait until every code cell from `first` to `last` ran after execution count
        `after` and the kernel is idle; fail at once on an error output."""
        def done():
            errors = self.errors()
            assert not errors, f"error output in the notebook: {errors}"
            ps = self.prompts()[first:last + 1]
            ran = [p for p in ps if p]
            return (ran and all(p.isdigit() and int(p) > after for p in ran)
                    and self.kernel_idle())
        self.wait(timeout, done)

    def menu(self, top, command):
        """Click a menu of the menu bar, then one of its items (by its command id)."""
        from selenium.webdriver.common.by import By
        bar = [m for m in self.d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
               if m.text.strip() == top]
        assert bar, f"no {top!r} menu"
        bar[0].click()
        item = f'.lm-Menu .lm-Menu-item[data-command="{command}"]'
        self.wait(10, lambda: self.d.find_elements(By.CSS_SELECTOR, item))
        self.d.find_element(By.CSS_SELECTOR, item).click()

    def select(self, i):
        """Select cell i in command mode, as a click in its prompt area does."""
        from selenium.webdriver.common.by import By
        cell = self.cells()[i]
        self.show(cell)
        cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()
        self.wait(10, lambda: "jp-mod-selected" in self.cells()[i].get_attribute("class"))

    def type_into(self, i, text):
        """Replace cell i's source by typing `text`, as a learner would, and leave edit mode."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        cell = self.cells()[i]
        self.show(cell)
        editor = cell.find_element(By.CSS_SELECTOR, ".cm-content")
        editor.click()
        self.wait(10, lambda: "jp-mod-editMode" in self.d.find_element(
            By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").get_attribute("class"))
        editor.send_keys(Keys.CONTROL, "a")
        editor.send_keys(Keys.DELETE)
        for line_no, line in enumerate(text.split("\n")):
            if line_no:
                editor.send_keys(Keys.ENTER)
                editor.send_keys(Keys.HOME)  # undo any auto-indent
            editor.send_keys(line)
        editor.send_keys(Keys.ESCAPE)
        got = self.sources()[i]
        assert got == text, f"the answer cell shows {got!r}, not what was typed"

    def show(self, element, block="center"):
        self.js(f"arguments[0].scrollIntoView({{block: '{block}'}});", element)
        time.sleep(0.3)

    def screenshot(self, name, element=None, block="center"):
        if element is not None:
            self.show(element, block)
        time.sleep(0.5)  # let the scroll and any rendering settle
        self.d.save_screenshot(str(self.artifacts / name))

    def check_row(self, i, name):
        """The check row of gradient `name` in the output of cell i."""
        rows = [line for line in self.output(i).splitlines() if line.split("|")[0].strip() == name]
        assert rows, f"no check row for {name!r} in: {self.output(i)!r}"
        return rows[0]

    def row_width(self, i):
        """(widest line's width in px, as rendered unwrapped; the output area's width in px)."""
        return self.js("""
            const c = document.querySelectorAll(arguments[0])[arguments[1]];
            const pre = c.querySelector('.jp-OutputArea-output pre');
            const probe = document.createElement('span');
            probe.style.cssText = 'position:absolute;visibility:hidden;white-space:pre;';
            probe.style.font = getComputedStyle(pre).font;
            document.body.appendChild(probe);
            let widest = 0;
            for (const line of pre.textContent.split('\\n')) {
                probe.textContent = line;
                widest = Math.max(widest, probe.getBoundingClientRect().width);
            }
            probe.remove();
            const style = getComputedStyle(pre);
            const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return [widest, room, pre.scrollWidth > pre.clientWidth, style.whiteSpace];
            """, self.CELLS, i)


def test_the_learner_sees_validate_and_no_instructor_tools(jupyterlab, browser, artifacts):
    """Does a learner's JupyterLab show nbgrader's Validate button, and none of its instructor
    tools (no Nbgrader menu with Formgrader or Create Assignment, no Create Assignment sidebar),
    and no "Jupyter news" notification over the notebook?"""
    from selenium.webdriver.common.by import By

    url, token, notebooks = jupyterlab
    d = browser
    nb = Notebook(d, artifacts)
    seen = {}
    try:
        d.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        nb.wait(90, lambda: nb.cells() and nb.kernel_idle())
        time.sleep(3)  # JupyterLab asks about the news once it has restored its layout
        seen["menus"] = [m.text.strip() for m in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")]
        seen["side_tabs"] = [t.get_attribute("title") or t.text for t in d.find_elements(
            By.CSS_SELECTOR, ".jp-SideBar .lm-TabBar-tab")]
        seen["toolbar"] = [b.text for b in d.find_elements(
            By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-item")]
        seen["notifications"] = [t.text for t in d.find_elements(By.CSS_SELECTOR, ".Toastify__toast")]
        nb.screenshot("0-what-the-learner-sees.png")
        assert "Run" in seen["menus"] and "Nbgrader" not in seen["menus"], seen["menus"]
        assert not any("Assignment" in t or "nbgrader" in t.lower() for t in seen["side_tabs"]), seen["side_tabs"]
        assert not d.find_elements(By.ID, "nbgrader-create_assignemnt"), "the Create Assignment sidebar"
        assert d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button")
        assert any("Validate" in t for t in seen["toolbar"]), seen["toolbar"]
        assert not seen["notifications"], seen["notifications"]
        page = d.find_element(By.CSS_SELECTOR, "body").text
        for tool in ["Formgrader", "Create Assignment", "Jupyter news"]:
            assert tool not in page, tool
    finally:
        (artifacts / "what-the-learner-sees.json").write_text(json.dumps(seen, indent=2) + "\n")


def test_a_learner_works_through_exercise_2_in_jupyterlab(jupyterlab, browser, artifacts):
    """Run All on the stub reports the missing gradient; a correct dlogits checks True and draws
    its heatmap; a wrong one checks False; Validate answers with nbgrader's verdict."""
    from selenium.webdriver.common.by import By

    url, token, notebooks = jupyterlab
    d = browser
    nb = Notebook(d, artifacts)
    n_cells = len(nbformat.read(notebooks / NOTEBOOK, as_version=4).cells)
    layout = {}
    try:
        d.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        nb.wait(90, lambda: len(nb.cells()) == n_cells and nb.kernel_idle())
        answer, check = nb.index("# YOUR CODE HERE"), nb.index('report(["logits"]')
        heatmap = nb.index("plt.imshow")
        last = n_cells - 1

        # a. Run > Run All Cells: the check reports the missing gradient, no traceback.
        nb.menu("Run", "runmenu:run-all")
        nb.wait_ran(0, last, after=0)
        out = nb.output(check)
        assert "dlogits is not defined yet" in out, out
        assert "0/1 gradients match" in out, out
        assert not nb.errors()
        assert "Traceback" not in d.find_element(By.CSS_SELECTOR, "body").text
        nb.screenshot("1-run-all.png", nb.cells()[check])

        # b. A correct answer, then Run > Run Selected Cell and All Below: approximate True.
        nb.type_into(answer, CORRECT)
        nb.select(answer)
        before = nb.counter()
        nb.menu("Run", "notebook:run-all-below")
        nb.wait_ran(answer, last, after=before)
        row = nb.check_row(check, "logits")
        assert "approximate: True" in row, row
        assert "1/1 gradients match" in nb.output(check)
        widest, room, scrolls, white_space = nb.row_width(check)
        layout["check_rows"] = dict(widest_px=round(widest), output_width_px=round(room),
                                    scrolls=scrolls, white_space=white_space,
                                    viewport=d.execute_script(
                                        "return [window.innerWidth, window.innerHeight]"),
                                    row=row)
        assert widest <= room, (f"a check row is {widest:.0f} px wide, the output area "
                                f"{room:.0f} px: it wraps at {VIEWPORT[0]}x{VIEWPORT[1]}")
        nb.screenshot("2-correct-answer.png", nb.cells()[check])
        # The heatmap: its image has loaded and has a size.
        img = nb.cells()[heatmap].find_element(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        nb.wait(30, lambda: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img))
        size = d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
        assert size[0] > 200 and size[1] > 200, size
        assert "row sums" in nb.output(heatmap)
        layout["heatmap"] = dict(image_px=size, notebook_view_height_px=d.execute_script(
            "return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
            ".jp-WindowedPanel-outer').clientHeight"))
        nb.screenshot("2b-heatmap.png", img, block="start")  # as the laptop screen shows it
        src = img.get_attribute("src")  # and the whole plot, as the kernel sent it
        if src.startswith("data:image/png;base64,"):
            (artifacts / "2c-heatmap-plot.png").write_bytes(base64.b64decode(src.split(",", 1)[1]))

        # c. A wrong answer (no 1/n): the check row says approximate False.
        nb.type_into(answer, WRONG)
        nb.select(answer)
        before = nb.counter()
        nb.menu("Run", "notebook:run-all-below")
        nb.wait_ran(answer, last, after=before)
        row = nb.check_row(check, "logits")
        assert "approximate: False" in row, row
        assert "0/1 gradients match" in nb.output(check)
        assert "off by a constant factor of n" in nb.output(check), "the check names the mistake"
        nb.screenshot("3-wrong-answer.png", nb.cells()[check])

        # d. nbgrader's Validate button: its verdict dialog, then closed.
        button = d.find_element(By.CSS_SELECTOR,
                                ".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button")
        assert "Validate" in button.text
        button.click()
        nb.wait(VALIDATE_WAIT, lambda: d.find_elements(By.CSS_SELECTOR, ".jp-Dialog"))
        dialog = d.find_element(By.CSS_SELECTOR, ".jp-Dialog")
        verdict = dialog.text
        layout["validate_dialog"] = verdict
        # the wrong answer is still in place: Validate fails on dlogits, in one line with the mistake
        said = " ".join(verdict.split())  # (Validate's lines are wrapped to fit nbgrader's width)
        assert "fail" in verdict.lower() and "dlogits: WRONG (0/4):" in said and \
            "off by a constant factor of n" in said, verdict
        assert "Traceback" not in verdict, verdict
        nb.screenshot("4-validate.png")
        dialog.find_elements(By.CSS_SELECTOR, ".jp-Dialog-footer button")[-1].click()
        nb.wait(15, lambda: not d.find_elements(By.CSS_SELECTOR, ".jp-Dialog"))
    except BaseException:
        try:
            d.save_screenshot(str(artifacts / "failure.png"))
        except Exception:
            pass
        raise
    finally:
        (artifacts / "layout.json").write_text(json.dumps(layout, indent=2) + "\n")


def test_the_servers_log_has_no_warning(jupyterlab, artifacts):
    """After the learner's session (Run All, Validate), does the log of `make lab` hold no
    warning: no missing nbgrader_config.py, no unencrypted kernel, no instructor extension?"""
    log = (artifacts / "jupyterlab.log").read_text()
    assert "Validating" in log, "Validate ran (the test above)"
    assert "No nbgrader_config.py" not in log
    assert "without encryption" not in log
    assert "formgrader" not in log and "course_list" not in log and "assignment_list" not in log
    # nbgrader's and the kernel's warnings (JupyterLab's own [W ...] lines, such as "Notebook
    # ... is not trusted" for a notebook never run here, are its usual talk)
    assert not [line for line in log.splitlines() if "WARNING" in line], log


def test_make_lab_serves_a_copy_of_the_release_on_loopback_only():
    """`make lab` (dry run): JupyterLab bound to 127.0.0.1, in a working copy of the release,
    with the learner's Jupyter configuration of lab/."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "jupyter lab" in dry.stdout or "jupyterlab" in dry.stdout
    assert "--ip=127.0.0.1" in dry.stdout
    assert "release/backprop_ninja" in dry.stdout
    assert "cp -R lab/. build/lab/config/" in dry.stdout
    assert f"JUPYTER_CONFIG_DIR={ROOT / 'build' / 'lab' / 'config'}" in dry.stdout


def test_the_learners_configuration_turns_off_the_instructor_tools():
    """Does lab/ keep Validate and turn off (and lock) every instructor tool of nbgrader, on
    the server and in JupyterLab, and the news?"""
    server = json.loads((ROOT / "lab" / "jupyter_server_config.json").read_text())
    extensions = server["ServerApp"]["jpserver_extensions"]
    assert extensions == {"nbgrader.server_extensions.formgrader": False,
                          "nbgrader.server_extensions.course_list": False,
                          "nbgrader.server_extensions.assignment_list": False,
                          "nbgrader.server_extensions.validate_assignment": True}
    page = json.loads((ROOT / "lab" / "labconfig" / "page_config.json").read_text())
    off = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
           "@jupyter/nbgrader:menu", "@jupyterlab/apputils-extension:announcements"}
    assert off <= set(page["disabledExtensions"]) and off <= set(page["lockedExtensions"])
    assert "@jupyter/nbgrader:validate-assignment" not in page["disabledExtensions"]
