"""End to end, with real nbgrader runs on a temporary copy of the course."""
import copy
import csv

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.grader import course, examples
from autograder.exercises import EXERCISES


EX2 = "ex2_cross_entropy.ipynb"


def gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def bad_inputs(c):
    """Exercise 2 submissions, each broken in one way, as {student: file text}."""
    good = nbformat.read(c / "submitted" / "solutions" / course.ASSIGNMENT / EX2, as_version=4)

    def edited(fn):
        nb = copy.deepcopy(good)
        fn(nb)
        return nbformat.writes(nb)

    def set_points(nb):
        next(x for x in nb.cells if gid(x) == "test_ex2_dlogits").metadata.nbgrader["points"] = 100

    def cheat(nb):  # patch the in-kernel grader and print a fake score, with a wrong answer
        next(x for x in nb.cells if gid(x) == "ex2_dlogits").source = (
            "import autograder.hidden as h\nh.grade = lambda *a: 4.0\ngrade = h.grade\n"
            "dlogits = torch.zeros_like(logits)")
    def snoop(nb):  # the learner's kernel tries to read the instructor's files and write outside
        next(x for x in nb.cells if gid(x) == "ex2_dlogits").source += f"""
for path in [{str(c / 'source' / course.ASSIGNMENT / EX2)!r}, {str(c / 'gradebook.db')!r}]:
    try:
        open(path, "rb").read(10)
        print("READ", path)
    except OSError as e:
        print("blocked", type(e).__name__)
try:
    open({str(c / 'pwned.txt')!r}, "w").write("x")
    print("WROTE")
except OSError as e:
    print("blocked", type(e).__name__)"""
    def metadata_none(nb):
        next(x for x in nb.cells if gid(x) == "setup_forward").metadata["nbgrader"] = "none"

    def extra_graded_cell(nb):  # a graded cell of the learner's own, without a grade id
        nb.cells.append(nbformat.v4.new_code_cell("100", metadata={"nbgrader": {"grade": True, "points": 100,
                                                                               "solution": False, "locked": False}}))

    def huge_attachment(nb):
        cell = nbformat.v4.new_markdown_cell("![x](attachment:x.png)")
        cell["attachments"] = {"x.png": {"image/png": "A" * 10_000_000}}
        nb.cells.append(cell)

    def relinker(nb):  # the kernel swaps its notebook for a link to the gradebook
        next(x for x in nb.cells if gid(x) == "ex2_dlogits").source += f"""
import os
for name in os.listdir("."):
    if name.endswith(".ipynb"):
        os.remove(name)
        os.symlink({str(c / 'gradebook.db')!r}, name)
open("junk.bin", "wb").write(b"x" * 1000)"""
    return {
        "submitted-nbgrader-metadata-none": edited(metadata_none),
        "submitted-extra-graded-cell": edited(extra_graded_cell),
        "submitted-huge-attachment": edited(huge_attachment),
        "submitted-kernel-relinks-its-notebook": edited(relinker),
        "submitted-snooping-kernel": edited(snoop),
        "submitted-not-json": '{"cells": [',
        "submitted-empty": "",
        "submitted-test-cell-deleted": edited(lambda nb: nb.cells.remove(next(x for x in nb.cells if gid(x) == "test_ex2_dlogits"))),
        "submitted-answer-duplicated": edited(lambda nb: nb.cells.append(copy.deepcopy(next(x for x in nb.cells if gid(x) == "ex2_dlogits")))),
        "submitted-locked-cell-changed": edited(lambda nb: setattr(next(x for x in nb.cells if gid(x) == "setup_forward"), "source", "logits = 0")),
        "submitted-points-changed": edited(set_points),
        "submitted-wrong-kernel": edited(lambda nb: nb.metadata.update(kernelspec={"name": "ir", "display_name": "R", "language": "R"})),
        "submitted-huge-outputs": edited(lambda nb: nb.cells[1].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="x" * 20_000_000))),
        "submitted-cheat-attempt": edited(cheat),
    }


