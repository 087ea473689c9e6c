#!/usr/bin/env bash
# THE local lab command of rovn (README.md, "Local lab"): runs rovn's main job on this
# machine with real components and walks through the seed scenario.
#
#   sudo hack/lab.sh           # set up, check, then stay up for manual use until Ctrl-C
#   sudo hack/lab.sh --once    # set up, check, tear down; exit non-zero if a check failed
#
# On a fresh Debian 12 machine this alone is enough (as root, with Rust and Go installed):
# it installs the Debian packages it needs (hack/deps.sh: OVN/OVS, containerd, runc, CNI
# plugins, ...), builds the workspace binaries (rovn-controller, rovn-agent, rovn-cni,
# rovnctl, rovn-lab), the Go-built Kubernetes binaries (kube-apiserver, etcd, kubectl,
# kubelet, kube-controller-manager, kube-scheduler via hack/k8s-bins.sh; CoreDNS via
# hack/coredns-bins.sh; cached under ~/.cache/rovn; the first build takes a while), then runs
# rovn-lab, which builds the images (hack/images.sh: pause, busybox, rovn, coredns; cached),
# starts a real node (OVN NB, SB, northd and the node's chassis with the userspace datapath;
# etcd, kube-apiserver, the controller-manager, the scheduler, containerd, kubelet), a Neutron
# Zed tenant with a VM, installs rovn with `kubectl apply -k` of deploy/, and runs a workload
# Deployment in namespace net2 on Subnet net2. CARGO_TARGET_DIR is honoured; other arguments
# go to rovn-lab (`rovn-lab --help`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "hack/lab.sh: ERROR: $*" >&2
	exit 1
}

[[ ${EUID} -eq 0 ]] || die "must run as root (the lab creates network namespaces and runs OVS/OVN daemons)"
command -v cargo >/dev/null || die "Rust (cargo) is required: install it with rustup"
command -v go >/dev/null || die "Go is required (it builds the Kubernetes binaries)"

echo "==> hack/deps.sh" >&2
bash hack/deps.sh

echo "==> cargo build --bins" >&2
cargo build --bins

if [[ -z ${ROVN_K8S_BINS:-} ]]; then
	echo "==> hack/k8s-bins.sh" >&2
	ROVN_K8S_BINS="$(bash hack/k8s-bins.sh | tail -n1)"
	[[ -d ${ROVN_K8S_BINS} ]] || die "hack/k8s-bins.sh printed '${ROVN_K8S_BINS}', not a directory"
	export ROVN_K8S_BINS
fi

if [[ -z ${ROVN_COREDNS_BINS:-} ]]; then
	echo "==> hack/coredns-bins.sh" >&2
	ROVN_COREDNS_BINS="$(bash hack/coredns-bins.sh | tail -n1)"
	[[ -d ${ROVN_COREDNS_BINS} ]] || die "hack/coredns-bins.sh printed '${ROVN_COREDNS_BINS}', not a directory"
	export ROVN_COREDNS_BINS
fi

# `cargo run` execs the lab in its place: Ctrl-C and SIGTERM reach rovn-lab directly.
exec cargo run --quiet -p lab --bin rovn-lab -- "$@"
