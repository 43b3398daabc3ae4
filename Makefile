GO ?= go
ROOT ?= ./var
PKGS := ./...

.PHONY: build run test test-deps bench bench-100k fuzz fuzz-long vet clean testdata-rpm man

## build: bin/repoctl, stamped with the VCS revision it is built from
## (`repoctl --version`) whatever GOFLAGS says.
build:
	$(GO) build -buildvcs=auto -o bin/repoctl ./cmd/repoctl

## man: one man page per command (repoctl-add.1, …), from their help text,
## into $(MANDIR)/; `man -l man/repoctl-add.1` reads one in place.
MANDIR ?= man
man: build
	rm -rf $(MANDIR) && ./bin/repoctl gen-man $(MANDIR)

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
## rollout; each prints a ratio. Includes the 100,000-package ones
## (bench-100k); the first run generates their corpus and seeded root under
## $TMPDIR (about 2 minutes on 2 cores: rpmpack packages, an ed25519-signed
## seed), and BenchmarkCreateRepo's rpmbuild-made 10,000-package corpus
## (11 to 15 minutes); later runs reuse them.
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 150m ./metadata ./sign ./repo ./upgrade

## bench-100k: only the 100,000-package benchmarks (issue 13): createrepo
## full / --update +1 / --skip-stat against createrepo_c with peak RSS, the
## in-process +1 publish (REPOCTL_BENCH_PROFILE=DIR writes pprof profiles),
## the daemon's drop→visible (with a per-stage breakdown), publish time and
## RSS, and a burst of 100,000 drop-ins against the signing rate of the same
## key (BenchmarkScaleIngest100k; REPOCTL_BENCH_INGEST_N=20000 for a quick look).
bench-100k: test-deps
	$(GO) test -run '^$$' -bench Scale -benchtime 1x -timeout 150m ./metadata ./repo

## fuzz: each fuzz target for FUZZTIME (go test fuzzes one target per run).
## A short -fuzzminimizetime keeps a worker from spending the run
## minimizing one multi-KB RPM instead of fuzzing.
FUZZTIME ?= 60s
FUZZMINIMIZE ?= 1s
FUZZ_TARGETS := internal/rpmhdr:FuzzParse internal/nevra:FuzzFileName metadata:FuzzReadPackage \
	metadata:FuzzParseExisting metadata:FuzzParseComps metadata:FuzzParseUpdateInfo sign:FuzzReadPackage sign:FuzzPayloadDigestTag repo:FuzzLoadConfig repo:FuzzAdd repo:FuzzPlacement \
	upgrade:FuzzParseNEVRA
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; log=$$(mktemp); echo "== $$pkg $$fn"; \
	  if ! $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./$$pkg >$$log 2>&1; then \
	    cat $$log; rm -f $$log; exit 1; fi; \
	  grep 'execs:' $$log | tail -n 1; tail -n 1 $$log; rm -f $$log; \
	done

## fuzz-long: the nightly kind of run, 10 minutes a target.
fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

clean:
	rm -rf bin man

## testdata-rpm: rebuild the README's quick-start package from its spec.
testdata-rpm:
	t=$$(mktemp -d) && SOURCE_DATE_EPOCH=1795305600 rpmbuild -bb --define "_topdir $$t" \
	  --define "_buildhost build.repoctl.test" --define "use_source_date_epoch_as_buildtime 1" \
	  --define "clamp_mtime_to_source_date_epoch 1" testdata/specs/hello.spec >/dev/null && \
	  cp $$t/RPMS/noarch/hello-1.0-1.el9.noarch.rpm testdata/ && rm -rf $$t
