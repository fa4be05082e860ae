"""The learner's install beside another Python's torch: does it keep that torch, and do the four
release notebooks run there, blank and solved?

    python tools/compat.py                               # Colab's runtime today: Python 3.13, torch 2.11.0
    python tools/compat.py --python 3.12 --torch 2.12.1  # another pair
    python tools/compat.py --reference                   # also the reference notebook under nbval (2-5 min more)
    python tools/compat.py --fresh                       # a new venv even if one is kept
    python tools/compat.py --short                       # Exercise 4 trains 2,000 steps (as graded)

Run with the development environment's Python (make's .venv: it has nbformat, and the course
to take the solutions from); `.ci/run` runs the default after `make test`. What it does:

1. finds the interpreter (`--python 3.13`: python3.13 on PATH, else pyenv's, or a path);
2. makes a venv for the pair, build/compat/py3.13-torch2.11.0, and installs torch there FIRST,
   as Colab has it. From the package registry that is a CUDA build, about 3 GB with its nvidia
   libraries (0.5 to 5 minutes here; the script says so before it starts). The wheels are kept
   in ~/.cache/backprop-ninja/compat-wheels (--wheels), since the registry's answers are not
   kept by pip's cache here; a kept venv whose torch matches is reused (--fresh: start anew);
3. installs the course as a learner does, `pip install .` from a copy of the clone, no extras,
   no lock, and checks torch is unchanged: same version, same file (path and inode);
4. installs the test tools nbclient and ipykernel (and pytest, nbval for --reference) into the
   venv, which is not the learner's install but what runs the notebooks, and checks torch again;
5. executes release/backprop_ninja/*.ipynb top to bottom in that venv's kernel, each in a
   folder of its own, blank and with the instructor's answers of source/ filled in (as
   autograder.grader.examples.solved does): no error and nothing on stderr in either; in the
   blank ones the checks say what is missing; in the solved ones every check row says
   `approximate: True` and every tally `N/N gradients match` (`; G/G right, as graded`);
6. with --reference: notebooks/backprop_ninja.ipynb under nbval (its stored outputs must hold);
   where they do not, it prints the cells that differ (as for CPUs, the figures may differ in
   their last digits between torch versions).

names.txt comes from $BACKPROP_NINJA_NAMES or the user cache (autograder.data), never from the
internet inside the check. Exit status 0 when everything holds, 1 otherwise, 2 when the venv
cannot be made (no such Python, the download failed). Every pip command stops after 30 min,
every notebook cell after 20. The executed notebooks stay in build/compat/<pair>/run/ for a
look; the venv is kept for the next run (--keep, the default; --no-keep removes it at the end).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "3.13"  # Colab's runtime since 2026-08-25
TORCH = "2.11.0"  # Colab's torch on it (a CPU wheel there; from the registry a CUDA build here)
BUILD = ROOT / "build" / "compat"
WHEELS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backprop-ninja" / "compat-wheels"
RELEASE = ROOT / "release" / "backprop_ninja"
SOURCE = ROOT / "source" / "backprop_ninja"
REFERENCE = ROOT / "notebooks" / "backprop_ninja.ipynb"
TEST_TOOLS = ["nbclient", "ipykernel"]
INSTALL_TIMEOUT = 30 * 60  # seconds for one pip command: a cold 3 GB download is ~5 minutes
NOTEBOOK_TIMEOUT = 20 * 60  # seconds per cell: Exercise 4 trains 200,000 steps in one


class Failed(Exception):
    """The venv could not be made: say why (exit 2)."""


def say(*args):
    print(*args, flush=True)


def find_python(spec):
    """The interpreter for `--python`: a path, a name on PATH (python3.13), or pyenv's."""
    if os.sep in spec:
        return spec
    for name in (spec, f"python{spec}"):
        found = shutil.which(name)
        if found and "/shims/" not in found:  # a pyenv shim works only for pyenv's selected versions
            return found
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    for d in sorted(pyenv.glob(f"{spec}*"), reverse=True):
        if (d / "bin" / f"python{spec}").exists():
            return str(d / "bin" / f"python{spec}")
    raise Failed(f"no Python {spec}: not on PATH as python{spec}, not in {pyenv} (--python /path/to/python)")


