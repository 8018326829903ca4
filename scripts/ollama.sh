#!/usr/bin/env bash
# Builds a real Ollama for the tests and prints the path of the binary.
#
# github.com/ollama/ollama@v$VERSION is built from the Go module proxy with
# cgo (its llama.cpp/ggml sources compile through `go install`, CPU backend
# only, no GPU libraries) into a cache directory keyed by the version:
#   ${GENIEHIVE_OLLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/geniehive/ollama-$VERSION}/bin/ollama
# A binary already there that reports the right version is reused; a lock
# keeps two runs from building at once. Everything but the path goes to
# stderr; the compiler output is kept in build.log beside the binary.
#
# Why the extra headers: the module zip leaves out every directory named
# `vendor`, so llama.cpp's vendored headers are missing from it
# (llama/llama.cpp/vendor: nlohmann/json.hpp, stb/stb_image.h,
# miniaudio/miniaudio.h; see llama/llama.go's `#cgo CPPFLAGS` and
# tools/mtmd/mtmd-helper.cpp). Debian's nlohmann-json3-dev and libstb-dev put
# the first two in /usr/include; miniaudio.h comes from the Go module
# github.com/gen2brain/malgo and is reached through CPATH.
# Version string and release mode are what Ollama's own build sets with
# -ldflags (version/version.go, server/routes.go `mode`).
#
# Needs: go, gcc, g++ (CGO_ENABLED=1), and apt-get (as root or via sudo) when
# the two header packages are missing. A cold build takes tens of minutes on
# two cores; a warm Go build cache makes it a few minutes.
set -euo pipefail

VERSION=0.17.4
MALGO=github.com/gen2brain/malgo@v0.11.24
cache=${GENIEHIVE_OLLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/geniehive/ollama-$VERSION}
bin=$cache/bin/ollama

log() { printf '== ollama: %s\n' "$*" >&2; }

# usable BIN: the binary runs and reports VERSION (`ollama --version` needs
# no server: it prints a warning and the client version).
usable() { [ -x "$1" ] && "$1" --version 2>&1 | grep -q "version is $VERSION\$"; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "another build holds $cache/.lock; waiting"
  flock 9
fi

if usable "$bin"; then
  echo "$bin"
  exit 0
fi

for tool in go gcc g++; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool is required"; exit 1; }
done

if [ ! -f /usr/include/nlohmann/json.hpp ] || [ ! -f /usr/include/stb/stb_image.h ]; then
  log "installing nlohmann-json3-dev libstb-dev from Debian packages"
  SUDO=
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nlohmann-json3-dev libstb-dev >/dev/null
fi

# miniaudio.h from the malgo module, under the path mtmd-helper.cpp includes.
tmp=$(mktemp -d)
build=
trap 'if [ -n "$build" ]; then kill "$build" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
if ! malgo_json=$(cd "$tmp" && GOFLAGS= go mod download -json "$MALGO"); then
  log "go mod download $MALGO failed: $malgo_json"
  exit 1
fi
malgo_dir=$(printf '%s\n' "$malgo_json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ ! -f "$malgo_dir/miniaudio.h" ]; then
  log "miniaudio.h not found in $MALGO ($malgo_dir)"
  exit 1
fi
mkdir -p "$cache/include/miniaudio"
cp "$malgo_dir/miniaudio.h" "$cache/include/miniaudio/miniaudio.h"

log "building github.com/ollama/ollama@v$VERSION (cgo, CPU only); log: $cache/build.log"
start=$(date +%s)
(cd "$tmp" &&
  CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOBIN="$tmp/bin" \
    CPATH="$cache/include${CPATH:+:$CPATH}" \
    exec go install -ldflags "-s -w -X github.com/ollama/ollama/version.Version=$VERSION -X github.com/ollama/ollama/server.mode=release" \
    "github.com/ollama/ollama@v$VERSION") >"$cache/build.log" 2>&1 &
build=$!
# A line a minute, so a CI that stops silent jobs sees progress.
next=60
while kill -0 "$build" 2>/dev/null; do
  sleep 2
  if [ $(( $(date +%s) - start )) -ge "$next" ]; then
    log "still building (${next}s)"
    next=$(( next + 60 ))
  fi
done
if ! wait "$build"; then
  build=
  log "build failed; last lines of $cache/build.log:"
  tail -n 40 "$cache/build.log" >&2
  exit 1
fi
build=
mkdir -p "$cache/bin"
mv -f "$tmp/bin/ollama" "$bin.new"
mv -f "$bin.new" "$bin"
if ! usable "$bin"; then
  log "built $bin does not report version $VERSION:"
  "$bin" --version >&2 || true
  exit 1
fi
log "built in $(( $(date +%s) - start ))s: $bin ($(du -h "$bin" | cut -f1))"
echo "$bin"
