# One entry point for developers and CI: `.ci/run` calls `make check`.
#   make example   set up, then run the orders example end to end on SQLite
#   make check     set up, then lint, type-check, run the tests, fuzz the API and build the docs strictly (what CI runs)
#   make bench     run the benchmarks (prints figures; the DBOS comparison takes long)
#   make setup-bench  also install the bench extra (DBOS, matplotlib): only the benchmarks need it
#   make chaos     kill -9 a host under load, 50 cycles per store (fails on a lost instance)
#   make docs      build the documentation site into site/ (open site/index.html)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export DURABLEFLOW_TEST_PG_DSN ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: setup setup-bench example check lint typecheck test fuzz bench bench-smoke chaos clean docs docs-setup docs-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# What development needs: the package, the dev tools and the PostgreSQL driver. The DBOS
# comparison's heavy extra (DBOS, matplotlib) comes only with setup-bench, so `make example`
# on a fresh machine downloads neither.
setup: $(PY)
	$(PY) -m pip install --quiet -e ".[dev,postgres]"

setup-bench: setup
	$(PY) -m pip install --quiet -e ".[dev,postgres,bench]"

example: setup
	$(PY) docs/examples/orders/run_example.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The tests are checked the way users' code is: against the stubs (tests/typing/stubpath puts
# them first), not the SDK's sources.
typecheck: setup
	$(VENV)/bin/mypy sdk runtime docs/examples
	MYPYPATH=tests/typing/stubpath $(VENV)/bin/mypy tests
	PYTHON=$(PY) bash tests/typing/run_stubtest.sh

test: setup
	$(VENV)/bin/pytest -q

# Schemathesis over /api/openapi.json of a real host, on each store (about a minute)
fuzz: setup
	$(PY) tests/fuzz/run_schemathesis.py
	$(PY) tests/fuzz/run_schemathesis.py --postgres

bench-smoke: setup-bench
	$(PY) tests/benchmarks/bench_core.py --quick
	$(PY) tests/benchmarks/bench_flow.py --quick --store sqlite
	$(PY) tests/benchmarks/bench_dbos.py --quick --chart $(VENV)/bench-smoke.png
	$(PY) tests/benchmarks/chaos.py --quick
	$(PY) tests/benchmarks/bench_scale.py --quick
	$(PY) tests/benchmarks/bench_check.py --quick
	$(PY) tests/benchmarks/bench_wakeups.py --quick

check: lint typecheck test fuzz bench-smoke docs-check

# The site: mkdocs + Material, the API reference from the docstrings (mkdocstrings), the CLI
# from click, the HTTP reference from build_openapi(). mkdocs.yml sets strict, so any
# warning (a broken link or anchor, an unknown name) fails the build.
# Material prints a banner on every build about its end of life (May 2027; Zensical is its
# successor): noted here once instead of in every CI log.
export NO_MKDOCS_2_WARNING := 1

docs-setup: $(PY)
	$(PY) -m pip install --quiet -e ".[docs]"

docs: docs-setup
	$(VENV)/bin/mkdocs build --strict

docs-check: docs-setup
	$(VENV)/bin/mkdocs build --strict --site-dir $(VENV)/docs-check-site

bench: setup-bench
	$(PY) tests/benchmarks/bench_core.py
	$(PY) tests/benchmarks/bench_flow.py
	$(PY) tests/benchmarks/bench_dbos.py

chaos: setup
	$(PY) tests/benchmarks/chaos.py --cycles 50 --store both

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
