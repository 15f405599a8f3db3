# go-ds-cluster. `make demo` and `make test` are the two commands a newcomer
# needs; the README explains both.
GO ?= go
GOFLAGS ?=
export GOFLAGS

BINARIES := dscfg dscluster dsclient

.PHONY: all build $(BINARIES) dschaos ipfs test test-ipfs test-mongodb demo bench vs-seaweedfs chaos fuzz vet clean

all: build

build: $(BINARIES)

# The seed README runs `make dscfg` and then `./dscfg`: binaries go to the
# repository root.
$(BINARIES):
	$(GO) build -o $@ ./cmd/$@

# kubo v0.43.1 with the clusterds plugin preloaded. The plugin is its own Go
# module (ipfsplugin/), so kubo's dependencies stay out of the core build.
ipfs:
	cd ipfsplugin && $(GO) build -o ../ipfs ./cmd/ipfs

vet:
	$(GO) vet ./...

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# The kubo tests: CID equality with ipfs add, a kubo daemon on a live
# cluster, and the plugin's start-up failures. They build kubo (minutes from
# a cold cache).
test-ipfs:
	cd ipfsplugin && $(GO) vet ./...
	DSCLUSTER_TEST_IPFS=1 $(GO) test -count=1 -timeout 30m -run 'TestIPFS' -v ./e2e/

# The MongoDB shard store (mongods) against FerretDB, a MongoDB-compatible
# server in Go: go-datastore's conformance suite, large values, a database
# that stops under a cluster (mongotest/, its own module, so FerretDB stays
# out of the core build), then the Getting Started with every node on
# --mongodb. The conformance suite's writes take about 10 minutes.
test-mongodb:
	cd mongotest && $(GO) vet ./... && $(GO) test -count=1 -timeout 40m ./...
	DSCLUSTER_TEST_MONGODB=1 $(GO) test -count=1 -timeout 20m -run 'OnMongoDB' -v ./e2e/

demo: build
	bash scripts/demo.sh

# The standard benchmark suite on a local 6-node 4+2 cluster, with a raw
# flatfs baseline in the same run; writes bench/results/latest.md.
# BENCH_DURATION (default 10s) is the time per workload and target;
# BENCH_STORE=flatfs runs the nodes on go-ds-flatfs instead of the volume
# store; BENCH_STORE=mongodb on MongoDB ($$MONGODB_URI, ending in /, else a
# FerretDB built from mongotest/).
bench: build
	bash scripts/bench.sh

# SeaweedFS (1 master, 6 volume servers, 3 copies) beside our 6-node 4+2
# cluster on this machine, put and get of 256 KiB; builds SeaweedFS from the
# module proxy the first time (about 10 minutes). COUNT values (3000).
vs-seaweedfs: build
	bash scripts/vs-seaweedfs.sh

# A fault run on real dscluster processes (chaos/, cmd/dschaos): a seeded
# workload while a nemesis kills and pauses nodes, every read checked
# against a model; then heal, settle, read all, kill m nodes, read all.
# SEED, DURATION, NODES and FAULTS (kill,pause,out,leader,join,drain) are
# variables;
# CHAOS_FLAGS passes more (see ./dschaos -h).
SEED ?= 1
DURATION ?= 90s
NODES ?= 7
FAULTS ?= kill,pause,out,leader,join,drain,reboot
CHAOS_FLAGS ?=
dschaos:
	$(GO) build -o $@ ./cmd/dschaos

chaos: build dschaos
	./dschaos --bin=. --seed=$(SEED) --duration=$(DURATION) --nodes=$(NODES) --faults=$(FAULTS) $(CHAOS_FLAGS)

# Run each fuzzer for a while (CI only replays the checked-in corpus).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeHeader -fuzztime=$(FUZZTIME) ./coding/
	$(GO) test -run='^$$' -fuzz=FuzzParseShard -fuzztime=$(FUZZTIME) ./coding/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeEntry -fuzztime=$(FUZZTIME) ./index/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=$(FUZZTIME) ./wire/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeSumsPayload -fuzztime=$(FUZZTIME) ./wire/

clean:
	rm -f $(BINARIES) dschaos ipfs
