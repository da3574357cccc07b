"""A BI client's view of marts.duckdb through duckdb-engine (SQLAlchemy), run by
test_bi_access in a fresh environment with the versions a BI tool bundles:
`python duckdb_engine_client.py <marts.duckdb>` prints tables, columns of
mart_indicator_values and the Python type of a timestamp read back."""

import sys

import sqlalchemy as sa

try:
    import pytz
except ImportError:
    pytz = None
assert pytz is None, "the route must work without pytz"

engine = sa.create_engine(f"duckdb:///{sys.argv[1]}", connect_args={"read_only": True})
inspector = sa.inspect(engine)
tables = inspector.get_table_names()
columns = [c["name"] for c in inspector.get_columns("mart_indicator_values")]
with engine.connect() as con:
    # With a time zone type the fallback would be one too, and fetching it would need pytz.
    query = "select coalesce(max(fetched_at), timestamp '2026-01-01') from mart_indicator_values"
    stamp = con.execute(sa.text(query)).scalar()
print(len(tables), len(columns), type(stamp).__name__)
