# The two commands a newcomer needs: `make demo` and `make test`.
# Both do their own set-up (Debian packages, npm ci, build) first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
TESTS ?=

.PHONY: help setup build lint test test-unit test-int test-e2e demo bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## install what the project needs (etcd from Debian, npm packages from the lockfile)
	@scripts/setup.sh

build: setup ## compile every package (tsc -b)
	npx tsc -b

lint: build ## type-check tests, ESLint and Prettier
	npx tsc -p tsconfig.tests.json
	npx eslint .
	npx prettier --check . >/dev/null

test: lint ## everything: lint, unit, integration (real etcd/systemd) and e2e tests
	node scripts/run-tests.mjs $(TESTS)

test-unit: build ## only the fast unit tests
	node scripts/run-tests.mjs unit

test-int: build ## only integration tests (root, real etcd and systemd)
	node scripts/run-tests.mjs int

test-e2e: build ## only the end-to-end acceptance suite
	node scripts/run-tests.mjs e2e

demo: build ## boot a local 3-machine cluster with fleetd and play the walkthrough (as root)
	node --conditions=source --import tsx scripts/demo.ts

bench: build ## measure every target P1-P12 and print them against the goals; QUICK=1 takes minutes (as root)
	node --conditions=source --import tsx bench/run.ts $(if $(filter 1,$(QUICK)),--quick)

clean: ## remove build output
	rm -rf packages/*/dist packages/*/tsconfig.tsbuildinfo
