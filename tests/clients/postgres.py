"""Postgres clients against docstream's Postgres door, as applications use
them: psycopg for queries with parameters, and SQLAlchemy's inspector, which
Superset runs to list tables and columns.

Reads a JSON request on stdin:
  {"host": ..., "port": ..., "user": ..., "password": ...,
   "ops": [{"sql": "...", "params": [...]} | {"inspect": TABLE}]}
and prints one JSON result per op: {"columns", "rows"}, {"schemas",
"tables", "columns"} or {"error"}.
"""

import json
import sys

import psycopg
import sqlalchemy


def connect(r):
    return psycopg.connect(
        host=r["host"], port=r["port"], user=r["user"], password=r["password"],
        dbname="docstream", autocommit=True,
    )


def run(r, op):
    if "sql" in op:
        with connect(r) as conn, conn.cursor() as cur:
            cur.execute(op["sql"], op.get("params"))
            columns = [d.name for d in cur.description]
            return {"columns": columns, "rows": [dict(zip(columns, row)) for row in cur.fetchall()]}
    if "inspect" in op:
        url = sqlalchemy.URL.create(
            "postgresql+psycopg", username=r["user"], password=r["password"],
            host=r["host"], port=r["port"], database="docstream",
        )
        engine = sqlalchemy.create_engine(url)
        try:
            inspector = sqlalchemy.inspect(engine)
            tables = inspector.get_table_names()
            columns = [c["name"] for c in inspector.get_columns(op["inspect"])]
            return {"schemas": inspector.get_schema_names(), "tables": sorted(tables), "columns": columns}
        finally:
            engine.dispose()
    raise ValueError(f"unknown op {op}")


def main():
    request = json.load(sys.stdin)
    results = []
    for op in request["ops"]:
        try:
            results.append(run(request, op))
        except Exception as e:
            results.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
