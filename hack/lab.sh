#!/usr/bin/env bash
# THE local lab command of rovn (README.md, "Local lab"): runs rovn's main job on this
# machine with real components and walks through the seed scenario.
#
#   sudo hack/lab.sh           # set up, check, then stay up for manual use until Ctrl-C
#   sudo hack/lab.sh --once    # set up, check, tear down; exit non-zero if a check failed
#
# Builds the workspace binaries (rovn-controller, rovn-agent, rovn-cni, rovnctl, rovn-lab),
# the Go-built Kubernetes binaries (kube-apiserver, etcd, kubectl via hack/k8s-bins.sh,
# cached under ~/.cache/rovn), then runs rovn-lab, which starts OVN (NB, SB, northd, a
# chassis with the userspace datapath), etcd + kube-apiserver, a Neutron Zed tenant with a
# VM, rovn-controller and rovn-agent, and plugs a pod through rovn-cni. Needs root and the
# Debian packages .ci/run installs. CARGO_TARGET_DIR is honoured; other arguments go to
# rovn-lab (see `rovn-lab --help`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "hack/lab.sh: ERROR: $*" >&2
	exit 1
}

[[ ${EUID} -eq 0 ]] || die "must run as root (the lab creates network namespaces and runs OVS/OVN daemons)"

echo "==> cargo build --bins" >&2
cargo build --bins

if [[ -z ${ROVN_K8S_BINS:-} ]]; then
	echo "==> hack/k8s-bins.sh" >&2
	ROVN_K8S_BINS="$(bash hack/k8s-bins.sh | tail -n1)"
	[[ -d ${ROVN_K8S_BINS} ]] || die "hack/k8s-bins.sh printed '${ROVN_K8S_BINS}', not a directory"
	export ROVN_K8S_BINS
fi

# `cargo run` execs the lab in its place: Ctrl-C and SIGTERM reach rovn-lab directly.
exec cargo run --quiet -p lab --bin rovn-lab -- "$@"
