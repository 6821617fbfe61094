# The README's two commands. Both work from a fresh clone with only Python 3.10+ installed.
#   make demo   set up .venv, then train + evaluate + report (runs/demo/report.md)
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 resolves to a local CPU wheel on our machines; override TORCH for another build,
# e.g. make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
EXTRAS ?= dev,ray,offline
# rl-zoo (the zoo extra, for riskrl.zoo and tests/test_zoo.py) is installed beside the versions resolved
# above, never over them: resolving rl_zoo3's whole chain would downgrade python-dateutil (typepy, under
# pytablewriter, pins <3) and pillow (moviepy 2 pins <12). So the dependencies it imports are installed
# under constraints of what is already there (ZOO_DEPS), and the packages with the clashing pins with
# --no-deps (ZOO_NODEPS: rl_zoo3 and the table writer it imports). ZOO= (empty) skips this step, and
# tests/test_zoo.py then skips.
ZOO ?= 1
ZOO_DEPS := "optuna>=3.0" "sb3-team-hf-integration>=3.0,<4" rich seaborn
ZOO_NODEPS := rl_zoo3==2.9.2 sb3_contrib==2.9.2 pytablewriter==1.2.1 DataProperty==1.1.1 \
	mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1

.PHONY: demo test venv lint clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# bsuite (tests/test_bsuite*.py, tests/test_deep_sea.py): its runtime deps, then bsuite itself without
	# its unpinned plotnine/pandas analysis stack, so no package already in the venv changes version
	$(PY) -m pip install --quiet dm-env immutabledict termcolor six scikit-image
	$(PY) -m pip install --quiet --no-deps bsuite==0.3.6
	if [ -n "$(ZOO)" ]; then \
	  $(PY) -m pip freeze --exclude-editable > $(VENV)/pinned.txt && \
	  $(PY) -m pip install --quiet -c $(VENV)/pinned.txt $(ZOO_DEPS) && \
	  $(PY) -m pip install --quiet --no-deps $(ZOO_NODEPS); \
	fi
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
