#!/bin/bash
# The project image's dependency layer rebuilt with the wheel cache full, then empty, then full again, side by side:
# what the cache mount saves. Needs podman (root) and the local base (deploy/local/base-image.sh).
#   bench/image_build.sh        prints one line per build: seconds, wheels downloaded, wheels reused
# Uses a throwaway tag; puts the build cache (/var/tmp/buildah-cache) back as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/deploy/local/containers.conf
CACHE=/var/tmp/buildah-cache
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
SECRET=(); [ -f "$CA" ] && SECRET=(--secret "id=build_ca,src=$CA")
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"; podman rmi -f amst-studio:bench-build >/dev/null 2>&1 || true' EXIT

build() {  # NAME
  local started=$SECONDS
  podman build --no-cache "${SECRET[@]}" --build-arg BASE_IMAGE=localhost/amst-debian:bookworm \
    -t amst-studio:bench-build . >"$LOG/$1.log" 2>&1
  printf '%-12s %4d s  downloaded %3d  reused %3d\n' "$1" $((SECONDS - started)) \
    "$(grep -c 'Downloading ' "$LOG/$1.log" || true)" "$(grep -c 'already downloaded' "$LOG/$1.log" || true)"
}

build cache-full
mv "$CACHE" "$CACHE.bench"
trap 'rm -rf "$CACHE"; mv "$CACHE.bench" "$CACHE"; rm -rf "$LOG"; podman rmi -f amst-studio:bench-build >/dev/null 2>&1 || true' EXIT
build cache-empty
