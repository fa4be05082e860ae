"""What the notebooks' check cells and graded test cells call, inside the learner's kernel.

Every verdict the learner sees comes from one scorer, the grade's (`score.grade`): the
check rows, `nbgrader validate` (`require`) and the in-kernel score (`grade`) replay the
learner's answer cells on the notebook's batch and on hidden inputs, each step on the true
upstream gradients, exactly as the trusted grader does outside the kernel (see
autograder.grader.trusted). Only the answer cells count, as in the grade.

Which source of an answer cell: the grade and Validate read the saved notebook. A check cell
runs in the live kernel, where the learner may not have saved yet (and on Colab the notebook
is not in the kernel's folder at all), so it takes what the kernel last ran in that cell
(`answer_sources_live`): by cell id where the front end sends one (JupyterLab, Notebook 7),
else the saved cell if the kernel ran it as saved, else the latest run input that assigns
the cell's gradients, and says when that differs from the saved file: the file of the notebook
the kernel runs in (a duplicate, a renamed one, VS Code's), or says that it cannot tell (Colab).
An error raised in an answer cell is explained under it (autograder.explain, registered with
`watch`).
"""
import os
import sys
import textwrap
from pathlib import Path

import torch

from . import explain, score
from .exercises import EXERCISES
from .statements import split

_cache = {}
_ran = {}  # cell id -> the source of its latest run in this kernel (front ends that send ids)


def _shell():
    ipython = sys.modules.get("IPython")  # never imported here: only inside a kernel
    return ipython.get_ipython() if ipython is not None else None


def _remember(info):
    cell_id = getattr(info, "cell_id", None)
    if cell_id and isinstance(getattr(info, "raw_cell", None), str):
        _ran[cell_id] = info.raw_cell


def watch():
    """Remember each cell's source by its id when it runs, and explain an answer cell's error
    under it (autograder.explain), once per kernel."""
    shell = _shell()
    if shell is not None and _remember not in shell.events.callbacks.get("pre_run_cell", []):
        shell.events.register("pre_run_cell", _remember)
    explain.watch()


watch()


def answer_sources(nb, cell_ids):
    """[(grade_id, source)] of the answer cells, in the given order; missing ones are skipped."""
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    return [(i, by_id[i]) for i in cell_ids if i in by_id]


def _read(path):
    """The saved notebook's cells (metadata, source, id), read as the JSON it is. Not with
    nbformat: importing it takes about 2 s (jsonschema's formats), which every check cell of
    every notebook, in the learner's kernel and in each graded one, would pay; validating a
    notebook the grade repairs anyway gains nothing here. Raises ValueError if it is not a
    version 4 notebook."""
    import json
    from types import SimpleNamespace
    with open(path, encoding="utf-8", errors="replace") as f:
        nb = json.load(f)
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a version 4 notebook")

    def cell(c):
        meta = c.get("metadata") if isinstance(c.get("metadata"), dict) else {}
        if not isinstance(meta.get("nbgrader", {}), dict):
            meta = {**meta, "nbgrader": {}}
        src = c.get("source", "")
        return SimpleNamespace(metadata=meta, source="".join(src) if isinstance(src, list) else str(src),
                               get=c.get)
    return SimpleNamespace(cells=[cell(c) for c in nb["cells"] if isinstance(c, dict)])


def _holds(path, exercise):
    """Does the saved notebook at path hold the exercise's answer cells and its first graded test?"""
    ex = EXERCISES[exercise]
    ids = [f'"grade_id": "{c}"' for c in ex.answer_cells] + [f'"grade_id": "{ex.test_id(next(iter(ex.grads)))}"']
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return False
    return all(i in text for i in ids)


def _find_notebook(exercise):
    """The exercise's notebook in the working folder: by its name, else (renamed: `ex2 (1).ipynb`)
    the latest saved notebook there that holds the exercise's answer cells."""
    path = Path(EXERCISES[exercise].notebook)
    if path.exists():
        return path
    for other in sorted(Path().glob("*.ipynb"), key=lambda p: -p.stat().st_mtime):
        if _holds(other, exercise):
            return other
    return path  # missing: FileNotFoundError when read


