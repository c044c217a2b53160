# Two commands on a fresh machine (Python 3.11 + pip): `make run` and `make test`. Both bootstrap .venv.
# torch is installed first, pinned, and then passed as a constraint to every later pip call (see constraints.txt):
# anything else lets the resolver pull a multi-GB CUDA build.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/default.yaml
OUT    ?= runs/default

export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export MPLCONFIGDIR ?= $(CURDIR)/$(VENV)/mplconfig
export NUMBA_CACHE_DIR ?= $(CURDIR)/$(VENV)/numba-cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@if $(BIN)/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then echo "error: a CUDA package was pulled in" >&2; exit 1; fi
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/fedsered simulate $(CONFIG) --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf runs .fedsered_cache .pytest_cache .mypy_cache .ruff_cache
