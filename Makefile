# GenieHive make targets. `make test` is the test command CI runs.
GO ?= go

.PHONY: build test test-stress test-mutants ollama images dev bench-fleet
build:
	CGO_ENABLED=0 $(GO) build -o bin/geniehive ./cmd/geniehive

# Installs redis-server when missing, starts a private one, builds (or
# reuses) a real Ollama, runs go vet and go test -race ./... against them.
test:
	bash scripts/test.sh

# The Redis-touching packages and the policy-reload tests with -race
# -count=3 beside a CPU hog of twice the core count (a loaded host). Slow:
# not part of CI's plain suite.
test-stress:
	bash scripts/test.sh --stress

# Mutation check of the chaos suite: builds the images with the mutants tag
# and runs each deliberate bug (edge/mutant.go) against the scenarios that
# must catch it; fails if a mutant survives. Slow (Docker, several minutes
# per scenario). MUTANTS="failover_off" narrows the list.
test-mutants:
	bash scripts/mutants.sh

# The fleet benchmarks of docs/CAPACITY.md (issue 12): a 1,000-node fleet
# churning against two edges, request throughput beside a 2-node fleet,
# snapshot and routing benchmarks, and 10,000 nodes once. ~10 minutes; not
# part of make test. NODES, BIG_NODES, DURATION, OUT tune it.
bench-fleet:
	bash scripts/bench-fleet.sh

# Builds the real Ollama the tests run against (cached per version) and
# prints its path.
ollama:
	@bash scripts/ollama.sh

# Builds the geniehive, Redis and HAProxy images locally (no registry needed).
images:
	bash deploy/build-images.sh

dev:
	$(GO) run ./cmd/geniehive dev
