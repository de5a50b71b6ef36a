# Every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export AMST_DATA_ROOT ?= $(CURDIR)/data

.PHONY: venv run test lint bench prepare results clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

prepare: $(STAMP)
	$(BIN)/amst prepare avdigits

# Until the run service exists: train the demo (AMST-FULL on avdigits, preset hard) from the CLI.
run: prepare
	$(BIN)/amst train configs/avdigits/amst_full.yaml --set epochs=3 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/python -m pytest

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

results: prepare
	$(BIN)/python bench/results.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
