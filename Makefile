# Every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export AMST_DATA_ROOT ?= $(CURDIR)/data

.PHONY: venv run test test-fast lint bench prepare results clean chromium wheelhouse

# pyproject.toml declares the torch family as ranges; constraints.txt pins the exact versions installed here.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

prepare: $(STAMP)
	$(BIN)/amst prepare avdigits

# The product on this machine: API, worker and dashboard on the embedded default (SQLite + SQLite broker in
# ./.amst; DATABASE_URL / BROKER_URL switch to PostgreSQL / Redis), and a demo: AMST-FULL and naive on the same
# avdigits seed and settings (the dataset's recipe, 20 epochs: Doc/results.md), their status changes as they happen,
# then both results side by side and the dashboard's Compare link. Ctrl-C stops everything.
API_PORT    ?= 8000
UI_PORT     ?= 8501
DEMO_EPOCHS ?=
run: prepare
	$(BIN)/amst up --port $(API_PORT) --ui-port $(UI_PORT) --demo configs/avdigits/amst_full.yaml \
		$(if $(DEMO_EPOCHS),--demo-epochs $(DEMO_EPOCHS))

# The browser tests drive Debian's Chromium; install it when it is missing and we may (root).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; }
	@command -v chromium >/dev/null 2>&1 || echo "chromium is not installed (not root): browser tests will be skipped"

# NumPy's OpenBLAS starts a thread per core that spins while it waits; next to torch (one thread in tests) and the
# service processes some tests start, on 2 cores that costs more than it gives: one BLAS thread in tests.
TEST_ENV := OPENBLAS_NUM_THREADS=1

# The whole suite, what CI runs: the quick tier spread over the cores (as test-fast), then the rest in one process
# (unit, in-process API, service stacks, browser: tests/kit/tiers.py says which).
test: $(STAMP) chromium
	$(TEST_ENV) $(BIN)/python -m pytest -n auto -m "$(FAST)"
	$(TEST_ENV) $(BIN)/python -m pytest -m "$(REST)"

# The inner loop: unit tests and in-process API tests on the embedded SQLite store; no service process, browser,
# long training, GPU tier or PostgreSQL variant; spread over the cores by pytest-xdist (about 2 minutes on 2 cores:
# none of them starts a process that another one's could meet, unlike the service tests' shared stacks).
FAST := not service and not browser and not slow and not gpu and not postgresql
REST := service or browser or slow or gpu or postgresql
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n auto -m "$(FAST)"

lint: $(STAMP)
	$(BIN)/ruff check .

PG_BENCH ?= postgresql://postgres@127.0.0.1:5432/test

# Every benchmark prints ratios or percentiles measured side by side in one run; figures in Doc/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/store.py --url $(PG_BENCH)
	$(BIN)/python bench/store.py --url sqlite
	$(BIN)/python bench/api_latency.py --url $(PG_BENCH)
	$(BIN)/python bench/api_latency.py
	$(BIN)/python bench/live_latency.py --pg-url $(PG_BENCH)
	$(BIN)/python bench/ui_render.py
	$(BIN)/python bench/checkpoint.py
	$(BIN)/python bench/load.py --pg-url $(PG_BENCH)

results: prepare
	$(BIN)/python bench/results.py

# For a GPU node with its own PyTorch and no internet (Doc/deploy.md, "Offline GPU nodes and clusters"): wheels of
# every dependency but the torch family for Python $(PY) (default: $(PYTHON)'s, the venv's) on manylinux x86_64, in
# ./wheelhouse, with pytest for bench/gpu_check.sh. SET=all adds the dashboard, video decoding and scipy (over
# 200 MiB). Needs only $(PYTHON) with pip, no venv: it downloads, it installs nothing.
PY  ?=
SET ?= training
WHEELHOUSE ?= wheelhouse
wheelhouse:
	$(PYTHON) tools/wheelhouse.py --set $(SET) --with-tests --dest $(WHEELHOUSE) $(if $(PY),--python-version $(PY))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
