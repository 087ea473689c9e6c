#!/usr/bin/env bash
# Builds the Kubernetes test binaries (kube-apiserver, kubectl, kubelet,
# kube-controller-manager, kube-scheduler, etcd) from the Go module proxy into a
# cache directory outside the source tree, and prints that directory's absolute
# path as the last line of stdout. Progress goes to stderr. The directory is
# reused when it is complete; a directory made before a binary was added to the
# list gets only the missing binaries built and added; a change of the pinned
# versions below selects a new directory (so it is rebuilt).
#
# Environment:
#   ROVN_CACHE   cache root (default: $HOME/.cache/rovn)
#
# Go is used for this test tooling only; rovn itself is Rust.
set -euo pipefail

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
# The staging modules (k8s.io/api, k8s.io/apimachinery, ...) are published as
# v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
# Bump when the way the binaries are built changes (selects a new cache dir).
RECIPE=2

CACHE_ROOT="${ROVN_CACHE:-$HOME/.cache/rovn}"
OUT="$CACHE_ROOT/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-r${RECIPE}"
# The Kubernetes commands (package k8s.io/kubernetes/cmd/<name>), then etcd.
KUBE_BINARIES=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler)
BINARIES=("${KUBE_BINARIES[@]}" etcd)

log() { echo "k8s-bins: $*" >&2; }
die() {
	echo "k8s-bins: ERROR: $*" >&2
	exit 1
}

is_complete() {
	[[ -f "$OUT/.complete" ]] || return 1
	local b
	for b in "${BINARIES[@]}"; do
		[[ -x "$OUT/$b" ]] || return 1
	done
}

mkdir -p "$CACHE_ROOT"
OUT="$(cd "$CACHE_ROOT" && pwd)/$(basename "$OUT")"

if is_complete; then
	echo "$OUT"
	exit 0
fi

# Only one build at a time (several test binaries may call this script).
exec 9>"$CACHE_ROOT/.k8s-bins.lock"
if ! flock -n 9; then
	log "another build is running; waiting for the lock $CACHE_ROOT/.k8s-bins.lock"
	flock 9
fi
if is_complete; then
	echo "$OUT"
	exit 0
fi

command -v go >/dev/null 2>&1 ||
	die "the Go toolchain ('go') is not on PATH; install Go >= 1.24 (https://go.dev/dl/) to build the Kubernetes test binaries"
log "using $(go version)"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

WORK="$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/out"
mkdir -p "$STAGE"
start=$SECONDS

# A directory without its .complete marker is a leftover: rebuild it whole.
# A complete one made when the list above was shorter only lacks the binaries
# added since: build those alone (the others are the same pinned release).
if [[ -d "$OUT" && ! -f "$OUT/.complete" ]]; then
	rm -rf "$OUT"
fi
missing_kube=()
for b in "${KUBE_BINARIES[@]}"; do
	[[ -x "$OUT/$b" ]] || missing_kube+=("$b")
done
build_etcd=true
[[ -x "$OUT/etcd" ]] && build_etcd=false

