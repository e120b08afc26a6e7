# Portico's build. Every target installs or builds what it needs; outputs go
# to bin/ and .cache/ (both ignored).

SHELL          := /bin/bash
.SHELLFLAGS    := -eu -o pipefail -c
GO             ?= go
K8S_VERSION    := v1.36.3
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.21.0
K8S_BINS       := $(CURDIR)/.cache/k8s-$(K8S_VERSION)
VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export KUBEBUILDER_ASSETS := $(K8S_BINS)
export PATH := $(K8S_BINS):$(PATH)

.PHONY: all deps build image generate verify monitoring promtool test fuzz e2e lab lab-down bench bench-pools bench-alloc bench-ingress bench-ingress-memory h2spec bench-bgp bench-failover k8s-bins check clean

all: build

# Debian packages the network tests and the lab use.
DEB_PACKAGES := frr bird2 iptables nftables conntrack iputils-arping ndisc6 curl openssl iproute2 nginx wrk nghttp2-client procps util-linux

## deps: installs the missing Debian packages (as root), without starting
## their services on the host: the tests run their own daemons in namespaces.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:" $$missing "(run as root, or apt-get install them)"; exit 1; fi; \
	echo "installing Debian packages:" $$missing; \
	ours=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; ours=1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
	if [ -n "$$ours" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc

## build: every binary of cmd/ into bin/, static; bin/kubectl-portico is
## porticoctl as a kubectl plugin (`kubectl portico` with bin/ on PATH).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/ ./cmd/...
	ln -sf porticoctl bin/kubectl-portico

## image: Portico's container image, with no Docker daemon: the binaries
## built for each of IMAGE_PLATFORMS (this machine's first), then
## dist/portico-image.tar (this machine's platform; `docker load -i` or
## `kind load image-archive`), dist/portico-image-<arch>.tar per platform,
## and dist/oci, an OCI layout with every platform under one index (push it
## with `crane push dist/oci` or `skopeo copy oci:dist/oci ...`). Tagged
## ghcr.io/portico-lb/portico:$(VERSION); reproducible from the commit.
IMAGE_PLATFORMS ?= linux/$(shell $(GO) env GOARCH) $(filter-out linux/$(shell $(GO) env GOARCH),linux/amd64 linux/arm64)
image:
	@set -e; for p in $(IMAGE_PLATFORMS); do \
		echo "building $$p"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
			-o .cache/image/$${p%/*}-$${p#*/}/ ./cmd/controller ./cmd/speaker ./cmd/ingress ./cmd/porticoctl; \
	done
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(GO) run ./e2e/cmd/image --version $(VERSION) --out dist \
		$(foreach p,$(IMAGE_PLATFORMS),$(p)=.cache/image/$(subst /,-,$(p)))

## generate: deepcopy functions and CRD YAML from api/.
generate:
	$(CONTROLLER_GEN) object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=manifests/crd

## verify: formatting, vet, generated files up to date, and the
## monitoring component's rules and dashboard (make monitoring).
verify: generate monitoring
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	@git diff --exit-code -- api manifests/crd || { echo 'generated files are stale: run make generate and commit'; exit 1; }
	@test -z "$$(git status --porcelain -- api manifests/crd)" || { git status --porcelain -- api manifests/crd; echo 'generated files are not committed'; exit 1; }

## promtool: Prometheus's promtool, built (a few minutes the first time)
## from the Prometheus module version manifests/monitoring/check/go.mod
## pins with its tool directive, cached in .cache/bin.
PROMTOOL := $(CURDIR)/.cache/bin/promtool
promtool: $(PROMTOOL)

$(PROMTOOL): manifests/monitoring/check/go.mod manifests/monitoring/check/go.sum
	mkdir -p $(@D)
	cd manifests/monitoring/check && $(GO) build -ldflags "-X github.com/prometheus/common/version.Version=$$($(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)" -o $@ github.com/prometheus/prometheus/cmd/promtool

## monitoring: the monitoring component's alert rules through promtool
## (check rules on the PrometheusRule's spec, on the lines it has in
## prometheusrule.yaml, two columns left; test rules with
## check/alerts_test.yaml on the same rules less their annotations), then
## its Go test: the rules and the dashboard's queries parse, every alert has
## its annotations, and every metric they read is listed in metrics.txt.
monitoring: $(PROMTOOL)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	awk '/^spec:/ {on = 1; print ""; next} on && /^[^ #]/ {on = 0} on {sub(/^  /, ""); print; next} {print ""}' \
	  manifests/monitoring/prometheusrule.yaml > $$tmp/full.yaml; \
	echo "promtool check rules manifests/monitoring/prometheusrule.yaml (its spec)"; \
	$(PROMTOOL) check rules $$tmp/full.yaml; \
	awk 'skip && match($$0, /^ */) && RLENGTH > ind {next} {skip = 0} \
	  /^ *annotations:$$/ {skip = 1; ind = index($$0, "a") - 1; next} {print}' $$tmp/full.yaml > $$tmp/rules.yaml; \
	cp manifests/monitoring/check/alerts_test.yaml $$tmp/; \
	echo "promtool test rules manifests/monitoring/check/alerts_test.yaml"; \
	$(PROMTOOL) test rules $$tmp/alerts_test.yaml
	cd manifests/monitoring/check && $(GO) vet ./... && $(GO) test -count=1 ./...

## k8s-bins: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
## kube-proxy and kubectl built from the Go module proxy, cached.
k8s-bins: $(K8S_BINS)/.done

$(K8S_BINS)/.done: e2e/k8sbins/kube/go.mod e2e/k8sbins/kube/go.sum e2e/k8sbins/etcd/go.mod e2e/k8sbins/etcd/go.sum
	mkdir -p $(K8S_BINS)
	cd e2e/k8sbins/etcd && CGO_ENABLED=0 $(GO) build -trimpath -o $(K8S_BINS)/etcd .
	cd e2e/k8sbins/kube && for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean" -o $(K8S_BINS)/$$c k8s.io/kubernetes/cmd/$$c; \
	done
	touch $@

## test: every test that runs without the lab: unit, fuzz seeds, and
## integration tests against a real etcd and kube-apiserver.
test: k8s-bins
	$(GO) test -count=1 -timeout 30m ./...
	# The proxy again with its event loops off: the goroutine loop serves
	# plain HTTP then, as it serves TLS and what the loops hand over.
	$(GO) test -count=1 ./ingress/proxy/ -args -goroutine-loop

## fuzz: every fuzz target for FUZZTIME more than its seed corpus (which
## make test runs), one after the other: the short bounded run CI makes.
## The budget is a count of inputs, not a duration: Go 1.26's coordinator
## can report a bare "context deadline exceeded" when a -fuzztime duration
## ends while a worker is mid-input (go.dev/issue/75804, fixed in Go 1.27),
## which failed CI once on FuzzLoop with no input to reproduce.
## Long runs: make fuzz FUZZTIME=5000000x.
FUZZTIME ?= 50000x
FUZZMINIMIZE ?= 100x
## FUZZMINIMIZE bounds the minimisation of each new interesting input by a
## count too (Go's default is 60 s each). FUZZSKIP leaves targets out of
## this bounded run: FuzzConvertMetalLB finds YAML inputs that take seconds
## each (porticoctl reads a user's own files, so this is not a hostile-input
## path), and Go then sits minimising them with no new executions for
## minutes after the budget is spent. Its seeds still run in make test; run
## it alone with make fuzz FUZZSKIP= FUZZTIME=...
FUZZSKIP ?= FuzzConvertMetalLB
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./.cache' | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
	    case " $(FUZZSKIP) " in *" $$f "*) echo "fuzz $$dir $$f: skipped (FUZZSKIP)"; continue;; esac; \
	    echo "fuzz $$dir $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$dir || exit 1; \
	  done; \
	done

