# Two entry points: `make demo` (export a sample model, verify it in tract) and `make test`.
# The virtualenv and the cargo target live under $HOME so that every checkout reuses them.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/torch_to_nnef
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
export CARGO_TARGET_DIR ?= $(CACHE)/target
export PYO3_PYTHON := $(PY)
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
REQ_HASH := $(shell sha256sum requirements-dev.txt | cut -c1-12)
VENV_STAMP := $(VENV)/.ready-$(REQ_HASH)
RUST_SOURCES := $(shell find rust -name '*.rs') Cargo.toml


.PHONY: demo test build venv lint test-rust test-python test-llm-previous-transformers coverage tract-releases llm-sweep bench clean-cache

demo: build
	$(PY) -m torch_to_nnef.demo

test: lint test-rust test-python test-llm-previous-transformers

venv: $(VENV_STAMP)
$(VENV_STAMP): requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Full (editable) install the first time in a checkout; afterwards only the extension is rebuilt.
build: venv
	if $(PY) -c "import sys, torch_to_nnef as t; sys.exit(not t.__file__.startswith('$(CURDIR)/python/'))" 2>/dev/null; \
	then $(VENV)/bin/maturin develop --release --quiet --skip-install; \
	else $(VENV)/bin/maturin develop --release --quiet; fi

lint: build
	cargo fmt --check
	cargo clippy --release --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches tools
	$(VENV)/bin/ruff format --check python tests benches tools
	$(VENV)/bin/mypy
	cd /tmp && $(PY) -m mypy.stubtest torch_to_nnef._rust

test-rust:
	cargo test --release

test-python: build
	$(PY) -m pytest -q -n auto tests

# The LLM command must work with the transformers release before the pinned one too: its families
# are exported again with that release laid over the virtualenv's (installed once, cached).
PREVIOUS_TRANSFORMERS := 5.23.0
PREVIOUS_TRANSFORMERS_DIR := $(CACHE)/transformers-$(PREVIOUS_TRANSFORMERS)
$(PREVIOUS_TRANSFORMERS_DIR)/.ready: | venv
	rm -rf $(PREVIOUS_TRANSFORMERS_DIR)
	$(PY) -m pip install --quiet --no-deps --target $(PREVIOUS_TRANSFORMERS_DIR) transformers==$(PREVIOUS_TRANSFORMERS)
	touch $@

test-llm-previous-transformers: build $(PREVIOUS_TRANSFORMERS_DIR)/.ready
	T2N_EXPECT_TRANSFORMERS=$(PREVIOUS_TRANSFORMERS) PYTHONPATH=$(PREVIOUS_TRANSFORMERS_DIR) \
		$(PY) -m pytest -q -n auto tests/llm/test_llm.py -k "release_under_test or runs_like_transformers or (alike_layers and (llama or moe))"

# Runs the whole suite, which measures which operators each passing test translated, and regenerates
# docs/supported_ops.md from that record (a plain `make test` fails when the page differs from it);
# the record itself is kept in the cache for inspection.
coverage: build
	T2N_RECORD_OP_CASES=$(CACHE)/op_cases.json $(PY) -m pytest -q -n auto tests

# docs/tract_releases.json: the op-table cases run in tract releases from PyPI (installed under
# $(PROBE_DIR)); the supported-op page reads each kind's oldest release from it (then `make coverage`).
PROBE_DIR ?= $(HOME)/.cache/torch_to_nnef/tract-releases
PROBE_RELEASES ?= 0.21.5 0.21.13 0.22.1 0.23.0 0.23.1 0.23.2 0.23.3 0.23.5 0.23.6 0.23.7 0.23.8 0.23.9
tract-releases: build
	rm -rf $(PROBE_DIR)/ops.json $(PROBE_DIR)/kinds.json $(PROBE_DIR)/refused.json $(PROBE_DIR)/results.json $(PROBE_DIR)/cases
	$(PY) tools/probe_tract_releases.py $(PROBE_DIR) $(PROBE_RELEASES)
	cp $(PROBE_DIR)/floors.json docs/tract_releases.json

# docs/supported_llms.json and docs/supported_llms.md: every causal LM type of the pinned transformers
# exported as a tiny random model and checked in tract (30 to 60 minutes; tools/llm_sweep.py --types a,b
# runs some types again). `make test` checks the page against the record and a slice of the families.
LLM_SWEEP_JOBS ?= 1
llm-sweep: build
	$(PY) tools/llm_sweep.py --jobs $(LLM_SWEEP_JOBS)

bench: build
	$(PY) benches/bench_dat_write.py
	$(PY) benches/bench_q4_0.py
	$(PY) benches/bench_q4_0_model.py
	$(PY) benches/bench_runner.py
	$(PY) benches/bench_tensor_export.py
	$(PY) benches/bench_export.py
	$(PY) benches/bench_recurrent.py
	$(PY) benches/bench_quantized.py
	$(PY) benches/bench_f16_precision.py
	$(PY) benches/bench_llm.py

clean-cache:
	rm -rf $(CACHE)
