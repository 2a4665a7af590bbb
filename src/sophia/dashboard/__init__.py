"""``sophia dashboard``: a local web view of runs, live from the run store (``docs/dashboard.md``)."""
