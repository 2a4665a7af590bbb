"""Checks: health probes, metric sources, the load generator and the synthetic end-to-end checks."""
