#!/usr/bin/env python3
"""Write throughput of `tenure serve`, side by side with PostgreSQL in the same run.

    python benches/write_bench.py                  # every scenario, tenure and PostgreSQL
    python benches/write_bench.py --seconds 5      # shorter timed scenarios
    python benches/write_bench.py --no-postgres    # tenure only

Scenarios (each client owns one psycopg 3 connection in autocommit, on its own thread):

- insert-1 / insert-8: 1 and 8 clients sending single-row INSERTs into one table for
  --seconds; rows/s counts acknowledged rows, and every acknowledged row is counted at the
  end (any error fails the run).
- counter-8: 8 clients each adding 1 to one counter row 100 times; the counter must end at
  800.
- scan: --rows single-row INSERTs into a fresh table, then (tenure) waiting until the
  background compaction has left it in few files, then the median of 5 scans
  (`SELECT count(*), sum(id), max(payload) FROM t`), against the same rows written by one
  INSERT ... SELECT.

tenure is started here in a fresh data directory: --binary, else release/tenure or
debug/tenure under $CARGO_TARGET_DIR (default ~/.cache/tenure-target). PostgreSQL is
started from `initdb` and `pg_ctl` on PATH in a temporary directory (as the user
`postgres` when this runs as root), with its default settings (fsync and synchronous_commit
on). Prints a markdown table for README.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(dsn, seconds=60):
    deadline = time.time() + seconds
    while True:
        try:
            psycopg.connect(dsn, autocommit=True, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class Tenure:
    name = "tenure"

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="tenure-write-bench-")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--create", "--data-dir", os.path.join(self.dir, "data"),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.dsn = f"host=127.0.0.1 port={self.port} user=tenure dbname=tenure"
        wait_for(self.dsn)

    def storage(self, table):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            return c.execute(
                "SELECT data_files, buffered_rows FROM tenure.table_storage "
                "WHERE table_name = %s", (table,)).fetchone()

    def settle(self, table, timeout=120):
        """Waits for the background flush and compaction to leave `table` in at most a few
        files and nothing buffered."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            files, buffered = self.storage(table)
            if files <= 4 and buffered == 0:
                return True
            time.sleep(0.5)
        return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    name = "PostgreSQL"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pg-write-bench-")
        self.port = free_port()
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_user:
            shutil.chown(self.dir, "postgres")
        data = os.path.join(self.dir, "data")
        subprocess.run(as_user + ["initdb", "-D", data, "-U", "postgres", "--auth=trust"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_user + ["pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"),
                                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                                  "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        self.stop_command = as_user + ["pg_ctl", "-D", data, "-m", "fast", "stop"]
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        wait_for(self.dsn)

    def settle(self, table, timeout=0):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f"VACUUM ANALYZE {table}")
        return True

    def stop(self):
        subprocess.run(self.stop_command, check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_clients(dsn, clients, work):
    """Runs work(connection, client_index) on one thread per client; re-raises the first
    error of any client."""
    errors = []

    def client(i):
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                work(conn, i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def insert_rate(db, clients, seconds):
    table = f"ins_{clients}"
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE {table} (client int, n bigint, payload text)")
    counts = [0] * clients
    deadline = time.time() + seconds

    def work(conn, i):
        while time.time() < deadline:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                         (i, counts[i], f"row {counts[i]} of client {i}"))
            counts[i] += 1

    started = time.time()
    run_clients(db.dsn, clients, work)
    elapsed = time.time() - started
    with psycopg.connect(db.dsn, autocommit=True) as c:
        stored = c.execute(f"SELECT client, count(*), count(DISTINCT n) FROM {table} "
                           "GROUP BY client").fetchall()
    for client, rows, distinct in stored:
        if rows != counts[client] or distinct != counts[client]:
            raise SystemExit(f"{db.name}: client {client} had {counts[client]} inserts "
                             f"acknowledged, {rows} rows ({distinct} distinct) stored")
    if sum(r for _, r, _ in stored) != sum(counts):
        raise SystemExit(f"{db.name}: {sum(counts)} acknowledged, stored {stored}")
    return sum(counts) / elapsed


def counter(db, clients=8, increments=100):
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE counter (id int, n bigint)")
        c.execute("INSERT INTO counter VALUES (1, 0)")

    def work(conn, _):
        for _ in range(increments):
            conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    started = time.time()
    run_clients(db.dsn, clients, work)
    elapsed = time.time() - started
    with psycopg.connect(db.dsn, autocommit=True) as c:
        value = c.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]
    if value != clients * increments:
        raise SystemExit(f"{db.name}: counter ended at {value}, not {clients * increments}")
    return clients * increments / elapsed


def scan_times(db, rows):
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE trickle (id bigint, payload text)")
        started = time.time()
        for i in range(rows):
            c.execute("INSERT INTO trickle VALUES (%s, %s)", (i, f"payload {i}"))
        insert_seconds = time.time() - started
        c.execute("CREATE TABLE bulk (id bigint, payload text)")
        c.execute("INSERT INTO bulk SELECT id, payload FROM trickle")
    compacted = db.settle("trickle")
    db.settle("bulk")

    def median_scan(table):
        with psycopg.connect(db.dsn, autocommit=True) as c:
            times = []
            for _ in range(5):
                t = time.time()
                c.execute(f"SELECT count(*), sum(id), max(payload) FROM {table}").fetchone()
                times.append(time.time() - t)
            return statistics.median(times) * 1000

    return rows / insert_seconds, median_scan("trickle"), median_scan("bulk"), compacted


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tenure-target"))
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "tenure")
        if os.path.exists(path):
            return path
    raise SystemExit(f"no tenure binary under {target}; run cargo build")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rows", type=int, default=100_000,
                        help="single-row INSERTs of the scan scenario")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--only", default="insert-1,insert-8,counter-8,scan")
    args = parser.parse_args()
    only = set(args.only.split(","))
    databases = [lambda: Tenure(args.binary or default_binary())]
    if not args.no_postgres and shutil.which("initdb") and shutil.which("pg_ctl"):
        databases.append(Postgres)
    results = {}
    for start in databases:
        db = start()
        try:
            r = results.setdefault(db.name, {})
            if "insert-1" in only:
                r["insert-1"] = f"{insert_rate(db, 1, args.seconds):,.0f} rows/s"
                print(db.name, "insert-1", r["insert-1"], flush=True)
            if "insert-8" in only:
                r["insert-8"] = f"{insert_rate(db, 8, args.seconds):,.0f} rows/s"
                print(db.name, "insert-8", r["insert-8"], flush=True)
            if "counter-8" in only:
                r["counter-8"] = f"{counter(db):,.0f} updates/s, ends at 800"
                print(db.name, "counter-8", r["counter-8"], flush=True)
            if "scan" in only:
                rate, trickle, bulk, compacted = scan_times(db, args.rows)
                r["scan"] = (f"{rate:,.0f} rows/s in; scan {trickle:.1f} ms vs "
                             f"{bulk:.1f} ms bulk" + ("" if compacted else " (not compacted)"))
                print(db.name, "scan", r["scan"], flush=True)
        finally:
            db.stop()
    names = list(results)
    print()
    print("| scenario | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in names) + " |")
    for scenario in ["insert-1", "insert-8", "counter-8", "scan"]:
        if scenario in only:
            print(f"| {scenario} | " + " | ".join(results[n].get(scenario, "") for n in names)
                  + " |")


if __name__ == "__main__":
    sys.exit(main())
