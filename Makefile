# The targets a person uses are the ones CI uses (.ci/run calls `make test`).
# Every target does its own set-up and is idempotent.

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
RUST_SOURCES := $(shell find core_rs -name '*.rs' 2>/dev/null) Cargo.toml $(wildcard protos/stock/v1/*.proto)
export STAMP_DIR := $(STAMPS)

.PHONY: run test test-rust test-python bench lint services build venv gen clean

$(STAMPS)/venv: pyproject.toml scripts/python_deps.py
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) scripts/python_deps.py pyproject.toml > $(STAMPS)/requirements.txt
	$(PY) -m pip install -q -r $(STAMPS)/requirements.txt
	@touch $@

venv: $(STAMPS)/venv

# maturin builds core_rs (release profile) and installs it into .venv as service._core.
$(STAMPS)/build: $(STAMPS)/venv $(RUST_SOURCES) pyproject.toml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release -q
	@touch $@

build: $(STAMPS)/build

services:
	@scripts/ensure_services.sh

gen: $(STAMPS)/venv
	scripts/gen_protos.sh

run: build services
	scripts/run.sh

LOADGEN_MANIFEST := --manifest-path loadtest/loadgen/Cargo.toml

test-rust:
	cargo test --quiet
	cargo test $(LOADGEN_MANIFEST) --quiet

test-python: build services
	$(PY) -m pytest -q

test: build services test-rust test-python

bench: build services
	scripts/bench.sh

lint: $(STAMPS)/venv
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	cargo fmt $(LOADGEN_MANIFEST) --check
	cargo clippy $(LOADGEN_MANIFEST) --all-targets -- -D warnings
	$(VENV)/bin/ruff check service tests loadtest scripts
	scripts/gen_protos.sh --check

clean:
	rm -rf $(STAMPS) target
