# Two commands for a new user: `make demo` and `make test`. Each builds .venv from the pinned
# constraints on a fresh machine, then runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real HPO surrogates for the YAHPO tests (they skip, saying so, where the folder is absent).
METAPRIOR_YAHPO_DATA ?= $(abspath ../shared/data/yahpo)
export METAPRIOR_YAHPO_DATA

.PHONY: demo test lint clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,bench,service]"
	touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m metaprior demo

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -x tests

# The whole standard benchmark protocol on this commit (hours on 2 cores; resumable: run it again
# after an interruption), then its report into benchmarks/results/v3/ and the README.
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.protocol --protocol standard \
		--out benchmarks/results/v3 --workers $(or $(WORKERS),2)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
