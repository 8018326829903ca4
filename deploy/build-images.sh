#!/usr/bin/env bash
# build-images.sh builds, without pulling anything, every image the compose
# file, the ghtest module and the chaos suite need:
#
#   GENIEHIVE_IMAGE  the static geniehive binary (CGO_ENABLED=0) on scratch + CA certs
#   REDIS_IMAGE      Debian's redis-server + its shared libraries on scratch
#   LB_IMAGE         Debian's haproxy + its shared libraries on scratch
#
# Each image carries a label with the hash of its inputs (the binary, the
# Dockerfile); when the existing image has the same hash it is kept, so a
# second run costs one cached `go build` and a few `docker image inspect`s.
#
# Usage:
#   deploy/build-images.sh            build (or keep) all three images
#   deploy/build-images.sh --env      ... then print VAR=image lines (for eval/--env-file)
#   deploy/build-images.sh --force    rebuild even when the hash matches
#
# The names default to local tags; override with the environment variables
# above. compose.yaml defaults to the public images instead; point it at these
# with `docker-compose --env-file deploy/local.env -f compose.yaml up`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

GENIEHIVE_IMAGE=${GENIEHIVE_IMAGE:-geniehive/geniehive:dev}
REDIS_IMAGE=${REDIS_IMAGE:-geniehive/redis-local:dev}
LB_IMAGE=${LB_IMAGE:-geniehive/haproxy-local:dev}

print_env=0
force=0
for a in "$@"; do
	case "$a" in
	--env) print_env=1 ;;
	--force) force=1 ;;
	-h | --help)
		sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build-images.sh: unknown argument $a" >&2
		exit 2
		;;
	esac
done

log() { echo "build-images: $*" >&2; }

# Test packages run in parallel may call this at once; build one at a time.
if command -v flock >/dev/null 2>&1; then
	exec 9>"${TMPDIR:-/tmp}/geniehive-build-images.lock"
	flock 9
fi

command -v docker >/dev/null || {
	log "docker not found"
	exit 1
}
# The engine here has no buildx plugin; the legacy builder handles FROM scratch fine.
export DOCKER_BUILDKIT=0

label=org.geniehive.inputs

# current_hash IMAGE prints the input hash the image was built from ("" if none).
current_hash() {
	docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null || true
}

# build IMAGE DOCKERFILE CONTEXT HASH
build() {
	local image=$1 dockerfile=$2 ctx=$3 hash=$4
	log "building $image"
	if ! docker build -q --label "$label=$hash" -f "$dockerfile" -t "$image" "$ctx" >"$work/build.log" 2>&1; then
		cat "$work/build.log" >&2
		return 1
	fi
}

hash_of() { cat "$@" | sha256sum | cut -c1-32; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# needs_apt installs Debian packages whose binaries are missing.
ensure_pkg() {
	local bin=$1 pkg=$2
	if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ] && [ ! -x "/usr/bin/$bin" ]; then
		log "installing $pkg"
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get install -y -q "$pkg" >/dev/null || {
			$sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$pkg" >/dev/null
		}
		# The packages start system services; the images only need the binaries.
		$sudo systemctl disable --now "$pkg" >/dev/null 2>&1 || true
	fi
}

# pack_rootfs DIR BINARY DEST copies BINARY to DIR/DEST with every shared
# library ldd reports (and the dynamic loader), at their own paths.
pack_rootfs() {
	local dir=$1 bin=$2 dest=$3
	local real
	real=$(readlink -f "$bin")
	mkdir -p "$dir$(dirname "$dest")" "$dir/tmp" "$dir/etc"
	chmod 1777 "$dir/tmp"
	cp "$real" "$dir$dest"
	ldd "$real" | awk '/=>/ {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r lib; do
		[ -n "$lib" ] && [ -e "$lib" ] || continue
		mkdir -p "$dir$(dirname "$lib")"
		cp -L "$lib" "$dir$lib"
	done
	# The loader is looked up at its canonical path; make sure both exist.
	for l in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do
		if [ -e "$l" ] && [ ! -e "$dir$l" ]; then
			mkdir -p "$dir$(dirname "$l")"
			cp -L "$l" "$dir$l"
		fi
	done
	printf 'root:x:0:0:root:/:/sbin/nologin\nhaproxy:x:99:99:haproxy:/:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nhaproxy:x:99:\nredis:x:999:\nnogroup:x:65534:\n' >"$dir/etc/group"
	printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
	# glibc before 2.34 loads NSS modules dynamically; copy them when present.
	for l in /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
		[ -e "$l" ] && { mkdir -p "$dir$(dirname "$l")"; cp -L "$l" "$dir$l"; }
	done
	true
}

