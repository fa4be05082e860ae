"""What reaches the instructor's files, terminal and browser: a class whose ids are a formula, an
escape sequence, a bidi override and two e-mail addresses alike in their first 23 characters,
graded by the class runner (full and --scores-only), reported, exported by `nbgrader export`
with the course's configuration; and the feedback page of a learner whose markdown, HTML and
outputs show images from a remote host, opened in headless Chromium with a local HTTP server
standing in for that host."""
import copy
import csv
import html as html_lib
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder.grader import course, examples, grade, report
from autograder.grader.course import ASSIGNMENT
from autograder.exercises import EXERCISES
from conftest import free_port, headless_chromium, loopback_listener

EX1, EX2 = EXERCISES["ex1"].notebook, EXERCISES["ex2"].notebook
FORMULA = '=HYPERLINK("x.example","y")'
ESCAPE = "\x1b]0;pwned\x07\x1b[2J\rok\x9b31m"  # OSC title, clear screen, carriage return, C1 CSI
BIDI = "\u202eexe.txt"
LONG = ["first.last.with.a.long.name.one@university.example.edu",
        "first.last.with.a.long.name.two@university.example.edu"]
IMAGES = "images"
HOST_PORT = free_port()  # the "remote" host: a page that fetches from it asks 127.0.0.1 on this port
REMOTE = f"http://127.0.0.1:{HOST_PORT}"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")



def gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def remote_images():
    """Cells showing images from the remote host in every way a page could load them."""
    markdown = new_markdown_cell(
        f"![pixel]({REMOTE}/markdown.png)\n\n"
        f'<img src="{REMOTE}/img.png"> <img srcset="{REMOTE}/srcset.png 2x"> <img src="//127.0.0.1:{HOST_PORT}/rel.png">\n\n'
        f'<video src="{REMOTE}/video.mp4" poster="{REMOTE}/poster.png"></video> <iframe src="{REMOTE}/frame"></iframe>\n\n'
        f'<link rel="stylesheet" href="{REMOTE}/style.css"> <span style="background: url({REMOTE}/css.png)">s</span>\n\n'
        f'<svg><image href="{REMOTE}/svg.png"/></svg> <style>@import url({REMOTE}/import.css);</style>')
    code = new_code_cell(
        "from IPython.display import HTML, Markdown, display\n"
        f"display(HTML('<img src=\"{REMOTE}/output.png\"><audio src=\"{REMOTE}/audio.mp3\" autoplay></audio>'))\n"
        f"display(Markdown('![out]({REMOTE}/output-markdown.png)'))\n"
        f"display({{'image/svg+xml': '<svg xmlns=\"http://www.w3.org/2000/svg\"><image href=\"{REMOTE}/svg-output.png\"/></svg>'}}, raw=True)")
    return [markdown, code]


@pytest.fixture(scope="module")
def klass(tmp_path_factory, generated_course):
    """The class graded by `python -m autograder.grade` (its stdout kept), then --scores-only,
    the report, `nbgrader export` (with names in the gradebook) and the feedback of IMAGES."""
    tmp = tmp_path_factory.mktemp("neutral")
    c = generated_course(tmp / "course")
    release, source = c / "release" / ASSIGNMENT, c / "source" / ASSIGNMENT
    read = lambda p: nbformat.read(p, as_version=4)  # noqa: E731
    right = {name: examples.solved(read(release / name), read(source / name)) for name in (EX1, EX2)}
    ex1_wrong = examples.with_mistake(right[EX1], *examples.MISTAKES["missing_keepdim"][1:4])
    ex2_wrong = examples.with_mistake(right[EX2], "ex2_dlogits", "dlogits /= n", "pass")
    shown = copy.deepcopy(right[EX2])
    i = next(i for i, cell in enumerate(shown.cells) if gid(cell) == "ex2_dlogits")
    shown.cells[i + 1:i + 1] = remote_images()
    for student, notebooks in [(FORMULA, {EX1: ex1_wrong}), (ESCAPE, {EX2: right[EX2]}), (BIDI, {EX2: ex2_wrong}),
                               (LONG[0], {EX2: right[EX2]}), (LONG[1], {EX2: ex2_wrong}), (IMAGES, {EX2: shown})]:
        dest = c / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, dest / name)
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    run = lambda *args: subprocess.run([sys.executable, "-m", "autograder.grade", "--course", str(c), *args],  # noqa: E731
                                       capture_output=True, env=env, timeout=900)
    # one worker: what is checked is what the runner writes, not how it shares the work (a
    # second worker's start, 6 CPU-seconds, would be all it adds here)
    full = run("--jobs", "1")
    scores = run("--scores-only", "--jobs", "1", "--csv", str(tmp / "scores.csv"))
    report.main(["--course", str(c), "--csv", str(tmp / "gradients.csv"), "--plot", str(tmp / "missed.png"),
                 "--mistakes-csv", str(tmp / "mistakes.csv"), "--mistakes-plot", str(tmp / "mistakes.png")])
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        gb.update_or_create_student(FORMULA, first_name="@SUM(1+1)", last_name="\x1b[31mRed\u202e", email="-2+3")
        gb.update_or_create_student(ESCAPE, first_name="+cmd", last_name="Doe, Jane", email="\tx@example.com")
    course.nbgrader(c, "export", "--to", str(tmp / "grades.csv"))
    course.nbgrader(c, "generate_feedback", ASSIGNMENT, "--force", f"--student={IMAGES}")
    return dict(root=c, tmp=tmp, full=full, scores=scores)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def assert_inert(table, path):
    """No cell is a formula (text starting with = + - @) or holds a control or bidi character."""
    assert len(table) > 1, path
    for r in table:
        for value in r:
            assert not (value[:1] and value[0] in "=+-@" and not is_number(value)), (path, value)
            assert not CONTROL.search(value) and value.isprintable(), (path, value)


