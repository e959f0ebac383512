# Two commands for a new user: `make repro` (everything) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

repro: venv
	$(PY) benchmarks/repro_timed.py

test: venv  # every test, whole files on 2 workers in conftest.FILE_ORDER
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-fast: venv  # the unit tests alone, for the edit loop (no DVC project, no stage runs)
	$(PY) -m pytest -q -m 'not slow and not e2e'

lint: venv
	$(VENV)/bin/ruff check .

test-slow: venv
	$(PY) -m pytest -q -m slow

bench: venv
	$(PY) benchmarks/bench_extract.py
	$(PY) benchmarks/bench_ald.py
	$(PY) benchmarks/bench_decompose.py

bench-scale: venv  # ~20 min, ~8 GB of temporary disk (see --max-rows)
	$(PY) benchmarks/bench_scale.py

bench-folder: venv  # image folder, local vs ray backend: a few minutes on a quiet machine
	$(PY) benchmarks/bench_folder.py

second-machine: venv  # after `make repro`, on a committed workspace
	$(PY) benchmarks/second_machine.py

catalogue: venv  # the bad-input catalogue's figures -> metrics/reliability.json (minutes)
	$(PY) benchmarks/reliability_catalogue.py

.PHONY: venv repro test test-fast lint test-slow bench bench-scale bench-folder second-machine catalogue
