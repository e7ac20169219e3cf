"""The client side of `cargo bench --bench sql_doors`: moves one large result
through each door and reads it straight from Delta, then times a small query
through each door. Arguments: LAKE HTTP_PORT FLIGHT_PORT PG_PORT."""

import json
import statistics
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import deltalake
import psycopg

COLUMNS = ["doc_id", "content_hash", "chunk_idx", "n_tokens", "char_start", "char_end", "page_start", "page_end"]
LARGE = f"SELECT {', '.join(COLUMNS)} FROM chunks"
SMALL = "SELECT count(*) AS n FROM documents WHERE tenant = $1"


def best(runs, f):
    """The fastest of `runs` runs of f: (seconds, result)."""
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        result = f()
        out.append((time.perf_counter() - started, result))
    return min(out, key=lambda r: r[0])


def direct(lake):
    return deltalake.DeltaTable(f"{lake}/chunks").to_pyarrow_table(columns=COLUMNS)


def flight(conn):
    with conn.cursor() as cur:
        cur.execute(LARGE)
        return cur.fetch_arrow_table()


def postgres(conn):
    rows = 0
    with conn.cursor() as cur:
        cur.execute(LARGE)
        while batch := cur.fetchmany(100_000):
            rows += len(batch)
    return rows


def latencies(f, n=50):
    for _ in range(3):
        f()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        f()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main():
    lake, http, flight_port, pg = sys.argv[1], *map(int, sys.argv[2:])
    fconn = flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True)
    pconn = psycopg.connect(host="127.0.0.1", port=pg, user="bench", dbname="docstream", autocommit=True)

    t_direct, table = best(2, lambda: direct(lake))
    rows, mb = table.num_rows, table.nbytes / 1e6
    t_flight, got = best(2, lambda: flight(fconn))
    assert got.num_rows == rows, (got.num_rows, rows)
    t_pg, got = best(1, lambda: postgres(pconn))
    assert got == rows, (got, rows)
    print(f"\n{rows} rows, {mb:.0f} MB as Arrow (chunks without text):")
    print(f"{'path':<28}{'s':>8}{'Mrows/s':>10}{'MB/s':>9}{'vs direct':>11}")
    for name, t in [("delta-rs read (anchor)", t_direct), ("Flight SQL -> pyarrow", t_flight), ("Postgres -> psycopg", t_pg)]:
        print(f"{name:<28}{t:>8.2f}{rows / t / 1e6:>10.2f}{mb / t:>9.0f}{t_direct / t:>10.2f}x")

    def over_flight():
        with fconn.cursor() as cur:
            cur.execute(SMALL, ("t3",))
            return cur.fetchall()

    def over_pg():
        with pconn.cursor() as cur:
            cur.execute(SMALL.replace("$1", "%s"), ("t3",))
            return cur.fetchall()

    def over_http():
        body = json.dumps({"sql": SMALL.replace("$1", "'t3'")}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/v1/query", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request) as r:
            return json.load(r)

    assert over_flight()[0][0] == over_pg()[0][0] == over_http()["rows"][0]["n"]
    print(f"\n{SMALL} (ms):")
    print(f"{'door':<28}{'p50':>8}{'p99':>8}")
    for name, f in [("Flight SQL (ADBC)", over_flight), ("Postgres (psycopg)", over_pg), ("HTTP /v1/query", over_http)]:
        p50, p99 = latencies(f)
        print(f"{name:<28}{p50:>8.1f}{p99:>8.1f}")


if __name__ == "__main__":
    main()
