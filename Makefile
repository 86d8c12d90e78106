# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Both create (or reuse) the virtualenv in $(VENV) and install the package with the CPU build of TensorFlow.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,test

.PHONY: quickstart test test-slow test-all lint clean-venv

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

quickstart: $(VENV)/.installed
	$(PY) runner.py recipes/quickstart.gin

test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --durations=15

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n auto -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -n auto -m ''

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check supcon tests runner.py benchmarks
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
