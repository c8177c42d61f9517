"""Scripts that make the result tables committed under ``results/`` (run as ``python -m benchmarks.tables.NAME``)."""