# student -> Exercise 2 score it must get (4 points possible)
BAD_INPUT_SCORES = {"submitted-nbgrader-metadata-none": 4, "submitted-extra-graded-cell": 4,
                    "submitted-huge-attachment": 4, "submitted-kernel-relinks-its-notebook": 4,
                    "submitted-symlink-to-source": 0, "submitted-snooping-kernel": 4, "submitted-not-json": 0, "submitted-empty": 0, "submitted-test-cell-deleted": 4,
                    "submitted-answer-duplicated": 4, "submitted-locked-cell-changed": 4,
                    "submitted-points-changed": 4, "submitted-wrong-kernel": 4,
                    "submitted-huge-outputs": 4, "submitted-cheat-attempt": 0}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, generated_course):
    c = generated_course(tmp_path_factory.mktemp("course") / "course")
    examples.write_submissions(c)
    for student, text in bad_inputs(c).items():
        (c / "submitted" / student / course.ASSIGNMENT).mkdir(parents=True)
        (c / "submitted" / student / course.ASSIGNMENT / EX2).write_text(text)
    # a notebook that is a link to the instructor's source (collection by git, tar or rsync keeps links)
    (c / "submitted" / "submitted-symlink-to-source" / course.ASSIGNMENT).mkdir(parents=True)
    (c / "submitted" / "submitted-symlink-to-source" / course.ASSIGNMENT / EX2).symlink_to(
        c / "source" / course.ASSIGNMENT / EX2)
    # the instructor's way: the parallel pipeline (nbgrader autograde in 2 worker processes)
    from autograder.grader import grade
    assert grade.main(["--course", str(c), "--jobs", "2"]) == 0
    return c


def cell_grades(c, student):
    """{(notebook, graded cell): (score, most)} of one learner, as the gradebook holds them."""
    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        return {(nb.name, g.name): (g.score, g.max_score) for nb in
                gb.find_submission(course.ASSIGNMENT, student).notebooks for g in nb.grades}


def total(scores):
    return sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())


def test_the_instructor_solutions_score_full_marks(graded):
    got, most = total(course.scores(graded)["solutions"])
    assert most == sum(sum(ex.grads.values()) + sum(ex.extra_tests.values()) for ex in EXERCISES.values())
    assert got == most


def test_the_untouched_release_scores_zero(graded):
    assert total(course.scores(graded)["blank"])[0] == 0


@pytest.mark.parametrize("mistake", list(examples.MISTAKES))
def test_a_typical_mistake_loses_the_points_of_its_gradient(graded, mistake):
    """Is the mistaken gradient's test cell scored 0, and is nothing else in that notebook lost?"""
    ex_key, _, _, _, broken = examples.MISTAKES[mistake]
    ex = EXERCISES[ex_key]
    notebook = ex.notebook[:-len(".ipynb")]
    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(notebook, course.ASSIGNMENT, mistake)
        scores = {g.name: g.score for g in sub.grades}
        assert sub.score == sub.max_score - sum(ex.grads[k] for k in broken)
    for k in broken:
        assert scores[ex.test_id(k)] == 0


def test_feedback_and_export(graded):
    """Do generate_feedback and export run, and does the CSV hold the expected totals?"""
    course.nbgrader(graded, "generate_feedback", course.ASSIGNMENT, "--force")
    html = (graded / "feedback" / "solutions" / course.ASSIGNMENT / "ex1_atomic_graph.html").read_text()
    assert "dlogprobs: ok" in html
    course.nbgrader(graded, "export", "--to", "grades.csv")
    rows = {r["student_id"]: r for r in csv.DictReader(open(graded / "grades.csv"))}
    most = float(rows["solutions"]["max_score"])
    assert float(rows["solutions"]["total"]) == most and float(rows["blank"]["total"]) == 0
    assert float(rows["bessel_n"]["total"]) == sum(EXERCISES["ex1"].grads.values()) - 1


