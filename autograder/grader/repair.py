"""Read a submission whatever state it is in, and rebuild it on the release notebook.

nbgrader reads the submitted file itself; a file that is not JSON, an old format, deleted,
duplicated or renamed cells, changed points or kernel make it skip the learner or stop the
whole class. read_any reads the file robustly and rebuild puts it on the release notebook: the
release's cells and metadata, the learner's answer cells (by grade id) and their own extra
cells. What was repaired is said in a note at the top, which the feedback shows. nbgrader
reads submissions through exporter.RepairingExporter (scoped.py's for the course's
assignment only), which calls these; the scores-only mode
calls them directly (verdicts.learner_answers).
"""
import copy
import html
import json
import os
import re
import stat
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell

from .tree import read_regular

MAX_SOURCE = 200_000  # characters of one answer cell kept
MAX_FILE = 64 * 2**20  # bytes of a submitted notebook read at all
MAX_ATTACHMENTS = 2**20  # bytes of a markdown cell's attachments kept
MAX_EXTRA_CELLS = 300  # cells of the learner's own kept (beyond the release's); the rest dropped
SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: no encoding can write them
ATTACHMENT_TYPES = {"image/png", "image/jpeg", "image/gif"}  # what a markdown cell may embed


def text_only(obj):
    """(obj with every lone surrogate in its strings and keys replaced by U+FFFD, how many were
    replaced). A notebook read from JSON may hold them (`"\\ud800"`); nbformat cannot write them."""
    count = 0

    def clean(x):
        nonlocal count
        if isinstance(x, str):
            new, n = SURROGATE.subn("\ufffd", x)
            count += n
            return new
        if isinstance(x, dict):
            return type(x)((clean(k), clean(v)) for k, v in x.items())
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x
    return clean(obj), count


def nbg(cell):
    """A cell's nbgrader metadata, {} whatever else is there."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id(cell):
    gid = nbg(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def read_any(path):
    """(notebook or None, problem or '') for whatever is at path. A symbolic link (in the file
    or any folder above it) or anything but a regular file is not read: it could point at
    another learner's work or at the course's own files."""
    path = Path(path)
    try:
        if os.path.realpath(path) != os.path.abspath(path):
            return None, "the submitted notebook is a symbolic link (or inside one): not read; submit the file itself"
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None, "the submitted notebook is not a regular file: not read"
        content, why = read_regular(path, MAX_FILE)  # by its real size, never more than the cap
        if content is None and why.startswith("is larger"):
            return None, f"the submitted notebook is larger than {MAX_FILE // 2**20} MB: not read"
        if content is None:
            return None, f"the submitted notebook {why}: not read"
        text = content.decode("utf-8", errors="replace")
        if not text.strip():
            return None, "the submitted file is empty"
        nb = nbformat.reads(text, as_version=4)  # converts older formats
        nb.cells  # noqa: B018 (a notebook has cells)
        nb, replaced = text_only(nb)
        nb = nbformat.from_dict(nb)
        if replaced:
            return nb, (f"the notebook held {replaced} character(s) that are not text (lone surrogates): "
                        "replaced by \ufffd")
        return nb, ""
    except (json.JSONDecodeError, ValueError) as e:
        return None, f"the submitted file is not a valid notebook ({type(e).__name__}: {str(e)[:120]})"
    except Exception as e:  # any other malformed content
        return None, f"the submitted file could not be read as a notebook ({type(e).__name__})"


def rebuild(learner, template):
    """The template (release) notebook with the learner's answers and extra cells; problems."""
    problems = []
    answers = [c for c in template.cells if nbg(c).get("solution")]
    known = {grade_id(c) for c in template.cells}
    mine, extras, unknown, last, dropped = {}, {}, [], None, 0
    for cell in (learner.cells if learner else []):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        gid = grade_id(cell)
        if gid in known:
            if gid in mine and gid in {grade_id(a) for a in answers}:
                problems.append(f"cell `{gid}` appears more than once: the last one is graded")
            mine[gid] = cell
            last = gid
        elif gid is not None and nbg(cell).get("solution"):
            unknown.append(cell)  # an answer cell whose id was changed
        elif sum(map(len, extras.values())) >= MAX_EXTRA_CELLS:
            dropped += 1
        else:  # the learner's own cell: kept, as a plain cell (no nbgrader role)
            extras.setdefault(last, []).append(_plain(cell, problems))
    if dropped:
        problems.append(f"{dropped} of your own cells beyond the first {MAX_EXTRA_CELLS} were dropped")
    for a in answers:
        if grade_id(a) not in mine and unknown:
            mine[grade_id(a)] = unknown.pop(0)
            problems.append(f"answer cell `{grade_id(a)}` had its id changed: graded as that answer")
    out = copy.deepcopy(template)
    cells = [copy.deepcopy(c) for c in extras.get(None, []) if c.cell_type != "raw"]
    for cell in out.cells:
        gid = grade_id(cell)
        theirs = mine.get(gid)
        if cell in answers or nbg(cell).get("solution"):
            if theirs is None and learner is not None:
                problems.append(f"answer cell `{gid}` is missing: graded as not answered")
            elif theirs is not None:
                cell.source = str(theirs.get("source", ""))[:MAX_SOURCE]
        elif learner is not None and (theirs is None or theirs.get("source") != cell.source):
            problems.append(f"locked cell `{gid}` was {'deleted' if theirs is None else 'edited'}: restored")
        if theirs is not None and nbg(theirs).get("points") != nbg(cell).get("points"):
            problems.append(f"the points of cell `{gid}` were changed: restored")
        cells.append(cell)
        cells += [copy.deepcopy(c) for c in extras.get(gid, []) if c.cell_type != "raw"]
    for c in cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None  # outputs are recomputed (and may be huge)
        c.pop("attachments", None) if c.cell_type == "code" else None
    out.cells = cells
    kernel = learner.get("metadata", {}).get("kernelspec") if learner is not None and isinstance(learner.get("metadata"), dict) else None
    if learner is not None and (kernel.get("name") if isinstance(kernel, dict) else None) != template.metadata.get("kernelspec", {}).get("name"):
        problems.append("the notebook's kernel was changed: graded with Python 3")
    nbformat.validator.normalize(out)
    return out, problems


