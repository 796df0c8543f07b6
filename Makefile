# Granary. `make run` and `make test` need only Go; everything else is optional.
GO        ?= go
BIN       := bin/granary
PROTOC    ?= protoc
PAC_PIN   := v0.0.0-20240822202345-3c0e61ca19c9
PGG_PIN   := v1.36.12
TEST_FLAGS ?= -race -count=1 -timeout 15m
PROVIDER  ?= automanaged

.PHONY: help chaos run build test test-short bench bench-scale bench-go generate check-generated openapi-lint vet fmt cluster cluster-stop clean

run: ## start one member + gateway on the embedded store, print URL and dev token
	$(GO) run ./cmd/granary dev

build:
	$(GO) build -o $(BIN) ./cmd/granary

test: ## all tests, with the race detector
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test $(TEST_FLAGS) ./...
	@# Several members in one process race inside Proto.Actor (see
	@# testkit.ErrSharedProcessRace); those tests skip under -race and run here.
	$(GO) test -count=1 -timeout 10m ./cluster/... ./testkit/... ./examples/...
	$(GO) test -count=1 -timeout 5m -run 'TestDepartedMemberShowsDead|TestRateLimitAcrossMembers' ./http/gateway/

test-short: ## the fast path: go test -short ./... (long real-process tests skip)
	$(GO) test -short -count=1 ./...

bench: ## Granary vs a hand-written baseline on a real redis-server, same run (BENCH_FLAGS: see bin/bench -h); JSON in bench/results/
	$(GO) build -o $(BIN) ./cmd/granary
	$(GO) build -o bin/bench ./cmd/bench
	./bin/bench -granary $(BIN) $(BENCH_FLAGS)

bench-scale: ## deposits/s and p99 with 1, 2 and 3 members on one redis-server and on a 3-master Redis Cluster, and the worst wait when one member is killed -9 (needs redis-server)
	$(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime=1x -timeout 20m -v ./cmd/granary/ | grep -E 'members=|deposits/s|^(ok|FAIL|---)'

bench-go: ## go test benchmarks (speed and memory targets live here, not in tests)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=20x ./...

generate: ## regenerate protobuf code (Debian protoc + Go-installed plugin)
	@command -v $(PROTOC) >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PGG_PIN)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(PROTOC) -I messages --go_out=messages --go_opt=paths=source_relative messages/*.proto
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(PROTOC) -I examples/wallet -I messages --go_out=examples/wallet --go_opt=paths=source_relative examples/wallet/wallet.proto

check-generated: generate ## fail when committed generated code is stale
	git diff --exit-code -- messages/ examples/

openapi-lint: ## lint docs/openapi.yaml with the pinned Redocly CLI (needs npx); any error or warning fails
	./scripts/openapi-lint

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .cluster .chaos

cluster: ## real redis-server + 3 members on 127.0.0.1:8081-8083, logs in .cluster/; PROVIDER=etcd: membership through an etcd it starts on 127.0.0.1:2389
	PROVIDER=$(PROVIDER) ./scripts/cluster.sh start

cluster-stop: ## stop exactly what `make cluster` started
	./scripts/cluster.sh stop

chaos: ## Jepsen-style run on real processes: faults, then history and journal checks (CHAOS_DURATION, CHAOS_CYCLES, CHAOS_*_PORT, CHAOS_DIR)
	$(GO) build -o $(BIN) ./cmd/granary
	$(GO) build -o bin/chaos ./cmd/chaos
	CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_CYCLES=$(CHAOS_CYCLES) CHAOS_GRANARY=$(BIN) ./bin/chaos

help: ## list the documented targets (those whose rule line has a double-hash comment)
	@awk '/^[a-zA-Z][a-zA-Z0-9_-]*:.*## / { t = $$0; sub(/:.*/, "", t); d = $$0; sub(/^[^#]*## /, "", d); printf "  %-16s %s\n", t, d }' $(MAKEFILE_LIST)
