"""The client side of `cargo bench --bench sql_doors`: moves one large result
through each door and reads it straight from Delta, then times a small query
through each door. Arguments: LAKE HTTP_PORT FLIGHT_PORT PG_PORT SERVER_PID.

Flight SQL is read by two clients: ADBC's driver (Go inside, what notebooks
use) and pyarrow's own Flight client (C++), which sends the Flight SQL
command itself. On a small machine the client shares the cores with the
server, so its CPU counts: both are shown."""

import json
import os
import statistics
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import deltalake
import psycopg
import pyarrow
import pyarrow.flight

COLUMNS = ["doc_id", "content_hash", "chunk_idx", "n_tokens", "char_start", "char_end", "page_start", "page_end"]
LARGE = f"SELECT {', '.join(COLUMNS)} FROM chunks"
SMALL = "SELECT count(*) AS n FROM documents WHERE tenant = $1"


def server_cpu(pid):
    """CPU seconds the server has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best(runs, f, server):
    """The fastest of `runs` runs of f: (seconds, client CPU s, server CPU s,
    result). f returns a summary, not the rows: each run reuses the memory
    the last one freed, as a warm client would."""
    out = []
    for _ in range(runs):
        started, cpu, server_started = time.perf_counter(), time.process_time(), server_cpu(server)
        result = f()
        out.append((
            time.perf_counter() - started,
            time.process_time() - cpu,
            server_cpu(server) - server_started,
            result,
        ))
    return min(out, key=lambda r: r[0])


def direct(lake):
    table = deltalake.DeltaTable(f"{lake}/chunks").to_pyarrow_table(columns=COLUMNS)
    return table.num_rows, table.nbytes


def flight(conn):
    with conn.cursor() as cur:
        cur.execute(LARGE)
        return cur.fetch_arrow_table().num_rows


def protobuf_field(number, data):
    """One length-delimited protobuf field."""
    def varint(n):
        out = b""
        while n > 0x7F:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])
    return varint(number << 3 | 2) + varint(len(data)) + data


def statement_query(sql):
    """A Flight SQL CommandStatementQuery, packed in a protobuf Any."""
    kind = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return protobuf_field(1, kind) + protobuf_field(2, protobuf_field(1, sql.encode()))


def pyarrow_flight(client):
    info = client.get_flight_info(pyarrow.flight.FlightDescriptor.for_command(statement_query(LARGE)))
    return sum(client.do_get(e.ticket).read_all().num_rows for e in info.endpoints)


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
    lake, http, flight_port, pg, server = sys.argv[1], *map(int, sys.argv[2:])
    fconn = flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True)
    pconn = psycopg.connect(host="127.0.0.1", port=pg, user="bench", dbname="docstream", autocommit=True)

    *direct_run, (rows, nbytes) = best(3, lambda: direct(lake), server)
    mb = nbytes / 1e6
    *flight_run, got = best(3, lambda: flight(fconn), server)
    assert got == rows, (got, rows)
    client = pyarrow.flight.FlightClient(f"grpc://127.0.0.1:{flight_port}")
    *pyarrow_run, got = best(3, lambda: pyarrow_flight(client), server)
    assert got == rows, (got, rows)
    *pg_run, got = best(1, lambda: postgres(pconn), server)
    assert got == rows, (got, rows)
    print(f"\n{rows} rows, {mb:.0f} MB as Arrow (chunks without text), {os.cpu_count()} cores:")
    print(f"{'path':<30}{'s':>7}{'Mrows/s':>9}{'MB/s':>6}{'vs direct':>10}{'client CPU s':>14}{'server CPU s':>14}")
    paths = [
        ("delta-rs read (anchor)", direct_run),
        ("Flight SQL -> ADBC", flight_run),
        ("Flight SQL -> pyarrow.flight", pyarrow_run),
        ("Postgres -> psycopg", pg_run),
    ]
    t_direct = direct_run[0]
    for name, (t, client_cpu, server_cpu_s) in paths:
        print(
            f"{name:<30}{t:>7.2f}{rows / t / 1e6:>9.2f}{mb / t:>6.0f}{t_direct / t:>9.2f}x"
            f"{client_cpu:>14.2f}{server_cpu_s:>14.2f}"
        )

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
