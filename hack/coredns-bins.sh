#!/usr/bin/env bash
# Builds CoreDNS (the cluster DNS server of the test node, testenv::node::NodeEnv::
# deploy_cluster_dns) from the Go module proxy into a cache directory outside the source tree,
# and prints that directory's absolute path as the last line of stdout; it holds one static
# binary, `coredns`. Progress goes to stderr. A complete directory is reused; a change of the
# pinned version or of the recipe below selects a new directory (so it is rebuilt).
#
# The binary is CoreDNS's own `coremain` of the pinned release of module
# github.com/coredns/coredns with the plugins listed in PLUGINS only (CoreDNS registers the
# plugins its main package imports; the directive order stays the release's own), resolved
# against the release's go.mod, built with CGO_ENABLED=0 and -trimpath. Leaving out the cloud
# and tracing plugins (route53, azure, clouddns, trace, ...) keeps the build to a few minutes
# on two cores. `coredns -plugins` lists what it holds; a Corefile naming another plugin is
# refused with "unknown directive".
#
# hack/images.sh packages it as the image rovn.local/coredns:<version> (coredns.tar).
#
# Options:
#   --version    print the pinned CoreDNS version (e.g. v1.14.1) and exit (builds nothing)
#
# Environment:
#   ROVN_CACHE   cache root (default: $HOME/.cache/rovn)
#
# Go is used for this test tooling only; rovn itself is Rust.
set -euo pipefail

COREDNS_VERSION=v1.14.1
# What the binary holds: the kubernetes plugin and what the test node's Corefile uses around it
# (bind, health, ready, errors, log, cache, loadbalance, reload), whoami for checks by hand,
# prometheus for /metrics.
PLUGINS=(bind cache errors health kubernetes loadbalance log metrics ready reload whoami)
# Bump when the way the binary is built changes (selects a new cache dir).
RECIPE=1

case "${1:-}" in
--version)
	echo "$COREDNS_VERSION"
	exit 0
	;;
"") ;;
*)
	echo "coredns-bins: ERROR: unknown argument $1 (see the header of $0)" >&2
	exit 1
	;;
esac

CACHE_ROOT="${ROVN_CACHE:-$HOME/.cache/rovn}"
OUT="$CACHE_ROOT/coredns-${COREDNS_VERSION}-r${RECIPE}"

log() { echo "coredns-bins: $*" >&2; }
die() {
	echo "coredns-bins: ERROR: $*" >&2
	exit 1
}

is_complete() {
	[[ -f "$OUT/.complete" && -x "$OUT/coredns" ]]
}

mkdir -p "$CACHE_ROOT"
OUT="$(cd "$CACHE_ROOT" && pwd)/$(basename "$OUT")"

if is_complete; then
	echo "$OUT"
	exit 0
fi

# Only one build at a time (several test binaries may call this script).
exec 9>"$CACHE_ROOT/.coredns-bins.lock"
if ! flock -n 9; then
	log "another build is running; waiting for the lock $CACHE_ROOT/.coredns-bins.lock"
	flock 9
fi
if is_complete; then
	echo "$OUT"
	exit 0
fi

command -v go >/dev/null 2>&1 ||
	die "the Go toolchain ('go') is not on PATH; install Go >= 1.24 (https://go.dev/dl/) to build CoreDNS"
log "using $(go version)"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

WORK="$(mktemp -d "$CACHE_ROOT/.coredns-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
# A directory without its .complete marker is a leftover: rebuild it whole.
rm -rf "$OUT"

log "fetching github.com/coredns/coredns@$COREDNS_VERSION from $(go env GOPROXY)"
if ! go mod download "github.com/coredns/coredns@$COREDNS_VERSION" 2>"$WORK/download.err"; then
	cat "$WORK/download.err" >&2
	die "cannot download github.com/coredns/coredns@$COREDNS_VERSION from the Go module proxy ($(go env GOPROXY)); check network access and GOPROXY"
fi

mkdir -p "$WORK/src" "$WORK/out"
cd "$WORK/src"
go mod init rovn.local/coredns >/dev/null 2>&1
go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION"
{
	printf '// Command coredns runs CoreDNS %s with the plugins hack/coredns-bins.sh lists.\n' "$COREDNS_VERSION"
	printf 'package main\n\nimport (\n'
	printf '\t"github.com/coredns/coredns/coremain"\n\n'
	for p in "${PLUGINS[@]}"; do
		printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"
	done
	printf ')\n\nfunc main() {\n\tcoremain.Run()\n}\n'
} >main.go
log "resolving the dependencies of ${PLUGINS[*]} (go mod tidy)"
go mod tidy >&2 || die "go mod tidy failed for the CoreDNS wrapper module (see above)"
log "building coredns (slow on few cores)"
go build -trimpath -ldflags="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
	-o "$WORK/out/coredns" . >&2 || die "go build of coredns failed (see above)"
"$WORK/out/coredns" -version >&2 || die "built coredns does not run"
listed="$("$WORK/out/coredns" -plugins)"
for p in kubernetes bind ready health; do
	grep -qx "$p" <<<"$listed" || die "built coredns lacks plugin $p: $listed"
done

date -u +%FT%TZ >"$WORK/out/.complete"
mv "$WORK/out" "$OUT"
is_complete || die "$OUT is incomplete after the build"
log "done in $((SECONDS - start))s"
echo "$OUT"