# --- geniehive ---------------------------------------------------------------
ctx="$work/geniehive"
mkdir -p "$ctx/tmp"
chmod 1777 "$ctx/tmp"
# GENIEHIVE_BUILD_TAGS=mutants (make test-mutants) compiles in the
# deliberate bugs of edge/mutant.go, switched on by GENIEHIVE_MUTANT.
log "go build ./cmd/geniehive (CGO_ENABLED=0${GENIEHIVE_BUILD_TAGS:+, tags $GENIEHIVE_BUILD_TAGS})"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags "${GENIEHIVE_BUILD_TAGS:-}" -ldflags='-s -w' -o "$ctx/geniehive" ./cmd/geniehive)
certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$certs" ]; then
	ensure_pkg update-ca-certificates ca-certificates
fi
cp "$certs" "$ctx/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/group"
h=$(hash_of "$ctx/geniehive" "$here/images/geniehive.Dockerfile" "$ctx/ca-certificates.crt")
if [ $force = 1 ] || [ "$(current_hash "$GENIEHIVE_IMAGE")" != "$h" ]; then
	build "$GENIEHIVE_IMAGE" "$here/images/geniehive.Dockerfile" "$ctx" "$h"
else
	log "$GENIEHIVE_IMAGE up to date"
fi

# --- redis -------------------------------------------------------------------
ensure_pkg redis-server redis-server
ctx="$work/redis"
pack_rootfs "$ctx/rootfs" "$(command -v redis-server || echo /usr/bin/redis-server)" /usr/bin/redis-server
# redis-cli too, as in the public image (health checks, debugging).
if cli=$(command -v redis-cli); then
	pack_rootfs "$ctx/rootfs" "$cli" /usr/bin/redis-cli
fi
mkdir -p "$ctx/rootfs/data"
chmod 1777 "$ctx/rootfs/data"
h=$(hash_of "$ctx/rootfs/usr/bin/redis-server" $(ls "$ctx/rootfs/usr/bin/redis-cli" 2>/dev/null) "$here/images/redis.Dockerfile" "$0")
if [ $force = 1 ] || [ "$(current_hash "$REDIS_IMAGE")" != "$h" ]; then
	build "$REDIS_IMAGE" "$here/images/redis.Dockerfile" "$ctx" "$h"
else
	log "$REDIS_IMAGE up to date"
fi

# --- haproxy -----------------------------------------------------------------
ensure_pkg haproxy haproxy
ctx="$work/haproxy"
hap=$(command -v haproxy || echo /usr/sbin/haproxy)
pack_rootfs "$ctx/rootfs" "$hap" /usr/sbin/haproxy
mkdir -p "$ctx/rootfs/usr/local/etc/haproxy" "$ctx/rootfs/var/lib/haproxy" "$ctx/rootfs/run"
chmod 1777 "$ctx/rootfs/var/lib/haproxy" "$ctx/rootfs/run"
h=$(hash_of "$ctx/rootfs/usr/sbin/haproxy" "$here/images/haproxy.Dockerfile" "$0")
if [ $force = 1 ] || [ "$(current_hash "$LB_IMAGE")" != "$h" ]; then
	build "$LB_IMAGE" "$here/images/haproxy.Dockerfile" "$ctx" "$h"
else
	log "$LB_IMAGE up to date"
fi

if [ $print_env = 1 ]; then
	printf 'GENIEHIVE_IMAGE=%s\nREDIS_IMAGE=%s\nLB_IMAGE=%s\n' "$GENIEHIVE_IMAGE" "$REDIS_IMAGE" "$LB_IMAGE"
fi
