#!/usr/bin/env bash
# Install Debian's `chromium` for the dashboard's browser tests (tests/fakes/browser.py drives it with Playwright
# through executable_path; Playwright never downloads a browser of its own). Non-interactive; a no-op when the
# binary is already there, or when Google Chrome is (GitHub's Ubuntu runners carry it; browser.py finds it).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
  exit 0
fi
if command -v google-chrome >/dev/null; then
  echo "Google Chrome found, no Chromium needed: $(google-chrome --version 2>/dev/null | head -n1)"
  exit 0
fi

bash "$(dirname "$0")/apt-install.sh" chromium
/usr/bin/chromium --version 2>/dev/null | head -n1
