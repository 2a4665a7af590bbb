"""Build tooling adapters: the release artifact builder and the lint/test command runner."""
