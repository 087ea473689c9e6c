#!/usr/bin/env bash
# Builds the OCI image archives of a real rovn node without any registry, and prints the
# directory holding them as the last line of stdout (progress goes to stderr):
#
#   pause.tar    rovn.local/pause:<n>        the pod sandbox: hack/images/pause.c built with
#                                            gcc -static (reaps children, exits 0 on SIGTERM)
#   busybox.tar  rovn.local/busybox:<ver>    workload image: Debian's busybox-static with every
#                                            applet as a symlink in /bin (sh, ping, nc, httpd, ...)
#   rovn.tar     rovn.local/rovn:<version>   rovn-controller, rovn-agent and rovn-cni in
#                                            /usr/local/bin, Debian's nft in /usr/sbin (the
#                                            agent's node-link firewall and NAT), the shared
#                                            libraries ldd lists for them, busybox (the agent DaemonSet's init
#                                            container installs rovn-cni with its sh and cp),
#                                            /var/run -> /run
#   coredns.tar  rovn.local/coredns:<ver>    the cluster DNS server: the static `coredns` of
#                                            hack/coredns-bins.sh as /coredns (entrypoint,
#                                            default arguments `-conf /etc/coredns/Corefile`)
#   images.txt   "<file> <image name>" per line
#
# Import one into containerd with `ctr -n k8s.io images import <dir>/rovn.tar`; pods use the
# names with `imagePullPolicy: IfNotPresent` or `Never` (deploy/ does).
#
# Cached: every archive is kept under $ROVN_CACHE/images/archives, keyed by the hash of its
# inputs (this script, hack/images/*, the binaries and libraries that go in, the compiler
# version), and rebuilt only when one changes; the printed directory holds hard links to the
# four archives of this set of inputs. Archives are deterministic (fixed mtimes, sorted
# entries), so the same inputs give the same image digests on any machine.
#
# Options:
#   --names     print "<file> <image name>" for the four images and exit (builds nothing)
#
# Environment:
#   ROVN_CACHE    cache root (default: $HOME/.cache/rovn)
#   ROVN_BIN_DIR  directory holding already built rovn-controller, rovn-agent and rovn-cni
#                 (the tests pass the debug binaries they use; they are stripped of debug
#                 info for the image). Without it the script runs
#                 `cargo build --release --bins -p controller -p agent -p cni` (optimized,
#                 what operators want) and takes them from $CARGO_TARGET_DIR/release.
#   ROVN_COREDNS_BINS  directory holding the `coredns` binary of the pinned version (what
#                 hack/coredns-bins.sh prints; the tests pass it). Without it the script runs
#                 hack/coredns-bins.sh, which builds it once with Go (cached, minutes).
#
# Needs gcc with a static libc (Debian: build-essential), busybox-static, python3, binutils;
# Go for the first CoreDNS build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/hack/images"

# Bump when the way an image is assembled changes in a way the hashed inputs do not show.
RECIPE=2
PAUSE_TAG=1
BUSYBOX=/usr/bin/busybox

log() { echo "images: $*" >&2; }
die() {
	echo "images: ERROR: $*" >&2
	exit 1
}

workspace_version() {
	sed -n '/^\[workspace.package\]/,/^\[/s/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1
}

busybox_version() {
	[[ -x "$BUSYBOX" ]] || die "$BUSYBOX is missing: install Debian's busybox-static"
	"$BUSYBOX" 2>&1 | sed -n '1s/^BusyBox v\([0-9][0-9.]*\).*/\1/p'
}

# The CoreDNS release hack/coredns-bins.sh builds (its --version), without the "v".
coredns_version() {
	local v
	v="$(bash "$ROOT/hack/coredns-bins.sh" --version)" || die "hack/coredns-bins.sh --version failed"
	echo "${v#v}"
}

PAUSE_NAME="rovn.local/pause:$PAUSE_TAG"
BUSYBOX_NAME="rovn.local/busybox:$(busybox_version)"
ROVN_NAME="rovn.local/rovn:$(workspace_version)"
[[ "$BUSYBOX_NAME" != *: ]] || die "cannot read the version of $BUSYBOX"
[[ "$ROVN_NAME" != *: ]] || die "cannot read the workspace version from $ROOT/Cargo.toml"
COREDNS_VERSION="$(coredns_version)"
COREDNS_NAME="rovn.local/coredns:$COREDNS_VERSION"

names() {
	printf 'pause.tar %s\nbusybox.tar %s\nrovn.tar %s\ncoredns.tar %s\n' \
		"$PAUSE_NAME" "$BUSYBOX_NAME" "$ROVN_NAME" "$COREDNS_NAME"
}

case "${1:-}" in
--names)
	names
	exit 0
	;;
"") ;;
*) die "unknown argument $1 (see the header of $0)" ;;
esac

