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

bench: prepare
	$(BIN)/python bench/trainer.py

results: prepare
	$(BIN)/python bench/results.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
