# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv if needed. Set BACKPROP_NINJA_NAMES=/path/to/names.txt to use a local
# copy of the data instead of downloading it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
NBVAL := --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks

.PHONY: demo test data lab

$(VENV)/installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	$(PY) -c "import matplotlib.pyplot"  # builds the font cache now, not on stderr in a notebook
	touch $@

data: $(VENV)/installed
	$(PY) -m autograder.data

demo: data
	$(PY) -m autograder.demo

# nbval runs with 1 and with 2 threads: float32 reductions differ, the stored outputs must not.
test: data
	OMP_NUM_THREADS=1 $(PY) -m pytest $(NBVAL)
	OMP_NUM_THREADS=2 $(PY) -m pytest $(NBVAL) tests

# The learner's JupyterLab 4, with nbgrader's Validate button, on 127.0.0.1 only. It serves a
# working copy of release/backprop_ninja in build/learner/: each notebook is copied once and
# never overwritten, so a learner's saved work survives and release/ (which a test compares
# with nbgrader's output) is never modified. LAB_PORT=8889 make lab for another port.
LAB_DIR := build/learner/backprop_ninja
LAB_PORT ?= 8888

lab: data
	mkdir -p $(LAB_DIR)
	for f in release/backprop_ninja/*.ipynb; do test -e $(LAB_DIR)/$${f##*/} || cp $$f $(LAB_DIR)/; done
	cd $(LAB_DIR) && $(CURDIR)/$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) \
		$(if $(filter 0,$(shell id -u)),--allow-root)
