#!/usr/bin/env bash
# Make the image base locally, with no container registry: a minimal Debian bookworm root filesystem with Python
# 3.11 (python3, python3-venv) from Debian's own packages, imported into buildah as an image.
#
#   tools/images/local-base.sh [IMAGE]    (default IMAGE: localhost/sophia-base:bookworm)
#
# The root filesystem is cached in ${SOPHIA_CACHE:-~/.cache/sophia}/base-rootfs (a few minutes to make once, then
# reused); the image is committed again only when buildah does not already hold it (or with REBUILD=1). Needs root, debootstrap and
# buildah. Prints the image name.
set -euo pipefail

IMAGE="${1:-localhost/sophia-base:bookworm}"
CACHE="${SOPHIA_CACHE:-$HOME/.cache/sophia}"
ROOTFS="$CACHE/base-rootfs"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${REBUILD:-0}" != "1" ] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi

if [ ! -f "$ROOTFS/.complete" ]; then
  rm -rf "$ROOTFS.partial"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS.partial" "$MIRROR" >&2
  # What an image does not need: package caches and lists, docs, man pages.
  rm -rf "$ROOTFS.partial"/var/cache/apt/archives/*.deb "$ROOTFS.partial"/var/lib/apt/lists/* \
    "$ROOTFS.partial"/usr/share/doc/* "$ROOTFS.partial"/usr/share/man/*
  touch "$ROOTFS.partial/.complete"
  rm -rf "$ROOTFS"
  mv "$ROOTFS.partial" "$ROOTFS"
fi

ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
# Everything but the cache marker and the device/proc/sys mount points' contents.
tar -C "$ROOTFS" --exclude=./.complete --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . \
  | tar -C "$mnt" -xf -
# The base trusts what this machine trusts (a proxy's CA, say), so builds on it reach PyPI as this machine does.
cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --cmd /bin/sh "$ctr"
buildah commit --quiet "$ctr" "$IMAGE" >/dev/null
echo "$IMAGE"
