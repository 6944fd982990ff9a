# taxifare-flow entry points. Every target is one line; the work is in the `taxifare` CLI.
#   make demo   — set up and run the whole simulation on the embedded defaults
#   make test   — set up and run every test
#   make test_fast — the tests that start no server and run no long loop (docs/testing.md)
# Each `taxifare` command has a target of its name calling it; the targets of this Makefile
# only carry a `## name: what it does` line, which `make list` prints after the CLI's list.
.DEFAULT_GOAL := list
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TAXIFARE := $(BIN)/taxifare
STAMP := $(VENV)/.taxifare-installed
# Compiled Rust is kept outside the checkout, shared by every clone and worktree of this
# machine: a fresh clone compiles its own crate (a minute) instead of arrow, parquet, SQLite and
# PyO3 again (eight minutes on 2 cores). Cargo keys each artifact by its sources and flags, and
# locks the directory while it builds; set CARGO_TARGET_DIR to choose another (scripts/test.sh
# takes the same default). This crate's own artifacts are not shared: their names carry no
# hash of the checkout, so a checkout whose sources are older than another's build would take
# that build as its own; its fingerprints are forgotten before each build (FORGET_CRATE).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/taxifare-flow/target
FORGET_CRATE := rm -rf "$(CARGO_TARGET_DIR)"/*/.fingerprint/taxifare-flow-*
RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock pyproject.toml

.PHONY: install demo test test_fast dev_test list show_env reinstall_package reset_data_sources show_data_sources \
	get_new_month import_csv run_flow validate run_all_months report watermark check backfill unlearn mlflow_ui psql reset_bq_tables show_bq_tables \
	push_month_to_bq bq_cost bench wheel api run_api serve_flow init

# Set-up: a virtualenv with the package built from source; redone only when Rust or the
# project metadata changed (Python sources are installed editable). uv installs the
# dependencies (the same resolution as pip, in seconds rather than minutes). Bytecode is compiled
# at install, as pip does and uv does not by default: under PYTHONDONTWRITEBYTECODE (set on CI
# machines and in many images) nothing would ever be cached, and every process, the CLI's and
# each Prefect or MLflow server's, would compile mlflow, Prefect and pandas again (seconds each).
## install: set up .venv with the package built from source (redone when Rust or the metadata change)
install: $(STAMP)
$(STAMP): $(RUST_SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv>=0.9,<1" "maturin>=1.9.4,<2"
	$(FORGET_CRATE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode --no-build-isolation --reinstall-package taxifare-flow -e ".[dev]"
	$(BIN)/python -m compileall -q python
	@touch $(STAMP)

demo: install ; $(TAXIFARE) demo $(if $(MONTHS),--months $(MONTHS))
## test: set up and run every test (cargo test, stubtest, mypy, pytest)
test: install ; bash scripts/test.sh
## test_fast: the fast tier: cargo test, stubtest, mypy, and the tests that start no server and run no long loop
test_fast: install ; bash scripts/test.sh fast
## dev_test: same as test
dev_test: test
list: install ; @$(TAXIFARE) list && echo "make NAME runs taxifare NAME; the Makefile's own targets:" && awk '/^## [a-z_]+: /{t=$$2; sub(/:$$/, "", t); sub(/^## [a-z_]+: /, ""); printf "  %-18s %s\n", t, $$0}' $(firstword $(MAKEFILE_LIST))
show_env: install ; @$(TAXIFARE) show_env
init: install ; $(TAXIFARE) init $(if $(FORCE),--force)
## reinstall_package: rebuild the Rust core and reinstall the package into .venv
reinstall_package: ; rm -f $(STAMP) && $(MAKE) install
reset_data_sources: install ; $(TAXIFARE) reset_data_sources
show_data_sources: install ; $(TAXIFARE) show_data_sources
get_new_month: install ; $(TAXIFARE) get_new_month
import_csv: install ; $(TAXIFARE) import_csv "$(CSV)" $(if $(REPLACE),--replace)
run_flow: install ; $(TAXIFARE) run_flow $(if $(ACCEPT),--accept)
validate: install ; $(TAXIFARE) validate
run_all_months: install ; $(TAXIFARE) run_all_months $(if $(MONTHS),--months $(MONTHS))
report: install ; $(TAXIFARE) report
watermark: install ; $(TAXIFARE) watermark
check: install ; $(TAXIFARE) check $(if $(DEEP),--deep) $(if $(REPAIR),--repair)
backfill: install ; $(TAXIFARE) backfill $(if $(FEATURE_VERSION),--feature-version $(FEATURE_VERSION))
unlearn: install ; $(TAXIFARE) unlearn $(if $(MONTH),--month $(MONTH)) $(if $(ROWS),--rows $(ROWS))
mlflow_ui: install ; $(TAXIFARE) mlflow_ui
psql: install ; $(TAXIFARE) psql
reset_bq_tables: install ; $(TAXIFARE) reset_bq_tables
show_bq_tables: install ; $(TAXIFARE) show_bq_tables
push_month_to_bq: install ; $(TAXIFARE) push_month_to_bq
bq_cost: install ; $(TAXIFARE) bq_cost
serve_flow: install ; $(TAXIFARE) serve_flow
api: install ; $(TAXIFARE) api $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))
## run_api: the prediction API (the course's name for `make api`; HOST=, PORT=)
run_api: install ; $(TAXIFARE) api $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))
## bench: every benchmark; writes docs/benchmarks.md
bench: install ; bash scripts/bench.sh
## wheel: a manylinux2014 abi3 wheel in dist/ (release profile, zig linker), checked by auditwheel show
wheel: install ; rm -f dist/taxifare_flow-*.whl && $(FORGET_CRATE) && PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/maturin build --release --zig --compatibility manylinux2014 --out dist && $(BIN)/auditwheel show dist/taxifare_flow-*.whl
