"""The scale-out tests (marker `spark`, `make test-spark`) need the optional `spark` extra
(dbt-spark, pyspark, prefect-dask, dask) and Java 17 (tests/conftest.py leaves this folder out
without the extra); they reuse the end-to-end fixtures: one
generated municipality and one baseline nightly run on the default path (DuckDB, in-process)."""

from tests.flows.conftest import baseline, municipality, prefect_api  # noqa: F401
