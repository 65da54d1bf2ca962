"""Wire-protocol benchmarks through psycopg 3, for tenure and PostgreSQL side by side.

    python benches/server_clients.py tenure "host=127.0.0.1 port=5433 user=tenure dbname=tenure"
    python benches/server_clients.py postgres "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

Measures, on a table of 1,000,000 rows x 6 columns (bigint, float8, text, timestamp, bool,
numeric(12,2)) that it creates when missing:
- fetching every row, text and binary results, best of 3 runs;
- `SELECT 1` and a filtered single-row lookup by key: p50 and p99 over 5,000 sequential
  queries (extended protocol, prepared statement).
Needs tests/clients/requirements.txt installed. Prints one line per figure.
"""

import statistics
import sys
import time

import psycopg

SYSTEM, DSN = sys.argv[1], sys.argv[2]
ROWS = 1_000_000
QUERIES = 5_000

CREATE = {
    # tenure: DataFusion's SQL
    "tenure": """CREATE TABLE bench_rows AS SELECT
        g AS id,
        CAST(g AS DOUBLE PRECISION) * 0.5 AS x,
        'customer-' || CAST(g AS TEXT) AS s,
        to_timestamp(1704067200 + g) AS ts,
        g % 2 = 0 AS flag,
        CAST((g % 100000) / 100.0 AS DECIMAL(12, 2)) AS amount
        FROM generate_series(1, 1000000) AS t(g)""",
    "postgres": """CREATE TABLE bench_rows AS SELECT
        g::bigint AS id,
        g::double precision * 0.5 AS x,
        'customer-' || g::text AS s,
        TIMESTAMP '2024-01-01' + g * INTERVAL '1 second' AS ts,
        g % 2 = 0 AS flag,
        ((g % 100000) / 100.0)::numeric(12, 2) AS amount
        FROM generate_series(1, 1000000) AS t(g)""",
}


def ensure_table(conn):
    try:
        n = conn.execute("SELECT count(*) FROM bench_rows").fetchone()[0]
        if n == ROWS:
            return
        conn.execute("DROP TABLE bench_rows")
    except psycopg.Error:
        pass
    conn.execute(CREATE[SYSTEM])


def fetch_all(conn, binary):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with conn.cursor(binary=binary) as cur:
            cur.execute("SELECT id, x, s, ts, flag, amount FROM bench_rows")
            n = len(cur.fetchall())
        best = min(best, time.perf_counter() - start)
        assert n == ROWS, n
    return best


def latencies(conn, sql, params):
    times = []
    with conn.cursor() as cur:
        for i in range(QUERIES):
            p = params(i)
            start = time.perf_counter()
            cur.execute(sql, p, prepare=True)
            cur.fetchall()
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def main():
    with psycopg.connect(DSN, autocommit=True) as conn:
        ensure_table(conn)
        for binary in (False, True):
            seconds = fetch_all(conn, binary)
            print(f"{SYSTEM}: fetch {ROWS} rows x 6 columns, {'binary' if binary else 'text'}: {seconds:.2f} s")
        p50, p99 = latencies(conn, "SELECT 1", lambda i: None)
        print(f"{SYSTEM}: SELECT 1: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
        p50, p99 = latencies(
            conn, "SELECT id, s, amount FROM bench_rows WHERE id = %s", lambda i: (i * 7919 % ROWS + 1,)
        )
        print(f"{SYSTEM}: lookup by id: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")


main()
