#!/usr/bin/env python3
"""Validate every Sophia service (the deployment guide's script): `--canary` or `--production`.

A thin wrapper over `sophia validate`; run it with the project's virtualenv, e.g. `.venv/bin/python scripts/...`.
"""

import sys

from sophia.cli import app

if __name__ == "__main__":
    app(["validate", *sys.argv[1:]])