# Lines that say nothing about this check: pip's about this machine's file:// indexes of other
# projects ("Location 'file:///...' is ignored"), and the kernel's own log line about its
# local TCP transport (the kernel's log, not a notebook's output: those are checked).
NOISE = ("is ignored: it is neither a file nor a directory",
         "[IPKernelApp] WARNING | Kernel is running over TCP without encryption")


def run(cmd, timeout=INSTALL_TIMEOUT, quiet=False, env=None, cwd=None):
    """Run cmd, showing its output as it comes (pip's progress; `quiet`: only on failure, and
    pip's summary lines); stop it after `timeout` s. Return its output lines; fail with the
    command line and the end of its output."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=cwd)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if any(n in line for n in NOISE):
                continue
            lines.append(line)
            if not quiet or line.startswith(("Successfully installed", "Requirement already satisfied: torch")):
                say(("  " if quiet else "") + line)
    finally:
        proc.wait()
        timer.cancel()
    if proc.returncode:
        why = f"timed out after {timeout // 60} min" if proc.returncode == -9 else f"failed (exit {proc.returncode})"
        raise Failed(f"{why}: {' '.join(map(str, cmd))}" + ("\n" + "\n".join(lines[-40:]) if quiet else ""))
    return lines


PROBE = ("import json, os, torch; f = torch.__file__; s = os.stat(f)\n"
         "print(json.dumps({'version': torch.__version__, 'file': f, 'inode': s.st_ino, 'mtime': s.st_mtime_ns}))")


def torch_of(py):
    """{version, file, inode, mtime} of the torch the venv's python imports, or None."""
    proc = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          stdin=subprocess.DEVNULL, env=clean_env())
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def clean_env(**extra):
    """The environment of the venv's processes: no PYTHONPATH (the clone must not be imported
    instead of the installed course), no NBGRADER_EXECUTION (a learner's run, not a grading)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBGRADER_EXECUTION", "VIRTUAL_ENV")}
    return {**env, **extra}


def make_venv(python, torch_version, venv, wheels, fresh):
    """A venv of `python` with torch_version installed first; reused if kept and its torch matches."""
    py = str(venv / "bin" / "python")
    if venv.exists() and not fresh:
        have = torch_of(py)
        if have and have["version"].split("+")[0] == torch_version:
            say(f"reusing {venv.relative_to(ROOT)} (torch {have['version']})")
            return py
        say(f"{venv.relative_to(ROOT)} has {'torch ' + have['version'] if have else 'no torch'}: making it anew")
    if venv.exists():
        shutil.rmtree(venv)
    run([python, "-m", "venv", str(venv)])
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], quiet=True)
    version = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    wheels.mkdir(parents=True, exist_ok=True)
    kept = sorted(wheels.glob(f"torch-{torch_version}-cp{version.replace('.', '')}-*.whl"))
    if kept:
        say(f"torch {torch_version} for Python {version}: from the wheels kept in {wheels}")
    else:
        say(f"downloading torch {torch_version} for Python {version} from the package registry into {wheels}: "
            "a CUDA build, about 3 GB with its nvidia libraries, 1 to 5 minutes (once: later runs use these wheels)")
    t0 = time.monotonic()
    # pip download skips the files already in wheels/; the install then needs no index
    run([py, "-m", "pip", "download", "--progress-bar", "off",  # one "Downloading NAME (SIZE)" line a file
         f"torch=={torch_version}", "-d", str(wheels)], quiet=bool(kept))
    run([py, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), f"torch=={torch_version}"], quiet=True)
    say(f"torch {torch_version} installed first, before the course, as on Colab ({time.monotonic() - t0:.0f} s)")
    return py


def learner_install(py, work):
    """`pip install .` from a copy of the clone (pip would write its egg-info into the clone)."""
    copy = work / "clone"
    if copy.exists():
        shutil.rmtree(copy)
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "submitted",
                                  "autograded", "feedback", "gradebook.db", "names.txt")
    shutil.copytree(ROOT, copy, ignore=skip)
    say("pip install . (the learner's install: the course, no extras, no lock)")
    lines = run([py, "-m", "pip", "install", "--progress-bar", "off", str(copy)], quiet=True, env=clean_env())
    return [line for line in lines if "Uninstalling torch" in line or "Collecting torch" in line]


def check_torch(py, before, when):
    """Fail the check (return an error line) unless the venv imports the same torch as before."""
    after = torch_of(py)
    same = after is not None and all(after[k] == before[k] for k in ("version", "file", "inode", "mtime"))
    say(f"torch after {when}: {after['version'] if after else 'none'}, "
        + ("unchanged (same version, same file)" if same else f"CHANGED: was {before}, now {after}"))
    return [] if same else [f"torch changed by {when}"]


def notebooks(py, work, names, short=False):
    """Execute the release notebooks blank and solved in the venv; return the error lines."""
    sys.path.insert(0, str(ROOT))
    import nbformat
    from autograder.grader.examples import solved
    jobs = []
    for path in sorted(RELEASE.glob("*.ipynb")):
        for kind in ("blank", "solved"):
            nb = nbformat.read(path, as_version=4)
            if kind == "solved":
                nb = solved(nb, nbformat.read(SOURCE / path.name, as_version=4))
            folder = work / kind / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / path.name)
            jobs.append(str(folder / path.name))
    kernels = work / "jupyter"  # a kernelspec of the venv's python, found before any other
    spec = kernels / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "compat", "language": "python"}))
    env = clean_env(JUPYTER_DATA_DIR=str(kernels), BACKPROP_NINJA_NAMES=str(names),
                    **({"NBGRADER_EXECUTION": "1"} if short else {}))  # Exercise 4: 2,000 steps
    try:
        lines = run([py, __file__, "--execute", *jobs], env=env, cwd=work, timeout=len(jobs) * NOTEBOOK_TIMEOUT)
    except Failed as e:
        return [f"the notebook runner: {e}"]
    return [line[len("FAIL "):] for line in lines if line.startswith("FAIL ")]


# the check's tally: "3/3 gradients match", and where the exercise grades, "; 3/3 right, as graded"
TALLY = re.compile(r"(?P<n>\d+)/(?P<of>\d+) gradients match"
                   r"(?:; (?P<right>\d+)/(?P<graded>\d+) right, as graded)?")


def verdict(kind, nb):
    """Error lines for one executed notebook: an error or stderr output anywhere, any output of
    the install cell (the course is installed: it must do nothing); for a blank one, checks that
    do not say what is missing; for a solved one, any check not right."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    errors += ["stderr: " + o.text.strip()[:300] for o in outputs if o.get("name") == "stderr"]
    errors += ["the install cell printed something, with the course installed" for c in nb.cells
               if c.get("id") == "setup_install" and c.get("outputs")]
    text = "".join(o.get("text", "") for o in outputs)
    if kind == "blank":
        if "is not defined yet" not in text and "write backward" not in text.lower():
            errors.append("no check says what is missing")
        return errors, "checks say what is missing"
    rows = [l for l in text.splitlines() if "| approximate:" in l]
    tallies = [m for l in text.splitlines() if (m := TALLY.fullmatch(l.strip()))]
    wrong = [l for l in rows if "approximate: True" not in l or "WRONG" in l]
    wrong += [t[0] for t in tallies if t["n"] != t["of"] or t["right"] != t["graded"]]
    tallies = [t[0] for t in tallies]
    if not rows or not tallies:
        errors.append("no check rows printed")
    errors += [f"not right: {l.strip()}" for l in wrong]
    figures = [" ".join(l.split()) for l in text.splitlines() if re.match(r"(train|val) +\d+\.\d+$", l)]
    return errors, f"{len(rows)} check rows approximate: True, tallies {', '.join(tallies)}" + (
        f"; {', '.join(figures)}" if figures else "")


