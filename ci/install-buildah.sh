#!/usr/bin/env bash
# Install what the image test needs (tests/integration/test_image_buildah.py): buildah (builds with
# --isolation chroot, no container runtime), debootstrap (the local Debian base image, no registry), and
# util-linux's unshare (a private mount namespace to run the image read-only). Non-interactive; a no-op when present.
set -euo pipefail

if command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1; then
  echo "buildah already installed: $(buildah --version)"
  exit 0
fi

bash "$(dirname "$0")/apt-install.sh" buildah debootstrap util-linux
buildah --version
