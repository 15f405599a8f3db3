# go-ds-cluster. `make demo` and `make test` are the two commands a newcomer
# needs; the README explains both.
GO ?= go
GOFLAGS ?=
export GOFLAGS

BINARIES := dscfg dscluster dsclient

.PHONY: all build $(BINARIES) test test-short demo fuzz vet clean

all: build

build: $(BINARIES)

# The seed README runs `make dscfg` and then `./dscfg`: binaries go to the
# repository root.
$(BINARIES):
	$(GO) build -o $@ ./cmd/$@

vet:
	$(GO) vet ./...

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

demo: build
	bash scripts/demo.sh

# Run each fuzzer for a while (CI only replays the checked-in corpus).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeHeader -fuzztime=$(FUZZTIME) ./coding/
	$(GO) test -run='^$$' -fuzz=FuzzParseShard -fuzztime=$(FUZZTIME) ./coding/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeEntry -fuzztime=$(FUZZTIME) ./index/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=$(FUZZTIME) ./wire/

clean:
	rm -f $(BINARIES)
