"""Adversarial answers against the trusted grader: replayed in the sandbox, judged outside it.
Each scenario is one answer cell of Exercise 1 or 2, with the score it must get."""
import socket
import subprocess
import sys
import threading

import pytest

from autograder import score
from autograder.grader import replay_server, sandbox
from autograder.statements import forbidden
from autograder.grader.trusted import trusted_verdicts, trusted_verdicts_many
from conftest import ROOT, solution_cells

STAGE1 = ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes", "logits"]


def ex1(**cells):
    verdicts = trusted_verdicts("ex1", list({**solution_cells('ex1'), **cells}.items()))
    return {k: v for k, v in verdicts.items() if not v.ok}


def ex2(src):
    return trusted_verdicts("ex2", [("ex2_dlogits", src)])["logits"]


def test_the_lectures_solutions_score_full_marks_in_the_sandbox():
    assert ex1() == {}


@pytest.mark.parametrize("src", [
    "dlogits = logits.grad",
    "logits.requires_grad_()\nF.cross_entropy(logits, Yb).backward()\ndlogits = logits.grad",
    "dlogits = torch.autograd.grad(F.cross_entropy(logits, Yb), logits)[0]",
    "from torch.func import grad as g\ndlogits = g(lambda l: F.cross_entropy(l, Yb))(logits)",
    "f = getattr(torch, 'auto' + 'grad')\ndlogits = f.grad(F.cross_entropy(logits, Yb), logits)[0]",
    "with torch.enable_grad():\n    x = logits.clone().requires_grad_()\n    dlogits = x",
])
def test_autograd_in_any_form_earns_nothing_and_says_why(src):
    v = ex2(src)
    assert not v.ok and v.points == 0
    assert "autograd" in v.message or "not allowed" in v.message


def test_the_static_check_ignores_comments_and_strings():
    assert forbidden("# no .grad here\nx = 'backward'\ndlogits = F.softmax(logits, 1)") == ""
    assert forbidden("def backward(Xb, Yb, parameters, cache):\n    return []") == ""


def test_patching_the_comparison_in_the_learners_process_changes_nothing():
    """Does patching torch.allclose / redefining cmp in the answer fool the trusted score?"""
    src = "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\ncmp = print\ndlogits = torch.zeros_like(logits)"
    assert not ex2(src).ok


def test_a_hanging_statement_costs_only_its_own_gradient(monkeypatch):
    monkeypatch.setitem(sandbox.LIMITS, "statement_seconds", 1)
    wrong = ex1(ex1_loss_chain=solution_cells('ex1')["ex1_loss_chain"].replace(
        "dlogprobs[range(n), Yb] = -1.0 / n", "while True:\n    pass"))
    assert list(wrong) == ["logprobs"]


@pytest.mark.parametrize("src", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise KeyboardInterrupt",
                                 "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
def test_exiting_the_interpreter_costs_only_that_answer(src):
    wrong = ex1(ex1_second_layer=src + "\n" + solution_cells('ex1')["ex1_second_layer"])
    assert sorted(wrong) == [], "the statements after the exit attempt still run"
    assert not ex2(src).ok


def test_a_memory_hog_is_stopped(monkeypatch):
    monkeypatch.setitem(sandbox.LIMITS, "memory_bytes", 3 * 2**30)
    v = ex2("x = torch.ones(2**31)\ndlogits = x")
    assert not v.ok


def test_an_answer_that_brings_its_process_down_costs_only_its_own_exercise(monkeypatch):
    """A learner's exercises are replayed by one fork server, each in a child of its own; an
    answer that brings its child down (here by its CPU time) costs its own exercise only, in
    the same run of the server."""
    monkeypatch.setitem(sandbox.LIMITS, "cpu_seconds", 3)  # the others need well under 1 s of CPU each
    monkeypatch.setitem(sandbox.LIMITS, "statement_seconds", 60)
    answers = {ex: list(solution_cells(ex).items()) for ex in ("ex1", "ex3", "ex4")}
    answers["ex2"] = [("ex2_dlogits", "while True:\n    pass\ndlogits = logits")]
    cases = {ex: score.make_cases(ex) for ex in answers}
    jobs = {ex: score.build_job(ex, score.statements(src), cases[ex]) for ex, src in answers.items()}
    errors = replay_server.run_many(jobs, {ex: score.Collector(ex, cases[ex]) for ex in answers})
    assert "CPU time" in errors["ex2"]["process"]
    assert all("process" not in errors[ex] for ex in ("ex1", "ex3", "ex4"))
    verdicts = trusted_verdicts_many(answers)
    assert not verdicts["ex2"]["logits"].ok and "CPU time" in verdicts["ex2"]["logits"].message
    assert all(v.ok for ex in ("ex1", "ex3", "ex4") for v in verdicts[ex].values())


def test_no_process_is_left_behind():
    """Is a background process started by an answer gone once grading returns?"""
    marker = "4242.123"
    ex2(f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\ndlogits = logits")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {marker}" not in ps


def test_the_learner_cannot_reach_the_network_or_the_course_files(tmp_path):
    """Can an answer connect to a server on this machine, read source/ or write outside its
    scratch folder? Each attempt that fails leaves the right answer in place."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    hits = []
    threading.Thread(target=lambda: hits.append(server.accept()), daemon=True).start()
    target = tmp_path / "pwned"
    src = f"""
import socket
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    dlogits = None
except OSError:
    pass
try:
    open("{ROOT / 'source' / 'backprop_ninja' / 'ex1_atomic_graph.ipynb'}").read()
    dlogits = None
except OSError:
    pass
try:
    open("{target}", "w").write("x")
    dlogits = None
except OSError:
    pass
"""
    v = ex2(src)
    server.close()
    assert v.ok, v.message
    assert not hits and not target.exists()


def test_the_same_submission_graded_twice_gets_the_same_scores():
    cells = dict(solution_cells("ex1"), ex1_batchnorm=solution_cells("ex1")["ex1_batchnorm"].replace("(1.0 / (n - 1))", "(1.0 / n)"))
    first, second = (trusted_verdicts("ex1", list(cells.items())) for _ in range(2))
    assert [(v.name, v.points, v.message) for v in first.values()] == \
           [(v.name, v.points, v.message) for v in second.values()]


def test_a_scores_only_job_loads_nothing_of_nbgrader():
    """Does a scores-only job (what --scores-only's workers and a cluster's run) score a learner
    without importing nbgrader, nbconvert or SQLAlchemy, which such a worker never needs (1 s of
    its start)?"""
    code = """if True:
        import sys
        from autograder.grader import jobs
        from autograder.grader.course import ROOT, ASSIGNMENT
        from autograder.exercises import PRACTICE
        pack = jobs.make_pack(ROOT, ASSIGNMENT, "scores", PRACTICE)
        learner = {"student": "blank", "extension": None, "submitted": jobs.collect(ROOT / "release" / ASSIGNMENT)}
        rows = jobs.run_job(pack, learner)["rows"]
        print(len(rows), sum(r[3] for r in rows), sum(r[4] for r in rows),
              [m for m in ("nbgrader", "nbconvert", "sqlalchemy") if m in sys.modules])"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "36 0.0 44 []", proc.stdout + proc.stderr