## lab: a multi-node cluster in network namespaces with Portico installed
## (kubectl apply -k manifests/) and an AddressPool; see e2e/README.md.
lab: k8s-bins
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -o bin/ ./cmd/... ./e2e/cmd/...
	ln -sf porticoctl bin/kubectl-portico
	PORTICO_K8S_BINS=$(K8S_BINS) bin/lab up
	PORTICO_K8S_BINS=$(K8S_BINS) bin/lab install

## lab-down: removes every namespace, process and mount the lab made.
lab-down:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -o bin/ ./e2e/cmd/lab
	bin/lab down

## e2e: the end-to-end tests in the lab (as root; installs the Debian
## packages it needs).
e2e: k8s-bins
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -o bin/ ./cmd/...
	ln -sf porticoctl bin/kubectl-portico
	PORTICO_K8S_BINS=$(K8S_BINS) $(GO) test -tags e2e -count=1 -timeout 30m ./e2e/...

## bench: allocator ns/op and the 5,000-Service allocation run.
bench: bench-pools bench-alloc

bench-pools:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20000x ./pools/

bench-alloc: k8s-bins build
	PORTICO_CONTROLLER_BIN=$(CURDIR)/bin/controller $(GO) test -count=1 -timeout 20m -run '^$$' -bench '^BenchmarkServices5000' -benchtime 1x ./controller/

## bench-ingress: Portico vs Debian nginx on loopback (installs nginx, wrk
## and h2load if missing): plain HTTP and HTTPS with wrk, HTTP/2 with h2load,
## an annotated route (rewrite, allowlist, CORS, canary) with wrk, gRPC unary
## calls (backend-protocol GRPC vs grpc_pass) with h2load, one block
## of ratios per protocol; then propagation of 1,000 changes under load
## against a real API server.
bench-ingress: k8s-bins
	$(GO) run ./ingress/bench -duration 10s -rounds 3
	$(GO) test -count=1 -timeout 10m -run '^TestBenchPropagation$$' -v ./ingress/ -args -bench-changes=1000

## bench-ingress-memory: each proxy's resident memory with 2,000 connections
## held open: stalled 1 MiB uploads (Portico's target: under 64 MiB more than
## idle), idle keep-alive, half-sent request heads.
bench-ingress-memory:
	$(GO) run ./ingress/bench -mode memory -conns 2000

H2SPEC := $(CURDIR)/.cache/bin/h2spec

$(H2SPEC):
	GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible

## h2spec: the HTTP/2 conformance suite over TLS against Portico's proxy and
## Debian's nginx, each proxying to the same backend; prints both counts and
## the cases each failed.
h2spec: $(H2SPEC)
	$(GO) run ./ingress/bench -mode h2spec -h2spec $(H2SPEC)

## bench-failover: in the lab, 20 trials each of a cut owner node and a
## gracefully stopped owner speaker, for a Service's IPv4 address (probed by
## ARP every 10 ms) and its IPv6 one (by NDP); prints p50/p99/max time until
## another node answers.
bench-failover: k8s-bins
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -o bin/ ./cmd/...
	CI=true PORTICO_K8S_BINS=$(K8S_BINS) $(GO) test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkFailover$$' -benchtime=20x -timeout 30m ./e2e/

## bench-bgp: time from Apply to the route in FRR, and 10,000 prefixes.
bench-bgp:
	$(GO) test -count=1 -run '^$$' -bench FRR -benchtime 1x ./speaker/bgp/

## check: what CI runs: generated files, formatting, vet, every test,
## end-to-end tests included.
check: deps verify image test fuzz e2e

clean:
	rm -rf bin .cache dist