def _named_notebook():
    """The notebook the front end says this kernel runs: VS Code's `__vsc_ipynb_file__` in the
    kernel's namespace, else the session path jupyter-server gives the kernel at its start
    (JPY_SESSION_NAME: absolute, or a path whose file is in the kernel's folder). None if
    neither names a file here (renamed since the kernel started, or no such front end)."""
    shell = _shell()
    named = [shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None,
             os.environ.get("JPY_SESSION_NAME")]
    for name in named:
        if isinstance(name, str) and name:
            for path in (Path(name), Path(Path(name).name)):
                if path.is_file():
                    return path
    return None


def saved_sources(exercise, notebook=None):
    """[(grade_id, source)] of the saved notebook's answer cells and {cell id: grade id};
    raises FileNotFoundError where the notebook is not in the working folder."""
    nb = _read(Path(notebook) if notebook else _find_notebook(exercise))
    ids = {c.get("id"): c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    return answer_sources(nb, EXERCISES[exercise].answer_cells), ids


def _history():
    shell = _shell()
    return list(shell.history_manager.input_hist_raw) if shell is not None else []


def _writes(src):
    try:
        return set().union(*(st.writes for st in split("", src)))
    except Exception:
        return set()


def _judged(ex, history, ran, saved, ids):
    """([(grade_id, source)], [cells whose source differs from the saved one]): what the kernel
    last ran in each answer cell, against one saved notebook's cells (saved, ids)."""
    by_grade = {ids.get(cid, cid): src for cid, src in ran.items()}
    ran_texts = {h.strip() for h in history}
    out, differs, taken = [], [], set()
    for cell, names in ex.answer_cells.items():
        wanted = {"d" + k for k in names} | ({"backward"} if ex.kind == "function" else set())
        if cell in by_grade:
            src = by_grade[cell]
        elif cell in saved and (not history or saved[cell].strip() in ran_texts):
            src = saved[cell]
        else:
            i = next((i for i in range(len(history) - 1, -1, -1)
                      if i not in taken and _writes(history[i]) & wanted), None)
            if i is None:
                if cell in saved:
                    out.append((cell, saved[cell]))
                continue
            taken.add(i)
            src = history[i]
        if saved and cell in saved and src.strip() != saved[cell].strip():
            differs.append(cell)
        out.append((cell, src))
    return out, differs


def _saved(exercise, path):
    try:
        saved, ids = saved_sources(exercise, path)
        return dict(saved), ids
    except (FileNotFoundError, OSError, ValueError):
        return {}, {}


def answer_sources_live(exercise, history=None, ran=None, notebook=None):
    """([(grade_id, source)], [notes]): what the kernel last ran in each answer cell.

    history: the kernel's inputs in order (IPython's raw history by default); ran: {cell id:
    source of its latest run} (recorded by `watch`). Per answer cell: its latest run by id;
    else the saved source if it was run as saved (or nothing was run); else the latest input,
    not taken by another cell, that assigns one of the cell's gradients (a cell the learner
    never ran: its saved source, as the grade would read it).

    The saved notebook compared with: `notebook`, else the one this kernel runs in
    (`_named_notebook`: a duplicate, a renamed one, VS Code's), else the notebooks in the
    working folder that hold the exercise: the only one, or the one whose answer cells are
    what the kernel ran. Where none can be told (Colab, where the notebook is no file here, or
    several candidates), the notes say so, and never that the saved notebook differs."""
    ex = EXERCISES[exercise]
    history = _history() if history is None else list(history)
    ran = _ran if ran is None else ran
    path = Path(notebook) if notebook else _named_notebook()
    if path is None and "google.colab" in sys.modules:
        out, _ = _judged(ex, history, ran, {}, {})
        return out, ["on Colab this kernel cannot read the notebook: judged as you last ran each "
                     "answer cell (the grade reads the notebook you submit)"]
    if path is None:
        here = sorted((p for p in Path().glob("*.ipynb") if _holds(p, exercise)),
                      key=lambda p: (p.name != ex.notebook, p.name))
        if len(here) > 1:
            judged = [(p, _judged(ex, history, ran, *_saved(exercise, p))) for p in here]
            same = [(p, j) for p, j in judged if not j[1]]
            if not same:
                names = ", ".join(p.name for p in here)
                return judged[0][1][0], [f"judged as you last ran it; {len(here)} notebooks here hold "
                                         f"this exercise ({names}) and none holds what you ran: "
                                         "save the notebook (the grade reads the saved file)"]
            return same[0][1][0], []
        path = here[0] if here else Path(ex.notebook)
    out, differs = _judged(ex, history, ran, *_saved(exercise, path))
    return out, [f"{cell}: judged as you last ran it, which is not what the saved notebook "
                 "holds: save the notebook (the grade reads the saved file)" for cell in differs]


def _scored(exercise, sources):
    """score.grade on the sources, cached by them (one thread: tiny tensors)."""
    key = (exercise, tuple(sources))
    if _cache.get(exercise, (None,))[0] != key:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: more threads only contend
        try:
            result = score.grade(exercise, list(sources))
        finally:
            torch.set_num_threads(threads)
        _cache[exercise] = (key, result)
    return _cache[exercise][1]


def verdicts(exercise, notebook=None):
    """{name: Verdict} for the saved notebook of an exercise, as the grade judges it."""
    return _scored(exercise, saved_sources(exercise, notebook)[0])


def live_verdicts(exercise, history=None, ran=None, notebook=None):
    """({name: Verdict}, [notes]) for what the kernel last ran in the answer cells."""
    sources, notes = answer_sources_live(exercise, history, ran, notebook)
    return _scored(exercise, sources), notes


TRUSTED = "BACKPROP_NINJA_TRUSTED"  # set by nbgrader_config.py: TrustedScores rewrites the scores


def grade(exercise, name):
    """Points earned by one graded item (a gradient name, or 'training'); prints why."""
    if os.environ.get(TRUSTED) and os.environ.get("NBGRADER_EXECUTION"):
        print("scored outside this kernel by the trusted grader")
        return 0.0
    try:
        v = verdicts(exercise)[name]
    except FileNotFoundError:
        print(f"Cannot grade: {EXERCISES[exercise].notebook} is not in {os.getcwd()}. Save the notebook.")
        return 0.0
    print(v.summary())
    return float(v.points)


WIDTH = 80  # nbgrader validate cuts every line of an error at 87 characters (its width 90, less "...")


def wrapped(text, width=WIDTH):
    """Lines of at most `width` characters, continuation lines indented."""
    return textwrap.wrap(text, width, subsequent_indent="    ", break_long_words=True,
                         break_on_hyphens=False) or [""]


class NotYet(AssertionError):
    """A check that fails under `nbgrader validate`, shown as its message, wrapped to fit
    nbgrader's lines (IPython shows `_render_traceback_` instead of a traceback)."""

    def _render_traceback_(self):
        return [line for part in str(self).splitlines() for line in wrapped(part)]


def require(exercise, name, ns=None):
    """Under `nbgrader validate`, fail with the grade's verdict if the graded item (a gradient
    name, or 'training') does not earn its points: the same scorer, on the saved notebook, as
    the grade. Otherwise (Run All in the learner's notebook) do nothing."""
    if not os.environ.get("NBGRADER_VALIDATING"):
        return
    try:
        v = verdicts(exercise)[name]
    except FileNotFoundError:
        raise NotYet(f"{EXERCISES[exercise].notebook} is not in {os.getcwd()}: cannot check it") from None
    if not v.ok:
        raise NotYet(v.summary())

