#!/usr/bin/env bash
# Installs the Debian 12 packages rovn's tests and lab need (real OVN 23.03 / OVS 3.1 daemons,
# network namespace tooling, containerd + runc for the real node, what hack/images.sh builds
# images from, promtool) and makes sure no system OVS/OVN or Prometheus service runs: tests and
# the lab start their own daemons in temporary directories; system ones would only consume CPU
# (or hold br-int).
# Packages already installed are not fetched again. Run as root; used by .ci/run and
# hack/lab.sh.
set -euo pipefail

log() { echo "deps: $*" >&2; }
die() {
	echo "deps: ERROR: $*" >&2
	exit 1
}

[[ ${EUID} -eq 0 ]] || die "must run as root"

PACKAGES=(
	ovn-central ovn-host openvswitch-switch # ovsdb-server, ovn-northd, ovs-vswitchd, ovn-controller, ovs-pki
	iproute2 ethtool iputils-ping           # network namespaces, veths, checksum offload, ping
	nftables                                # nft in rovn's image: the agent's node-link NAT
	openssl                                 # ovs-pki
	util-linux procps                       # flock (hack/*-bins.sh), ps
	ca-certificates git build-essential pkg-config
	containerd runc                         # the real node: kubelet's container runtime (ctr too)
	containernetworking-plugins             # CNI loopback plugin, run by containerd 1.6 for every pod;
	                                        # ptp + host-local: the cluster DNS test's pod network
	busybox-static python3                  # hack/images.sh: workload image, OCI archive writer;
	                                        # busybox nslookup: the cluster DNS test's queries
	prometheus                              # promtool, for the metrics test (no Debian package ships
	                                        # promtool alone); its server is kept stopped below
	graphviz                                # dot: rovnctl topology -o svg, and its test
)

# Keep package scripts from starting system services while installing (the standard
# policy-rc.d mechanism); an existing policy is left untouched.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=false
if [[ ! -e ${POLICY} ]]; then
	printf '#!/bin/sh\nexit 101\n' >"${POLICY}"
	chmod +x "${POLICY}"
	OWN_POLICY=true
	trap 'rm -f "${POLICY}"' EXIT
fi

missing=()
for package in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${Status}' "${package}" 2>/dev/null || true)"
	[[ ${status} == "install ok installed" ]] || missing+=("${package}")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
else
	log "all ${#PACKAGES[@]} packages installed"
fi

if ${OWN_POLICY}; then
	rm -f "${POLICY}"
	trap - EXIT
fi

# Stop system OVS/OVN/Prometheus daemons in case they run anyway (installed earlier, or started
# by a package script despite the policy): through the service manager, then by their own pid
# files.
stop_system_services() {
	local units=(ovn-controller ovn-host ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb
		ovn-central ovs-vswitchd ovsdb-server openvswitch-switch prometheus)
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
		systemctl stop "${units[@]}" 2>/dev/null || true
	fi
	local script
	for script in ovn-host ovn-central openvswitch-switch prometheus; do
		if [[ -x /etc/init.d/${script} ]]; then
			"/etc/init.d/${script}" stop >/dev/null 2>&1 || true
		fi
	done
	local pidfile pid
	for pidfile in /run/ovn/*.pid /run/openvswitch/*.pid /var/run/ovn/*.pid /var/run/openvswitch/*.pid \
		/run/prometheus/*.pid; do
		[[ -f ${pidfile} ]] || continue
		pid="$(cat "${pidfile}" 2>/dev/null || true)"
		if [[ ${pid} =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null; then
			log "stopping system daemon ${pidfile} (pid ${pid})"
			kill "${pid}" 2>/dev/null || true
		fi
	done
}
stop_system_services
