#!/usr/bin/env python3
"""Times sql/bench/q*.sql in DuckDB over the demo world's Parquet export.

Usage: python3 benches/compare_duckdb.py DIR [RUNS]
DIR is the output of `tenure demo --scale 10 --parquet DIR`. Each query runs once to warm
up, then RUNS times (default 5); the median wall time is printed, with the whole result
fetched as an Arrow table (as tenure's benchmark collects Arrow batches).
Needs: pip install duckdb pyarrow
"""
import pathlib
import statistics
import sys
import time

import duckdb

TABLES = ["customers", "items", "events", "orders", "order_lines"]


def main() -> None:
    data = pathlib.Path(sys.argv[1]).resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    con = duckdb.connect()
    for table in TABLES:
        con.sql(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data / (table + '.parquet')}')")
    queries = sorted((pathlib.Path(__file__).parent.parent / "sql" / "bench").glob("q*.sql"))
    threads = con.sql("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"duckdb {duckdb.__version__}, threads {threads}")
    for path in queries:
        sql = path.read_text()
        rows = con.sql(sql).to_arrow_table().num_rows
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            con.sql(sql).to_arrow_table()
            times.append(time.perf_counter() - started)
        print(f"{path.stem:24} {statistics.median(times) * 1000:9.1f} ms  ({rows} rows)")


if __name__ == "__main__":
    main()
