# Two commands matter: `make demo` and `make test`. Each bootstraps .venv from the hashed lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench lock kube-binaries tools clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/b2ckeys demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) kube-binaries tools
	$(BIN)/pytest $(PYTEST_ARGS)

# kube-apiserver and etcd for tests/cluster, built from the Go module proxy on first use and
# cached per user and version (about 8 minutes once on 2 cores; a fraction of a second afterwards).
kube-binaries:
	scripts/kube-binaries --print-dir

# helm, promtool, the Argo CD Lua harness (gopher-lua) and a cert-manager controller for the
# tests, built the same way into ${XDG_CACHE_HOME:-~/.cache}/b2ckeys/tools (about 45 minutes once
# on 2 busy cores for all four, promtool half of it; two seconds afterwards). scripts/go-tools
# --help says which versions.
tools:
	scripts/go-tools

# The README's Performance figures: bench_scale on the real kube-apiserver (N=1000 key sets; most
# of the ~10 minutes), then the client, emulator and key material micro-benchmarks.
# bench_scale's other sizes run by hand: `.venv/bin/python benchmarks/bench_scale.py --help`.
BENCH_ARGS ?=
bench: $(STAMP) kube-binaries
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_ARGS)
	for b in graph_client graph_emulator kube_emulator keymaterial; do \
		$(BIN)/python benchmarks/bench_$$b.py || exit 1; done

# Regenerate the hashed lock after changing dependencies in pyproject.toml.
lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra emulators --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
