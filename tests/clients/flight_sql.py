"""Runs SQL through Arrow Flight SQL with the ADBC driver, as a notebook does.

Reads a JSON request on stdin:
  {"uri": "grpc://127.0.0.1:50051",
   "auth": {"bearer": TOKEN} | {"user": NAME, "password": TOKEN} | null,
   "ops": [{"sql": "...", "params": [...]} | {"tables": true} | {"schema_of": NAME}]}
and prints one JSON result per op: {"columns", "rows"}, {"tables"},
{"columns"} or {"error"}.
"""

import json
import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql


def run(conn, op):
    if "sql" in op:
        with conn.cursor() as cur:
            cur.execute(op["sql"], op.get("params"))
            table = cur.fetch_arrow_table()
            return {"columns": table.column_names, "rows": table.to_pylist()}
    if op.get("tables"):
        catalogs = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = [
            table["table_name"]
            for catalog in catalogs
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        ]
        return {"tables": sorted(names)}
    if "schema_of" in op:
        return {"columns": conn.adbc_get_table_schema(op["schema_of"]).names}
    raise ValueError(f"unknown op {op}")


def main():
    request = json.load(sys.stdin)
    auth = request.get("auth") or {}
    db_kwargs = {}
    if "bearer" in auth:
        header = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
        db_kwargs[header] = "Bearer " + auth["bearer"]
    elif "password" in auth:
        db_kwargs["username"] = auth["user"]
        db_kwargs["password"] = auth["password"]
    results = []
    try:
        conn = flight_sql.connect(request["uri"], db_kwargs=db_kwargs, autocommit=True)
    except Exception as e:  # a refused login fails here or at the first op
        print(json.dumps([{"error": f"{type(e).__name__}: {e}"}] * len(request["ops"])))
        return
    with conn:
        for op in request["ops"]:
            try:
                results.append(run(conn, op))
            except Exception as e:
                results.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