def _plain(cell, problems):
    """A learner's extra cell as a plain cell of its type: no nbgrader metadata, a capped
    source, no outsized attachments."""
    kind = cell.get("cell_type")
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[kind]
    new = make(source[:MAX_SOURCE])
    attachments = cell.get("attachments")
    if kind == "markdown" and isinstance(attachments, dict) and attachments:
        images = {name: {k: v for k, v in a.items() if k in ATTACHMENT_TYPES and isinstance(v, str)}
                  for name, a in attachments.items() if isinstance(name, str) and isinstance(a, dict)}
        images = {name: a for name, a in images.items() if a}
        if len(images) < len(attachments):
            problems.append("a markdown cell's attachments that are not PNG, JPEG or GIF images were removed")
        attachments = images
    if kind == "markdown" and isinstance(attachments, dict) and attachments:
        if len(json.dumps(attachments)) <= MAX_ATTACHMENTS:
            new["attachments"] = attachments
        else:
            problems.append(f"a markdown cell's attachments were larger than {MAX_ATTACHMENTS // 2**20} MB: removed")
    if kind == "markdown":  # a link to an attachment that is not there breaks the feedback page
        kept = new.get("attachments", {})
        new.source = re.sub(r"attachment:([^)\s]*)", lambda m: m.group(0) if m.group(1) in kept else "#removed-attachment",
                            new.source)
    if isinstance(nbg(cell).get("grade"), bool) and nbg(cell).get("grade"):
        problems.append("a graded cell that is not the course's was found: kept as a plain cell")
    return new


def note_cell(problems):
    """The grading note: what was repaired. Its lines quote the learner's files (names, content
    in a parser's message): escaped, so they read as text in every page that shows them."""
    text = "**Grading note.** This submission was repaired before grading:\n\n" + "\n".join(
        f"- {html.escape(p)}" for p in problems)
    return new_markdown_cell(text, id="grading_note")