@pytest.mark.parametrize("names", [["scores.csv"], ["gradients.csv", "mistakes.csv"]], ids=["runner", "report"])
def test_the_courses_csvs_hold_no_formula_and_no_control_character(klass, names):
    """Is every cell of the class runner's scores.csv and of the report's gradients.csv and
    mistakes.csv inert, with each learner still there (their id written out, a formula as text
    after a quote), and the scores numbers?"""
    assert klass["scores"].returncode == 0, klass["scores"].stdout.decode(errors="replace")
    for name in names:
        table = rows(klass["tmp"] / name)
        assert_inert(table, name)
        if name != "mistakes.csv":
            ids = {r[0] for r in table[1:]}
            assert {"'" + FORMULA, "\\u202eexe.txt", "\\x1b]0;pwned\\x07\\x1b[2J\\rok\\x9b31m", *LONG} <= ids, ids
            head = table[0]
            assert all(is_number(r[head.index("score")]) for r in table[1:])
        else:
            assert any("counts_sum_inv" in r[-1] for r in table[1:]), table


def test_nbgrader_export_with_the_courses_config_writes_an_inert_csv(klass):
    """Is `nbgrader export`'s CSV (ids and gradebook names that are formulas, escapes and bidi
    overrides, a name with a comma) inert, one column per field, the scores numbers?"""
    table = rows(klass["tmp"] / "grades.csv")
    assert_inert(table, "grades.csv")
    head = table[0]
    assert all(len(r) == len(head) for r in table)
    by_id = {r[head.index("student_id")]: dict(zip(head, r)) for r in table[1:]}
    assert by_id["'" + FORMULA]["first_name"] == "'@SUM(1+1)" and by_id["'" + FORMULA]["email"] == "'-2+3"
    assert by_id["'" + FORMULA]["last_name"] == "\\x1b[31mRed\\u202e"
    assert by_id["\\x1b]0;pwned\\x07\\x1b[2J\\rok\\x9b31m"]["last_name"] == "Doe, Jane"
    assert all(is_number(r[k]) for r in by_id.values() for k in ("total", "max_score", "late_penalty"))


def test_the_class_runners_output_holds_no_escape_or_control_character(klass):
    """Does the class runner print, in both modes, no ESC, no C0 or C1 control but the newline
    and no bidi control, with each hostile id written out as its escapes?"""
    for run in (klass["full"], klass["scores"]):
        out = run.stdout.decode("utf-8")
        assert run.returncode == 0, out + run.stderr.decode(errors="replace")
        assert not CONTROL.search(out), [m.group(0) for m in CONTROL.finditer(out)][:10]
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\rok\\x9b31m" in out and "\\u202eexe.txt" in out and FORMULA in out


