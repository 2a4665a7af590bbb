#!/usr/bin/env bash
# Install the Debian `prometheus` package for the tests that run a real Prometheus (tests/fakes/prometheus.py).
# Non-interactive; a no-op when the binary is already there. The tests never use the package's own service (which
# systemd may start on :9090): they start their own server on a free 127.0.0.1 port with a temporary config and TSDB.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then
  echo "prometheus already installed: $( (prometheus --version 2>&1 || /usr/bin/prometheus --version 2>&1) | head -n1)"
  exit 0
fi

bash "$(dirname "$0")/apt-install.sh" prometheus
/usr/bin/prometheus --version 2>&1 | head -n1
