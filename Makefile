# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv if needed. Set BACKPROP_NINJA_NAMES=/path/to/names.txt to use a local
# copy of the data instead of downloading it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
NBVAL := --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks

.PHONY: demo test data

$(VENV)/installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	touch $@

data: $(VENV)/installed
	$(PY) -m autograder.data

demo: data
	$(PY) -m autograder.demo

# nbval runs with 1 and with 2 threads: float32 reductions differ, the stored outputs must not.
test: data
	OMP_NUM_THREADS=1 $(PY) -m pytest $(NBVAL)
	OMP_NUM_THREADS=2 $(PY) -m pytest $(NBVAL) tests
