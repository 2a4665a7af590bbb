#!/usr/bin/env bash
# Install the Debian `prometheus` and `prometheus-pushgateway` packages for the tests that run a real Prometheus
# (tests/fakes/prometheus.py) and a real Pushgateway (tests/integration/test_engine_metrics.py).
# Non-interactive; a no-op when the binary is already there. The tests never use the package's own service (which
# systemd may start on :9090): they start their own server on a free 127.0.0.1 port with a temporary config and TSDB.
set -euo pipefail

if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-pushgateway ]; then
  echo "prometheus already installed: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
  exit 0
fi

bash "$(dirname "$0")/apt-install.sh" prometheus prometheus-pushgateway
/usr/bin/prometheus --version 2>&1 | head -n1
/usr/bin/prometheus-pushgateway --version 2>&1 | head -n1