def table_rows(out):
    """{id: [total, '/', most, exercise columns...]} of the class runner's score table."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("learner"))
    head = lines[start].split()
    found = {}
    for line in lines[start + 2:]:
        if line.startswith("graded ") or line.startswith("wrote "):
            break
        if len(line.split()) > 1:
            name, rest = line.split(None, 1)
            found[name] = rest.split()
    return head[2:], found


@pytest.mark.parametrize("mode", ["full", "scores"])
def test_the_score_table_shows_whole_ids_and_a_dash_for_a_notebook_not_submitted(klass, mode):
    """Does the table at the end of a run show two long e-mail ids whole (alike in their first 23
    characters), and `-`, not 0, for a notebook the learner never submitted?"""
    columns, found = table_rows(klass[mode].stdout.decode())
    assert set(LONG) <= set(found), found
    ex1, ex2 = 3 + columns.index("ex1"), 3 + columns.index("ex2")
    assert found[LONG[0]][ex1] == "-" and is_number(found[LONG[0]][ex2])
    assert found[FORMULA][ex2] == "-" and is_number(found[FORMULA][ex1])
    assert all(r[3 + columns.index(key)] == "-" for r in found.values() for key in ("ex3", "ex4"))


def test_a_negative_score_stays_a_number_and_formula_siblings_become_text(tmp_path):
    """Is a negative score written as a number, while text cells that a spreadsheet would read
    as formulas (= + - @, full-width forms, after spaces, after a tab or CR) start inert?"""
    hostile = ["=1+1", "+1", "-1", "@A1", "\uff1d1+1", "  =1", "\t=1", "\r=1", "-2+3", "a\x1b[2Jb"]
    grade.write_scores(tmp_path / "s.csv", [[(s, "ex1", "W1", -1.5, 1.0, "wrong", "", s) for s in hostile]])
    table = rows(tmp_path / "s.csv")
    assert_inert(table, "s.csv")
    assert all(r[3] in ("-1.5", "-15.0") for r in table[1:]), table
    assert {r[0] for r in table[1:-1]} == {r[7] for r in table[1:-1]}


# --- the feedback page: nothing fetched from outside ------------------------------------------

@pytest.fixture(scope="module")
def remote_host():
    """A loopback HTTP server on HOST_PORT standing in for the remote host: the paths asked."""
    with loopback_listener(HOST_PORT, 404) as asked:
        yield asked


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile"),
                           "--autoplay-policy=no-user-gesture-required") as driver:
        yield driver


def fetched(driver, asked, page):
    """The paths the remote host was asked for while the page was open."""
    before = len(asked)
    driver.get(page.as_uri())
    time.sleep(2)
    driver.get("about:blank")
    return asked[before:]


def feedback_page(klass):
    return klass["root"] / "feedback" / IMAGES / ASSIGNMENT / EX2.replace(".ipynb", ".html")


def test_the_check_sees_a_page_that_fetches_from_the_remote_host(klass, chromium, remote_host, tmp_path):
    """Is the check sound: the same notebook rendered by a bare HTMLExporter asks the host?"""
    from nbconvert.exporters import HTMLExporter
    html, _ = HTMLExporter().from_filename(str(klass["root"] / "autograded" / IMAGES / ASSIGNMENT / EX2))
    (tmp_path / "bare.html").write_text(html)
    assert fetched(chromium, remote_host, tmp_path / "bare.html")


def test_the_feedback_page_fetches_nothing_from_a_remote_host(klass, chromium, remote_host):
    """Does the feedback page of a learner whose markdown, HTML and outputs show remote images
    ask the remote host for nothing, name each image's address as text instead, and carry a
    Content-Security-Policy in its head that forbids remote fetches?"""
    from selenium.webdriver.common.by import By
    page = feedback_page(klass)
    assert fetched(chromium, remote_host, page) == []
    chromium.get(page.as_uri())
    text = chromium.find_element(By.TAG_NAME, "body").text
    for name in ("markdown.png", "img.png", "output.png", "output-markdown.png"):
        assert f"[image not loaded: {REMOTE}/{name}]" in text, name
    html = page.read_text()
    head = html[:html.index("</head>")]
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', head)
    assert policy, "the page's head has a Content-Security-Policy"
    content = html_lib.unescape(policy.group(1))
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in content.split(";") if d.strip())
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    assert "http" not in content and "*" not in content
    assert html.index(policy.group(0)) < min(html.index(t) for t in ("<style", "<script", "<link") if t in html)


def test_formgraders_policy_forbids_fetches_from_another_host():
    """Does formgrader's Content-Security-Policy let its pages fetch images, media, fonts,
    styles, requests and frames from its own server (or inline data) only, and does a script
    from another host in its view get no nonce?"""
    from autograder.grader.pages import formgrader_policy, with_nonce
    policy = formgrader_policy("N", {"abc"})
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    for name in ("img-src", "media-src", "font-src", "style-src", "connect-src", "frame-src"):
        sources = set(directives[name].split())
        assert sources <= {"'self'", "'none'", "data:", "'unsafe-inline'"}, (name, sources)
    assert "http" not in policy and "*" not in policy
    page = with_nonce('<script src="https://cdnjs.example/mathjax.js"></script><script src="/formgrader/x.js">'
                      '</script><div id="notebook"><script>x</script>', "N")
    assert page.count('nonce="N"') == 1 and '<script nonce="N" src="/formgrader/x.js">' in page
