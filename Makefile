# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# PyTorch's CPU wheel is pinned and installed first: a looser requirement would pull a
# multi-GB CUDA build. pyproject.toml itself only states a range (torch>=2.4). A folder that
# holds the wheel on local disk is named the standard way: PIP_FIND_LINKS in the environment.
TORCH := torch==2.13.0

.PHONY: run test lint bench-lm bench-bot clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py lm/native.c lm/native_gru.h | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[slack]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(PY) -m bot

test: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

bench-lm: $(VENV)/.installed-dev
	$(PY) scripts/bench_lm.py

bench-bot: $(VENV)/.installed-dev
	$(PY) scripts/bench_bot.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