for tool in gcc python3 strip ldd sha256sum flock; do
	command -v "$tool" >/dev/null || die "$tool is required"
done

case "$(uname -m)" in
x86_64) ARCH=amd64 ;;
aarch64) ARCH=arm64 ;;
*) ARCH="$(uname -m)" ;;
esac

CACHE_ROOT="${ROVN_CACHE:-$HOME/.cache/rovn}"
STORE="$CACHE_ROOT/images"
mkdir -p "$STORE/archives" "$STORE/sets"
STORE="$(cd "$STORE" && pwd)"

exec 9>"$STORE/.lock"
if ! flock -n 9; then
	log "another build is running; waiting for the lock $STORE/.lock"
	flock 9
fi

WORK="$(mktemp -d "$STORE/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

hash_of() { sha256sum "$@" | cut -d' ' -f1 | sha256sum | cut -c1-16; }
# The inputs every image shares: this script and the image writer.
COMMON="$(printf '%s\n' "recipe $RECIPE" "$ARCH" "$(hash_of "$ROOT/hack/images.sh" "$HERE/oci.py")" | sha256sum | cut -c1-16)"
key() { printf '%s\n' "$COMMON" "$@" | sha256sum | cut -c1-16; }

oci() { python3 "$HERE/oci.py" --arch "$ARCH" "$@" >&2; }

# Minimal account files, so that tools inside see a root user.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$WORK/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$WORK/group"
ACCOUNTS=(--file "/etc/passwd=$WORK/passwd" --file "/etc/group=$WORK/group" --dir /root:0700 --dir /tmp:1777)

# Every applet of busybox as a symlink in /bin.
busybox_links() {
	local applet
	for applet in $("$BUSYBOX" --list); do
		[[ "$applet" == busybox ]] && continue
		printf -- '--symlink\n/bin/%s=busybox\n' "$applet"
	done
}
mapfile -t BUSYBOX_LINKS < <(busybox_links)
BUSYBOX_FILES=(--file "/bin/busybox=$BUSYBOX:0755" "${BUSYBOX_LINKS[@]}")
BUSYBOX_KEY="$(hash_of "$BUSYBOX") ${#BUSYBOX_LINKS[@]}"

# --- pause -------------------------------------------------------------------
pause_key="$(key pause "$PAUSE_NAME" "$(hash_of "$HERE/pause.c")" "$(gcc --version | head -n1)")"
pause_tar="$STORE/archives/pause-$pause_key.tar"
if [[ ! -f "$pause_tar" ]]; then
	log "building $PAUSE_NAME"
	gcc -Os -s -static -Wall -Wextra -Werror -o "$WORK/pause" "$HERE/pause.c" ||
		die "gcc -static failed for $HERE/pause.c (Debian: apt-get install build-essential)"
	oci --name "$PAUSE_NAME" --out "$pause_tar" --entrypoint /pause --file "/pause=$WORK/pause:0755"
fi

# --- busybox (workload) --------------------------------------------------------
busybox_key="$(key busybox "$BUSYBOX_NAME" "$BUSYBOX_KEY")"
busybox_tar="$STORE/archives/busybox-$busybox_key.tar"
if [[ ! -f "$busybox_tar" ]]; then
	log "building $BUSYBOX_NAME"
	oci --name "$BUSYBOX_NAME" --out "$busybox_tar" --cmd sh --env PATH=/bin \
		"${BUSYBOX_FILES[@]}" "${ACCOUNTS[@]}" --dir /var/www
fi

# --- rovn ----------------------------------------------------------------------
ROVN_BINS=(rovn-controller rovn-agent rovn-cni)
if [[ -n "${ROVN_BIN_DIR:-}" ]]; then
	bin_dir="$ROVN_BIN_DIR"
else
	log "cargo build --release --bins -p controller -p agent -p cni"
	(cd "$ROOT" && cargo build --release --bins -p controller -p agent -p cni >&2) ||
		die "cargo build --release failed (see above)"
	bin_dir="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
