#!/usr/bin/env python3
"""The synthetic end-to-end checks (the deployment guide's script): Slack post, CRM task, Neon query.

A thin wrapper over `sophia synthetics`; run it with the project's virtualenv.
"""

import sys

from sophia.cli import app

if __name__ == "__main__":
    app(["synthetics", *sys.argv[1:]])
