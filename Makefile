GO ?= go
ROOT ?= ./var
PKGS := ./...

.PHONY: build run test test-deps bench fuzz vet clean

build:
	$(GO) build -o bin/repoctl ./cmd/repoctl

## run: the daemon on ./var with the embedded default config; a signing key
## is generated on first start.
run: build
	./bin/repoctl daemon --root $(ROOT)

test-deps:
	./.ci/install-test-deps

## test: install the real peers (rpm, createrepo_c, dnf, sshd, gpg) and run
## every test against them.
test: test-deps
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 40m $(PKGS)

## bench: side-by-side benchmarks against createrepo_c, rpmsign and a serial
## rollout; each prints a ratio.
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./metadata ./sign ./repo ./upgrade

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadPackage -fuzztime 60s ./metadata

clean:
	rm -rf bin