bins=()
for b in "${ROVN_BINS[@]}"; do
	[[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b is missing (ROVN_BIN_DIR=${ROVN_BIN_DIR:-unset})"
	bins+=("$bin_dir/$b")
done
NFT=/usr/sbin/nft
[[ -x "$NFT" ]] || die "$NFT is missing: install Debian's nftables"
bins+=("$NFT")
# The shared libraries the binaries load, by the path the dynamic loader uses (ldd's output:
# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader "/lib64/ld-linux-...").
mapfile -t libs < <(ldd "${bins[@]}" | sed -n -e 's/^[[:space:]]*[^[:space:]]* => \(\/[^[:space:]]*\) (0x[0-9a-f]*)$/\1/p' \
	-e 's/^[[:space:]]*\(\/[^[:space:]]*\) (0x[0-9a-f]*)$/\1/p' | sort -u)
((${#libs[@]} > 0)) || die "ldd found no shared libraries for ${bins[*]} (static binaries need no change here, but check ldd)"
for b in "${bins[@]}"; do
	if ldd "$b" | grep -q 'not found'; then
		die "$b needs a library that is not installed: $(ldd "$b" | grep 'not found')"
	fi
done
rovn_key="$(key rovn "$ROVN_NAME" "$(hash_of "${bins[@]}")" "$(printf '%s\n' "${libs[@]}")" \
	"$(hash_of "${libs[@]}")" "$BUSYBOX_KEY")"
rovn_tar="$STORE/archives/rovn-$rovn_key.tar"
if [[ ! -f "$rovn_tar" ]]; then
	log "building $ROVN_NAME from $bin_dir (libraries: ${libs[*]})"
	files=()
	for b in "${ROVN_BINS[@]}"; do
		# Debug info is most of a debug build's size and not needed to run; symbols stay
		# (panics keep their backtraces).
		strip --strip-debug -o "$WORK/$b" "$bin_dir/$b"
		files+=(--file "/usr/local/bin/$b=$WORK/$b:0755")
	done
	files+=(--file "$NFT=$NFT:0755")
	for lib in "${libs[@]}"; do
		files+=(--file "$lib=$(readlink -f "$lib"):0755")
	done
	# /var/run -> /run as on the hosts: the runtime names pod network namespaces
	# /var/run/netns/..., deploy/ mounts the host's /run/netns and /run/openvswitch.
	oci --name "$ROVN_NAME" --out "$rovn_tar" --env PATH=/usr/local/bin:/usr/sbin:/bin \
		"${files[@]}" "${BUSYBOX_FILES[@]}" "${ACCOUNTS[@]}" --dir /run --symlink /var/run=../run
fi

# --- coredns -------------------------------------------------------------------
if [[ -n "${ROVN_COREDNS_BINS:-}" ]]; then
	coredns_dir="$ROVN_COREDNS_BINS"
else
	log "hack/coredns-bins.sh (builds CoreDNS once with Go, then cached)"
	coredns_dir="$(bash "$ROOT/hack/coredns-bins.sh" | tail -n1)" ||
		die "hack/coredns-bins.sh failed (see above): the coredns image cannot be built without the CoreDNS binary (set ROVN_COREDNS_BINS to a directory holding it)"
fi
coredns_bin="$coredns_dir/coredns"
[[ -x "$coredns_bin" ]] || die "$coredns_bin is missing (ROVN_COREDNS_BINS=${ROVN_COREDNS_BINS:-unset}; hack/coredns-bins.sh builds it)"
built_version="$("$coredns_bin" -version 2>/dev/null | sed -n 's/^CoreDNS-\([0-9][0-9.]*\)$/\1/p')"
[[ "$built_version" == "$COREDNS_VERSION" ]] ||
	die "$coredns_bin is CoreDNS '${built_version:-unknown}', not the pinned $COREDNS_VERSION (rerun hack/coredns-bins.sh)"
coredns_key="$(key coredns "$COREDNS_NAME" "$(hash_of "$coredns_bin")")"
coredns_tar="$STORE/archives/coredns-$coredns_key.tar"
if [[ ! -f "$coredns_tar" ]]; then
	log "building $COREDNS_NAME from $coredns_bin"
	oci --name "$COREDNS_NAME" --out "$coredns_tar" --entrypoint /coredns \
		--cmd=-conf --cmd=/etc/coredns/Corefile --file "/coredns=$coredns_bin:0755" \
		"${ACCOUNTS[@]}" --dir /etc/coredns
fi

# --- the set -------------------------------------------------------------------
set_dir="$STORE/sets/$(key set "$pause_key" "$busybox_key" "$rovn_key" "$coredns_key")"
if [[ ! -f "$set_dir/images.txt" ]]; then
	rm -rf "$set_dir"
	mkdir -p "$WORK/set"
	ln "$pause_tar" "$WORK/set/pause.tar"
	ln "$busybox_tar" "$WORK/set/busybox.tar"
	ln "$rovn_tar" "$WORK/set/rovn.tar"
	ln "$coredns_tar" "$WORK/set/coredns.tar"
	names >"$WORK/set/images.txt"
	mv "$WORK/set" "$set_dir"
fi
touch "$set_dir"

# Keep the 4 most recent sets; an archive no set links to any more (link count 1) goes.
mapfile -t old_sets < <(ls -1dt "$STORE"/sets/*/ | tail -n +5)
for old in "${old_sets[@]}"; do
	rm -rf "$old"
done
find "$STORE/archives" -maxdepth 1 -name '*.tar' -links 1 -delete

log "done in $((SECONDS - start))s"
echo "$set_dir"
