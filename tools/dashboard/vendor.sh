#!/usr/bin/env bash
# Refresh the dashboard's vendored Chart.js from the npm registry (pinned by package-lock.json) and its licences.
# The built files are checked in, so neither installing nor running the dashboard needs Node.js.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
out=../../src/sophia/dashboard/static/vendor
cp node_modules/chart.js/dist/chart.umd.min.js "$out/"
cp node_modules/chart.js/LICENSE.md "$out/chart.js.LICENSE.md"
cp node_modules/@kurkle/color/LICENSE.md "$out/kurkle-color.LICENSE.md"  # bundled into chart.umd.min.js
rm -rf node_modules
echo "vendored chart.js $(node -p 'require("./package-lock.json").packages["node_modules/chart.js"].version')"
