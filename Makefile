# webhook-worker: the two commands a newcomer runs are `make demo` and `make test`.
# Both install what is missing (libpq-dev, postgresql), start a throwaway PostgreSQL when
# DATABASE_URL is unset, and stop it afterwards.

SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift
BIN := .build/debug/webhook-worker

.PHONY: all deps server-deps bench-deps build test check-deploy compose-check demo run bench soak chaos clean schema-snapshot

all: build

deps:
	@scripts/ensure-deps

# Tests, chaos and bench start PostgreSQL servers of their own (restarts, pgbench) even when
# DATABASE_URL is set, so they need the server package either way.
# The tests also run the delivery and replica tests through PgBouncer (transaction pooling), and
# deliveries through a real egress proxy (tinyproxy).
server-deps:
	@NEED_PG_SERVER=1 NEED_PGBOUNCER=1 NEED_TINYPROXY=1 scripts/ensure-deps

# The benchmark also needs nginx: its throughput receiver (started by scripts/bench, not as a service).
bench-deps:
	@NEED_PG_SERVER=1 NEED_NGINX=1 scripts/ensure-deps

# The SQL of sql/ is compiled into the binary by the EmbedSQL plugin (Plugins/EmbedSQL).
build: deps
	$(SWIFT) build

# The Swift sources as swift-format (shipped with the toolchain) wants them, per .swift-format.
# `make format` rewrites them in place.
SWIFT_FILES = $(shell git ls-files 'Sources/*.swift' 'Tests/*.swift' 'Plugins/*.swift' Package.swift)

# The Python tools (scripts/webhook_tools, its launchers, check-deploy.py, console-test.py) as
# ruff wants them, per pyproject.toml; scripts/python-tools installs ruff and pytest into
# .build-tools/venv (pinned in scripts/tools-requirements.txt) the first time.
lint:
	@$(SWIFT) format lint --strict --parallel $(SWIFT_FILES) && echo "swift format lint: clean"
	@scripts/check-lines
	@scripts/python-tools lint

format:
	$(SWIFT) format format --in-place --parallel $(SWIFT_FILES)

# The web console's browser test needs Debian's chromium and chromium-driver (NEED_BROWSER=1).
# The Python tools' unit tests (scripts/tests: the chaos checks and the bench's figures on
# recorded inputs) run first: they need no build and no database.
# Swift Testing starts every test at once unless told otherwise; on two cores 284 tests at once
# made single tests 50 to 100 times slower than alone. Six at a time ran the suite in 150 s
# instead of 187 s, each test nearer its own pace (docs/development.md).
TEST_WIDTH ?= 6
test: server-deps lint
	scripts/python-tools test
	@NEED_BROWSER=1 scripts/ensure-deps
	$(SWIFT) build --build-tests
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_WIDTH) scripts/with-postgres $(SWIFT) test --skip-build
	scripts/with-postgres scripts/console-test
	scripts/check-deploy
	CHAOS_SECONDS=20 WEBHOOK_WORKER_BIN=.build/debug/webhook-worker scripts/chaos

# Dashboards, alert rules (with their unit tests), Kubernetes manifests and the compose file,
# checked offline; installs promtool (Debian's prometheus) and a pinned Python validator.
check-deploy:
	scripts/check-deploy

# docker-compose.yml and the Dockerfile for real, on Podman (no Docker engine needed): builds the
# image, brings the stack up and checks it from outside, then removes it. About 20 minutes on a
# fresh machine (most of it the release build inside the image); not part of `make test`.
compose-check:
	scripts/compose-check

demo: build
	scripts/with-postgres scripts/demo

run: build
	scripts/with-postgres $(BIN) run --allow-http --allow-private-networks

# Figures, not pass/fail: a release build on a throwaway PostgreSQL with fsync and
# synchronous_commit on (and pg_stat_statements loaded), nginx as the throughput receiver.
# Prints a table with the targets beside the figures and writes .bench/results-*.json.
bench: bench-deps
	$(SWIFT) build -c release --product webhook-worker
	PG_TUNING=durable WEBHOOK_WORKER_BIN=.build/release/webhook-worker scripts/with-postgres scripts/bench

# Faults on purpose: three release-mode replicas killed, stopped and cut off from a PostgreSQL
# that restarts, while events arrive; checks that nothing is lost (CHAOS_SECONDS, default 60).
# It starts a PostgreSQL of its own, so that it can restart it. Then a long search of the keyed
# claim's interleavings (STRESS_SEEDS, default 120; make test runs 16).
chaos: server-deps
	$(SWIFT) build -c release --product webhook-worker
	WEBHOOK_WORKER_BIN=.build/release/webhook-worker scripts/chaos
	$(SWIFT) build --build-tests
	STRESS_STRICT=1 STRESS_SEEDS=$${STRESS_SEEDS:-120} scripts/with-postgres $(SWIFT) test --skip-build --filter KeyedClaimStress

# Resource bounds under a steady load (10 minutes by default; not part of make test): prints the
# worker's memory, open files and database connections every 30 s and fails if they grow.
# The receiver is nginx, as in the benchmark.
soak: deps
	@NEED_NGINX=1 scripts/ensure-deps
	$(SWIFT) build -c release --product webhook-worker
	BENCH_SOAK_SECONDS=$${SOAK_SECONDS:-600} WEBHOOK_WORKER_BIN=.build/release/webhook-worker scripts/with-postgres scripts/bench

clean:
	rm -rf .build .pg

# The schema snapshots (sql/job_queue/schema.sql, sql/webhook_delivery/schema.sql) rewritten
# from freshly migrated databases; SchemaSnapshotTests fails when they differ.
schema-snapshot: server-deps
	$(SWIFT) build --build-tests
	SCHEMA_SNAPSHOT_WRITE=1 scripts/with-postgres $(SWIFT) test --skip-build --filter SchemaSnapshot