@pytest.mark.parametrize("student", list(BAD_INPUT_SCORES))
def test_a_bad_submission_gets_the_score_it_deserves_and_a_note(graded, student):
    """Is each broken submission graded (the class goes on), with the score it deserves and,
    where it was repaired, a note saying what was wrong?"""
    assert course.scores(graded)[student]["ex2_cross_entropy"] == (BAD_INPUT_SCORES[student], 4)
    nb = nbformat.read(graded / "autograded" / student / course.ASSIGNMENT / EX2, as_version=4)
    note = {"submitted-not-json": "not a valid notebook", "submitted-empty": "empty",
            "submitted-test-cell-deleted": "deleted: restored", "submitted-answer-duplicated": "more than once",
            "submitted-locked-cell-changed": "edited: restored", "submitted-points-changed": "points",
            "submitted-wrong-kernel": "kernel", "submitted-symlink-to-source": "symbolic link",
            "submitted-extra-graded-cell": "kept as a plain cell", "submitted-huge-attachment": "attachments",
            "submitted-nbgrader-metadata-none": "restored"}.get(student)  # outputs are always recomputed: no note
    text = nb.cells[0].source
    if note:
        assert text.startswith("**Grading note.**") and note in text, text
    else:
        assert "Grading note" not in text


def test_the_cheat_attempt_is_shown_the_trusted_verdict(graded):
    nb = nbformat.read(graded / "autograded" / "submitted-cheat-attempt" / course.ASSIGNMENT / EX2, as_version=4)
    test = next(c for c in nb.cells if gid(c) == "test_ex2_dlogits")
    assert "dlogits: WRONG" in "".join(o.get("text", "") for o in test.outputs)


def test_the_per_gradient_report(graded, tmp_path):
    """Does the class report list each gradient's score, status, named mistake and verdict, and draw
    the plots?"""
    from autograder.grader import report
    report.main(["--course", str(graded), "--csv", str(tmp_path / "g.csv"), "--plot", str(tmp_path / "m.png"),
                 "--mistakes-csv", str(tmp_path / "k.csv"), "--mistakes-plot", str(tmp_path / "k.png")])
    table = list(csv.DictReader(open(tmp_path / "g.csv")))
    row = next(r for r in table if r["student"] == "missing_1_over_n" and r["item"] == "logprobs")
    assert float(row["score"]) == 0 and "factor of n" in row["verdict"]
    assert row["status"] == "wrong" and row["mistake"] == "factor_n"
    assert (tmp_path / "m.png").stat().st_size > 1000
    named = {r["mistake"]: r for r in csv.DictReader(open(tmp_path / "k.csv"))}
    assert "ex1 dlogprobs" in named["factor_n"]["gradients"] and (tmp_path / "k.png").stat().st_size > 1000


def test_plain_nbgrader_autograde_gives_the_same_scores(graded):
    """The parallel pipeline graded the class; does `nbgrader autograde` itself, run again for a
    learner with a mistake, give each of their graded cells the same score? (A whole class,
    item by item, is compared with plain nbgrader in tests/test_cluster.py.)"""
    before = cell_grades(graded, "missing_keepdim")
    course.nbgrader(graded, "autograde", course.ASSIGNMENT, "--student", "missing_keepdim", "--force")
    assert cell_grades(graded, "missing_keepdim") == before
    assert course.scores(graded)["missing_keepdim"]["ex1_atomic_graph"] == (25, 26)  # one gradient wrong


