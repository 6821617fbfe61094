# The README's two commands. Both work from a fresh clone with only Python 3.10+ installed.
#   make demo   set up .venv, then train + evaluate + report (runs/demo/report.md)
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 resolves to a local CPU wheel on our machines; override TORCH for another build,
# e.g. make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
EXTRAS ?= dev,ray

.PHONY: demo test venv lint clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/riskrl demo

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info runs
