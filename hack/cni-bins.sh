#!/usr/bin/env bash
# Builds the reference CNI client `cnitool` (Go module github.com/containernetworking/cni,
# package cnitool) into a cache directory outside the work tree and prints that directory's
# absolute path as the last line of output. A directory that already holds the binary is reused.
#
# Environment:
#   ROVN_CACHE        cache root (default: $HOME/.cache/rovn)
#   ROVN_CNI_VERSION  module version to build (default below; must be served by the Go proxy)
#
# Tests that drive rovn-cni through cnitool read the printed directory from ROVN_CNI_BINS:
#   export ROVN_CNI_BINS="$(bash hack/cni-bins.sh | tail -n1)"
set -euo pipefail

version="${ROVN_CNI_VERSION:-v1.3.0}"
cache_root="${ROVN_CACHE:-$HOME/.cache/rovn}"
dir="${cache_root}/cni-${version}"

if [[ ! -x "${dir}/cnitool" ]]; then
    command -v go >/dev/null || { echo "cni-bins.sh: the Go toolchain (go) is required" >&2; exit 1; }
    mkdir -p "${cache_root}"
    staging="$(mktemp -d "${cache_root}/cni-build.XXXXXX")"
    trap 'rm -rf "${staging}"' EXIT
    echo "cni-bins.sh: building cnitool ${version} ..." >&2
    GOBIN="${staging}/bin" CGO_ENABLED=0 go install "github.com/containernetworking/cni/cnitool@${version}"
    mkdir -p "${dir}"
    # Move into place last so an interrupted build never leaves a half-filled directory in use.
    mv "${staging}/bin/cnitool" "${dir}/cnitool"
fi

cd "${dir}" && pwd -P