def execute(paths):
    """(Inside the venv.) Execute each notebook in its folder; print one line per notebook."""
    import autograder
    import nbformat
    from nbclient import NotebookClient
    say(f"  (the kernel imports the installed course: {Path(autograder.__file__).parent})")
    for path in map(Path, paths):
        kind = path.parent.parent.name
        nb = nbformat.read(path, as_version=4)
        t0 = time.monotonic()
        try:
            NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            errors, summary = verdict(kind, nb)
        except Exception as e:  # a cell's error: nbclient raises CellExecutionError
            errors, summary = [f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"], "stopped"
        nbformat.write(nb, path)
        say(f"  {kind:6s} {path.name:26s} {time.monotonic() - t0:6.1f} s  "
            + ("ok: " + summary if not errors else "FAILED"))
        for e in errors:
            say(f"FAIL {kind} {path.name}: {e}")


def reference(py, work, names):
    """The reference notebook under nbval in the venv; return error lines (and print the
    differing cells, which nbval names)."""
    run([py, "-m", "pip", "install", "pytest", "nbval"], quiet=True, env=clean_env())
    folder = work / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REFERENCE, folder)
    shutil.copy(REFERENCE.parent / "sanitize.cfg", folder)
    say("nbval notebooks/backprop_ninja.ipynb (trains 200,000 steps: 2 to 5 minutes) ...")
    t0 = time.monotonic()
    try:
        proc = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                               "--nbval-sanitize-with", "sanitize.cfg", REFERENCE.name],
                              cwd=folder, env=clean_env(BACKPROP_NINJA_NAMES=str(names),
                                                        JUPYTER_DATA_DIR=str(work / "jupyter")),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=NOTEBOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"the reference notebook did not finish in {NOTEBOOK_TIMEOUT // 60} min"]
    lines = proc.stdout.strip().splitlines()
    say(f"  reference notebook: {lines[-1] if lines else proc.stderr.strip()[-300:]} ({time.monotonic() - t0:.0f} s)")
    if proc.returncode == 0:
        return []
    # nbval's report of each differing cell: which cell, the stored and the new output
    start = next((i for i, l in enumerate(lines) if l.startswith("___")), 0)
    end = next((i for i, l in enumerate(lines) if "short test summary" in l), len(lines))
    for line in [l for l in lines[start:end] if l.strip()][:80]:
        say("    " + line)
    return [f"the reference notebook's stored outputs do not hold here: {lines[-1] if lines else ''}"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=PYTHON, help=f"interpreter: a version (default {PYTHON}) or a path")
    p.add_argument("--torch", default=TORCH, help=f"torch version installed first (default {TORCH})")
    p.add_argument("--reference", action="store_true", help="also nbval the reference notebook (2-5 min)")
    p.add_argument("--short", action="store_true",
                   help="Exercise 4 trains 2,000 steps, as under grading, not 200,000 (4 to 5 min less)")
    p.add_argument("--fresh", action="store_true", help="a new venv even if a matching one is kept")
    p.add_argument("--keep", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the venv for the next run (default; --no-keep removes it)")
    p.add_argument("--wheels", type=Path, default=WHEELS, help=f"where torch's wheels are kept (default {WHEELS})")
    p.add_argument("--execute", nargs="+", help=argparse.SUPPRESS)  # inside the venv: run these notebooks
    args = p.parse_args(argv)
    if args.execute:
        return execute(args.execute)

    sys.path.insert(0, str(ROOT))
    from autograder import data
    t_start = time.monotonic()
    try:
        names = data.ensure_names()
        python = find_python(args.python)
        label = Path(python).name.replace("python", "py") if os.sep in args.python else f"py{args.python}"
        venv = BUILD / f"{label}-torch{args.torch}"
        say(f"compatibility check: {python}, torch {args.torch}, in {venv.relative_to(ROOT)}")
        py = make_venv(python, args.torch, venv, args.wheels, args.fresh)
        before = torch_of(py)
        if before is None:
            raise Failed(f"torch {args.torch} does not import in {venv}")
        say(f"torch before the course: {before['version']} at {before['file']}")
        work = venv / "run"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        t0 = time.monotonic()
        pip_torch = learner_install(py, work)
        say(f"  ({time.monotonic() - t0:.0f} s)")
    except (Failed, data.DataError) as e:
        say(f"compat: cannot make the venv: {e}")
        return 2
    errors = [f"pip touched torch: {l.strip()}" for l in pip_torch]
    errors += check_torch(py, before, "pip install .")
    try:
        run([py, "-m", "pip", "install", *TEST_TOOLS], quiet=True, env=clean_env())
    except Failed as e:
        say(f"compat: cannot install the test tools: {e}")
        return 2
    errors += check_torch(py, before, f"the test tools ({', '.join(TEST_TOOLS)})")
    say("the release notebooks, blank and solved, executed top to bottom in the venv:")
    errors += notebooks(py, work, names, args.short)
    if args.reference:
        errors += reference(py, work, names)
    errors += check_torch(py, before, "the notebooks")
    if not args.keep:
        shutil.rmtree(venv)
    say(f"compat {args.python} + torch {args.torch}: "
        + ("everything holds" if not errors else f"{len(errors)} problem(s)")
        + f" ({time.monotonic() - t_start:.0f} s)")
    for e in errors:
        say(f"  - {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
