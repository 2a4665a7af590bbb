#!/usr/bin/env bash
# Install Debian packages non-interactively (with sudo when not root): the one apt-get step the install-*.sh
# scripts share. Usage: bash ci/apt-install.sh PACKAGE...
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi

# env(1) rather than export: sudo drops the caller's environment. The package lists are fetched once an hour at
# most, so the install scripts one CI run calls share one update.
if ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | grep -q .; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