# --- the Kubernetes commands --------------------------------------------------
if ((${#missing_kube[@]} > 0)); then
	log "fetching k8s.io/kubernetes@$K8S_VERSION metadata from $(go env GOPROXY)"
	if ! meta="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>"$WORK/download.err")"; then
		cat "$WORK/download.err" >&2
		[[ -n "${meta:-}" ]] && echo "$meta" >&2
		die "cannot download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy ($(go env GOPROXY)); check network access and GOPROXY"
	fi
	k8s_gomod="$(sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p' <<<"$meta")"
	[[ -n "$k8s_gomod" && -f "$k8s_gomod" ]] || die "go mod download gave no go.mod for k8s.io/kubernetes@$K8S_VERSION: $meta"

	mkdir -p "$WORK/kube"
	cd "$WORK/kube"
	go mod init rovn.local/k8s-bins >/dev/null 2>&1
	go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"

	# Replace directives of a dependency are ignored, so re-state kubernetes' own
	# ones here: local staging paths become the published staging version, any
	# other replacement is copied as is. In the formatted go.mod every line with
	# "=>" is one replacement: `old [version] => new [version]`.
	replaces="$(go mod edit -fmt -print "$k8s_gomod" | sed -e 's#//.*##' -e 's/^[[:space:]]*replace[[:space:]]\{1,\}//' | grep '=>' || true)"
	[[ -n "$replaces" ]] || die "no replace directives found in k8s.io/kubernetes@$K8S_VERSION go.mod; cannot derive the staging module list"
	staging_count=0
	while read -r -a words; do
		old="${words[0]}"
		if [[ "${words[1]}" == "=>" ]]; then
			new=("${words[@]:2}")
		else
			old+="@${words[1]}"
			new=("${words[@]:3}")
		fi
		new_path="${new[0]}"
		case "$new_path" in
		./staging/* | staging/*)
			go mod edit -replace="$old=${old%@*}@$STAGING_VERSION"
			staging_count=$((staging_count + 1))
			;;
		./* | ../*)
			die "k8s.io/kubernetes go.mod replaces $old with a non-staging local path $new_path; cannot reproduce it"
			;;
		*)
			go mod edit -replace="$old=$new_path${new[1]:+@${new[1]}}"
			;;
		esac
	done <<<"$replaces"
	log "replaced $staging_count staging modules with $STAGING_VERSION"

	# A tools file makes `go mod tidy` keep the commands' dependencies.
	kube_packages=()
	{
		printf '//go:build tools\n\npackage tools\n\nimport (\n'
		for b in "${missing_kube[@]}"; do
			kube_packages+=("k8s.io/kubernetes/cmd/$b")
			printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"
		done
		printf ')\n'
	} >tools.go
	log "resolving dependencies of ${missing_kube[*]} (go mod tidy)"
	go mod tidy >&2 || die "go mod tidy failed for the ${missing_kube[*]} module (see above)"
	# Stamp the release version (as the upstream build does) so that /version and
	# `kubectl version` report it instead of v0.0.0-master.
	minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	version_ldflags=""
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		version_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	log "building ${missing_kube[*]} (slow on few cores)"
	go build -trimpath -ldflags="-s -w$version_ldflags" -o "$STAGE/" "${kube_packages[@]}" >&2 ||
		die "go build of ${missing_kube[*]} failed (see above)"
	log "${missing_kube[*]} built after $((SECONDS - start))s"
	for b in "${missing_kube[@]}"; do
		case "$b" in
		kubectl) "$STAGE/kubectl" version --client >&2 ;;
		*) "$STAGE/$b" --version >&2 ;;
		esac || die "built $b does not run"
	done
fi

# --- etcd --------------------------------------------------------------------
if $build_etcd; then
	mkdir -p "$WORK/etcd"
	cd "$WORK/etcd"
	go mod init rovn.local/etcd >/dev/null 2>&1
	go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
	cat >main.go <<'EOF'
// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
	log "resolving etcd $ETCD_VERSION dependencies"
	go mod tidy >&2 || die "go mod tidy failed for the etcd wrapper module (see above)"
	log "building etcd"
	go build -trimpath -ldflags='-s -w' -o "$STAGE/etcd" . >&2 || die "go build of etcd failed (see above)"
	"$STAGE/etcd" --version >&2 || die "built etcd does not run"
fi

if [[ -d "$OUT" ]]; then
	# Add the new binaries to the complete directory: a rename each (same file
	# system), so a reader never sees a half-written binary.
	for b in "$STAGE"/*; do
		mv -f "$b" "$OUT/"
	done
	date -u +%FT%TZ >"$OUT/.complete.tmp"
	mv -f "$OUT/.complete.tmp" "$OUT/.complete"
else
	date -u +%FT%TZ >"$STAGE/.complete"
	mv "$STAGE" "$OUT"
fi
is_complete || die "$OUT is incomplete after the build"
log "done in $((SECONDS - start))s"
echo "$OUT"
