"""Benchmarks: `lagesbild bench` (run.py), the bare-DuckDB limit (limit.sql, limit.py), the
pandas peer (pandas_peer.py) and the results table (results.py)."""
