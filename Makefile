# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv if needed. Set BACKPROP_NINJA_NAMES=/path/to/names.txt to use a local
# copy of the data instead of downloading it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test data bytecode lab venv-python need-bwrap-demo need-bwrap-test

# Grading runs learner code under bubblewrap: say so at once, in one line, before the long
# install. The demo grades only the course's own examples, so it may opt out; the tests of
# the sandbox cannot.
BWRAP := $(shell command -v bwrap)
need-bwrap-demo:
	$(if $(BWRAP)$(BACKPROP_NINJA_UNSANDBOXED),,$(error make demo grades with bubblewrap, which is not installed: sudo apt-get install bubblewrap (or BACKPROP_NINJA_UNSANDBOXED=1 make demo to grade the demo's own examples without a sandbox)))
need-bwrap-test:
	$(if $(BWRAP),,$(error make test checks the grading sandbox, which needs bubblewrap: sudo apt-get install bubblewrap (and chromium chromium-driver for the browser test)))

# A .venv made by another Python (say after a try with 3.12) fails the same way every time:
# say so, and how to fix it, before anything uses it.
venv-python:
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		echo "error: .venv was made with $$($(PY) --version 2>&1), make's environment (requirements/lock.txt) is Python 3.11: run 'rm -rf .venv' and make again (PYTHON=/path/to/python3.11 if it is not on PATH)" >&2; \
		exit 1; fi

# The exact versions of the development environment (pyproject.toml states only ranges).
LOCK := requirements/lock.txt

$(VENV)/installed: pyproject.toml $(LOCK) | venv-python
	@command -v $(PYTHON) >/dev/null || test -x $(PY) || { echo "error: $(PYTHON) is not on PATH: make's environment (requirements/lock.txt) is Python 3.11: install it, or PYTHON=/path/to/python3.11 make ... (a learner's pip install . takes 3.10 to 3.13)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the course and its tools into $(VENV): about 1.4 GB (torch is most of it), 3 minutes or more on a first run ..."
	$(PY) -m pip install --quiet -e ".[instructor,test]" -c $(LOCK)  # everything, for development, at the lock's versions
	$(PY) -c "import matplotlib.pyplot"  # builds the font cache now, not on stderr in a notebook
	touch $@

data: $(VENV)/installed | venv-python
	$(PY) -m autograder.data

# The course's own modules compiled once (an editable install compiles none): where
# PYTHONDONTWRITEBYTECODE is set, and in the sandboxes, which may not write, every process
# that grades would compile them again from source (about 3 % of a class run's CPU).
bytecode: $(VENV)/installed | venv-python
	$(PY) -m compileall -q autograder tools

demo: need-bwrap-demo data bytecode
	$(PY) -m autograder.demo

# The whole suite, every tier, on TEST_WORKERS processes (pytest-xdist), each test module whole
# on one of them (its fixtures are built once), longest first (the order of tests/conftest.py's
# SLOW); beside it, in a process of its own, the browser test (a learner's JupyterLab in real
# time: most of its half minute is a real browser's waits, which the suite fills; its output,
# in build/browser.log, is printed after the suite's); plain pytest runs the fast tier in one
# process. The slowest 25 steps are listed at the end: where the suite's time goes. Beside
# them, at the lowest priority (--idle: a cpu cgroup of a small weight where the machine allows
# it, else nice 19), so that it takes the cores' idle moments while they run and the rest after:
# nbval and the numeric unit tests under every CPU kernel path torch can take here (default,
# avx2, avx512), two at a time: float32 results differ in their last digits, what is stored or
# asserted must not (tools/cpu_matrix.py). Its report, in build/cpu-matrix.log, is printed at
# the end (its seconds are those of a low priority). make test fails if any of the three does.
TEST_WORKERS ?= 2
MATRIX_LOG := build/cpu-matrix.log
BROWSER_LOG := build/browser.log
test: need-bwrap-test data bytecode
	@mkdir -p build
	$(PY) tools/cpu_matrix.py --idle > $(MATRIX_LOG) 2>&1 & matrix=$$!; \
	$(PY) -m pytest -m "" tests/test_browser.py > $(BROWSER_LOG) 2>&1 & browser=$$!; \
	$(PY) -m pytest -m "" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --ignore=tests/test_browser.py tests; suite=$$?; \
	wait $$browser; browser=$$?; echo "---- tests/test_browser.py ($(BROWSER_LOG)) ----"; cat $(BROWSER_LOG); \
	wait $$matrix; matrix=$$?; echo "---- tools/cpu_matrix.py ($(MATRIX_LOG)) ----"; cat $(MATRIX_LOG); \
	[ $$suite -eq 0 ] && [ $$browser -eq 0 ] && [ $$matrix -eq 0 ]

# The learner's JupyterLab 4, with nbgrader's Validate button, on 127.0.0.1 only. It serves a
# working copy of release/backprop_ninja in build/learner/: each notebook is copied once, when
# make lab starts, and never overwritten, so a learner's saved work survives and release/
# (which a test compares with nbgrader's output) is never modified. Its Jupyter configuration
# is lab/ (copied to build/lab/config, JUPYTER_CONFIG_DIR): no instructor tools, no news.
# LAB_PORT=8889 make lab for another port; LAB_ARGS for more JupyterLab options.
LAB_DIR ?= build/learner/backprop_ninja
LAB_CONFIG ?= build/lab/config
LAB_PORT ?= 8888
LAB_ARGS ?=

lab: data
	mkdir -p $(LAB_DIR) $(LAB_CONFIG)
	for f in release/backprop_ninja/*.ipynb; do test -e $(LAB_DIR)/$${f##*/} || cp $$f $(LAB_DIR)/; done
	cp -R lab/. $(LAB_CONFIG)/
	cd $(LAB_DIR) && JUPYTER_CONFIG_DIR=$(abspath $(LAB_CONFIG)) $(abspath $(VENV))/bin/jupyter lab \
		--ip=127.0.0.1 --port=$(LAB_PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)
