#!/usr/bin/env python3
"""Write sophia.yaml scaled to N services (synthetic generic ones added), for a rehearsal of the engine at scale.

    .venv/bin/python scripts/scaled_config.py --services 200 --out sophia-200.yaml [--total-rps 400]
    .venv/bin/sophia --config sophia-200.yaml local up

A thin wrapper over ``sophia.platforms.local.scaled``. Every service is a real process on the local platform (two
during a canary), so 200 of them need a machine to match; ``benchmarks/scale.py`` runs the engine at 200 services
with stand-in upstreams instead.
"""

import argparse
from pathlib import Path

from sophia.platforms.local.scaled import write_scaled

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, required=True, help="how many services in all")
    parser.add_argument("--base", type=Path, default=Path("sophia.yaml"), help="the configuration to scale")
    parser.add_argument("--out", type=Path, required=True, help="where to write the scaled configuration")
    parser.add_argument("--total-rps", type=float, default=None, help="the load generator's total rate, spread out")
    args = parser.parse_args()
    print(write_scaled(args.base, args.out, args.services, total_rps=args.total_rps))
