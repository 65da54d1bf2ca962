"""COPY FROM STDIN through psql's \\copy: 3,000,000 rows (200 MB of text: bigint, text,
float8, timestamp) into an empty table, best of three, against tenure or PostgreSQL.

    python benches/copy_in.py "host=127.0.0.1 port=55432 user=tenure dbname=tenure"

The data file is written once to /tmp (COPY_BENCH_FILE to change it).
"""

import os
import subprocess
import sys
import time

dsn = sys.argv[1]
path = os.environ.get("COPY_BENCH_FILE", "/tmp/tenure-copy-bench.tsv")
if not os.path.exists(path):
    with open(path, "w") as f:
        for i in range(3_000_000):
            f.write(f"{i}\tcustomer {i % 99991} bought item {i * 7 % 100003}\t{(i % 1000) / 8}"
                    f"\t2025-0{1 + i % 9}-1{i % 10} 12:34:56\n")


def psql(*commands):
    args = ["psql", dsn, "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


psql("DROP TABLE IF EXISTS copy_bench",
     "CREATE TABLE copy_bench (id BIGINT, note TEXT, amount DOUBLE PRECISION, at TIMESTAMP)")
times = []
for run in range(3):
    psql("TRUNCATE copy_bench")
    start = time.perf_counter()
    psql(f"\\copy copy_bench FROM '{path}'")
    times.append(time.perf_counter() - start)
    print(f"run {run + 1}: {times[-1]:.2f} s")
rows = psql("SELECT count(*) FROM copy_bench").strip()
print(f"{rows} rows, best of 3: {min(times):.2f} s")
psql("DROP TABLE copy_bench")
