# webhook-worker: the two commands a newcomer runs are `make demo` and `make test`.
# Both install what is missing (libpq-dev, postgresql), start a throwaway PostgreSQL when
# DATABASE_URL is unset, and stop it afterwards.

SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift
BIN := .build/debug/webhook-worker

.PHONY: all deps build test demo run clean

all: build

deps:
	@scripts/ensure-deps

# The schema is compiled into the binary; regenerate it from sql/ before every build.
build: deps
	@scripts/embed-sql
	$(SWIFT) build

test: deps
	@scripts/embed-sql
	$(SWIFT) build --build-tests
	scripts/with-postgres $(SWIFT) test --skip-build

demo: build
	scripts/with-postgres scripts/demo

run: build
	scripts/with-postgres $(BIN) run --allow-http --allow-private-networks

clean:
	rm -rf .build .pg