def test_without_a_memory_cgroup_each_learner_runs_in_one_process_and_scores_the_same(graded, tmp_path, monkeypatch,
                                                                                     capsys):
    """Where no memory cgroup bounds a learner's processes together, its kernels and its replay
    run in one process each (oneprocess.py): does a learner with one wrong gradient among right
    ones keep every graded cell's score, through nbgrader autograde (the class runner's full
    mode) and through scores-only mode?"""
    students = ["missing_keepdim"]  # ex1 25 of 26, the rest full marks
    before = {s: cell_grades(graded, s) for s in students}
    cells = list(before["missing_keepdim"].values())
    assert any(v == m > 0 for v, m in cells) and any(v < m for v, m in cells)  # right cells and a wrong one
    monkeypatch.setenv("BACKPROP_NINJA_MEMORY_CGROUP", "0")
    from autograder.grader import grade
    chosen = [a for s in students for a in ("--student", s)]
    assert grade.main(["--course", str(graded), "--jobs", "2", "--force", *chosen]) == 0  # nbgrader autograde, 2 workers
    assert "runs in one process that may start no other" in capsys.readouterr().out
    assert {s: cell_grades(graded, s) for s in students} == before
    assert grade.main(["--course", str(graded), "--scores-only", "--csv", str(tmp_path / "s.csv"), *chosen]) == 0
    totals = {r["student"]: float(r["score"]) for r in csv.DictReader(open(tmp_path / "s.csv")) if r["item"] == "total"}
    assert totals == {s: sum(v for v, _ in before[s].values()) for s in students}


def test_scores_only_mode_agrees_with_nbgrader(graded, tmp_path):
    """Does `python -m autograder.grade --scores-only` give every learner the same total as
    `nbgrader autograde` put in the gradebook?"""
    from autograder.grader import grade
    assert grade.main(["--course", str(graded), "--scores-only", "--csv", str(tmp_path / "s.csv")]) == 0
    totals, summed = {}, {}
    for r in csv.DictReader(open(tmp_path / "s.csv")):
        if r["item"] == "total":  # each learner's last row
            totals[r["student"]] = float(r["score"])
        else:
            summed[r["student"]] = summed.get(r["student"], 0) + float(r["score"])
    gradebook = {s: sum(v for v, _ in nbs.values()) for s, nbs in course.scores(graded).items()}
    assert totals == summed == gradebook


def test_nothing_a_kernel_leaves_or_links_reaches_the_graders_files(graded):
    """A kernel that replaced its notebook by a link to the gradebook and left a file behind:
    is the autograded notebook a regular file, the gradebook intact, nothing of it left?"""
    folder = graded / "autograded" / "submitted-kernel-relinks-its-notebook" / course.ASSIGNMENT
    assert not (folder / EX2).is_symlink() and nbformat.read(folder / EX2, as_version=4).cells
    assert not (folder / "junk.bin").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no .cache, .ipython, .mpl"
    assert course.scores(graded)["solutions"], "the gradebook still reads"


def test_the_learners_kernel_cannot_read_the_course_or_write_outside(graded):
    """Under autograde, does the learner's kernel fail to read source/ and the gradebook, and
    to write outside its own folder?"""
    nb = nbformat.read(graded / "autograded" / "submitted-snooping-kernel" / course.ASSIGNMENT / EX2, as_version=4)
    out = "".join(o.get("text", "") for c in nb.cells if gid(c) == "ex2_dlogits" for o in c.outputs)
    assert out.count("blocked") >= 2 and "READ" not in out, out
    # a write outside the notebook's folder fails, or lands in the sandbox's throwaway /tmp
    assert not (graded / "pwned.txt").exists()


def test_grading_leaves_no_process_and_the_course_intact(graded):
    """After the class (hostile submissions included): is any sandboxed process still running,
    and are source/ and the release exactly the instructor's?"""
    from conftest import orphaned_sandboxed
    left = orphaned_sandboxed()  # (this test's own fork server has this process as its grader)
    assert not left, f"a sandboxed process outlived grading: {left}"
    for name in [ex.notebook for ex in EXERCISES.values()]:
        assert (graded / "source" / course.ASSIGNMENT / name).read_bytes() == \
            (course.ROOT / "source" / course.ASSIGNMENT / name).read_bytes()
