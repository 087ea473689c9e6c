#!/usr/bin/env bash
# THE test command of rovn (README.md; CI runs it through .ci/run).
#
# Runs, failing on the first failure:
#   1. cargo fmt --check and cargo clippy -D warnings over the whole workspace;
#   2. builds the Go-built test binaries (kube-apiserver/etcd/kubectl via hack/k8s-bins.sh,
#      cnitool via hack/cni-bins.sh, coredns via hack/coredns-bins.sh) when those scripts
#      exist, and exports their directories as ROVN_K8S_BINS / ROVN_CNI_BINS /
#      ROVN_COREDNS_BINS for the tests;
#   3. every test of the workspace (unit, integration, examples, benches as tests, doc tests).
#
# Tests start real daemons (ovsdb-server, ovn-northd, ovs-vswitchd, ovn-controller,
# kube-apiserver) and network namespaces, so this must run as root with the Debian packages
# .ci/run installs. CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { echo "==> $*" >&2; }
die() {
	echo "hack/test.sh: ERROR: $*" >&2
	exit 1
}

[[ ${EUID} -eq 0 ]] || die "must run as root (tests create network namespaces and run OVS/OVN daemons)"

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Each script prints the directory holding its binaries as its last line of stdout.
bins_dir() {
	local script=$1 out
	out="$(bash "${script}")" || die "${script} failed"
	out="$(tail -n1 <<<"${out}")"
	[[ -d "${out}" ]] || die "${script} printed '${out}', not a directory"
	echo "${out}"
}

if [[ -f hack/k8s-bins.sh ]]; then
	step "hack/k8s-bins.sh"
	ROVN_K8S_BINS="$(bins_dir hack/k8s-bins.sh)"
	export ROVN_K8S_BINS
	echo "ROVN_K8S_BINS=${ROVN_K8S_BINS}" >&2
fi

if [[ -f hack/cni-bins.sh ]]; then
	step "hack/cni-bins.sh"
	ROVN_CNI_BINS="$(bins_dir hack/cni-bins.sh)"
	export ROVN_CNI_BINS
	echo "ROVN_CNI_BINS=${ROVN_CNI_BINS}" >&2
fi

if [[ -f hack/coredns-bins.sh ]]; then
	step "hack/coredns-bins.sh"
	ROVN_COREDNS_BINS="$(bins_dir hack/coredns-bins.sh)"
	export ROVN_COREDNS_BINS
	echo "ROVN_COREDNS_BINS=${ROVN_COREDNS_BINS}" >&2
fi

step "cargo test --workspace --all-targets"
cargo test --workspace --all-targets

step "cargo test --workspace --doc"
cargo test --workspace --doc

step "all tests passed"
