"""The engine's own metrics for Prometheus, fed by the run's events (``docs/metrics.md``)."""
