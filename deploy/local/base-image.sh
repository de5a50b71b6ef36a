#!/bin/sh
# Build the Debian bookworm base image that docker-compose.local.yml builds every service on, from Debian's
# packages alone (no container registry): debootstrap --variant=minbase into a temporary folder, then import it.
#
#   deploy/local/base-image.sh [IMAGE]          default IMAGE: localhost/amst-debian:bookworm
#
# Needs root and debootstrap. ENGINE=docker|podman picks the engine (default: podman when installed, else docker);
# MIRROR picks the Debian mirror (default http://deb.debian.org/debian). About 30 s and 200 MB on disk.
set -eu
IMAGE=${1:-localhost/amst-debian:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
if [ "$(id -u)" != 0 ]; then echo "base-image.sh: debootstrap needs root" >&2; exit 1; fi
command -v debootstrap >/dev/null || { echo "base-image.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/amst-rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# Debian's security updates too, as in Debian's own images; no package lists or .debs left in the image.
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
# As in Debian's own images: no documentation, manual pages or translations from the packages installed later.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-nodoc" <<NODOC
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
NODOC
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/*/changelog* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
tar -C "$ROOTFS" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "$IMAGE"
