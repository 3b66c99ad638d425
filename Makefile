# Strata — the commands a developer and CI use. `make help` lists them.

CARGO ?= cargo
RUN_ARGS ?=

.PHONY: help run build test test-image bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

run: ## run the data service: every context on embedded SQLite in ./var, on 127.0.0.1:50051
	$(CARGO) run --locked -p strata-data-service --bin data-service -- $(RUN_ARGS)

build: ## build everything
	$(CARGO) build --locked --workspace --all-targets

# cargo-nextest when installed (one process per test, one summary line), else cargo test.
test: test-image ## run every test (PostgreSQL ones in containers)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --locked --workspace"; $(CARGO) nextest run --locked --workspace; \
	else \
		echo "$(CARGO) test --locked --workspace"; $(CARGO) test --locked --workspace; \
	fi

# The PostgreSQL image the tests start (built from Debian packages where no
# registry can be reached; about a minute, once). Skipped when the tests are
# pointed at an existing server with STRATA_TEST_DATABASE_URL.
test-image: ## make sure the PostgreSQL test image exists
	@if [ -z "$${STRATA_TEST_DATABASE_URL:-}" ]; then \
		image=$$(bash docker/postgres/ensure-image.sh) && echo "PostgreSQL test image: $$image"; \
	fi

# Strata against pgbench (the limit) and a plain Python stack, in one run; writes
# target/bench/report.md, report.json and chart.svg. BENCH_SECONDS sets the
# measuring time per point (default 10); see README.md, "Benchmarks".
bench: ## benchmarks: Strata vs pgbench vs plain Python, side by side
	@command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
	$(CARGO) build --locked --release -p strata-data-service -p strata-bench
	$(CARGO) run --locked --release -q -p strata-bench

lint: ## formatting and clippy, warnings denied (as CI)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

clean: ## remove build output and the embedded databases
	$(CARGO) clean
	rm -rf var
