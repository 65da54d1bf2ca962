#!/usr/bin/env python3
"""Load test for `tenure serve`: many clients mixing small queries, model scoring, COPY in
and out, cancels, statement timeouts and abrupt disconnects; checks that nothing was lost,
that no error other than the expected ones came back, and that the server's memory returns
to where it started.

    python benches/load_test.py                            # 200 clients for 5 minutes
    python benches/load_test.py --clients 10 --duration 20 # a quick try
    python benches/load_test.py --weight disconnect=0      # leave one action out

It starts the server itself: `tenure demo --scale 0.05` in a fresh temporary data
directory, a few small models trained with `tenure sql`, then `tenure serve` on a free
port with TENURE_MAX_CONNECTIONS = clients + 20 (--max-connections). The binary is
--binary, else release/tenure or debug/tenure under $CARGO_TARGET_DIR (default
~/.cache/tenure-target). Each client owns one connection (autocommit) and one table and
loops until the duration ends, picking actions by weight (WEIGHTS below). Needs psycopg 3
(tests/clients/requirements.txt). Prints progress every 10 s, then markdown tables for the
README. Latencies are per action: a cancel's include the 0.1-0.3 s it waits before
cancelling, a disconnect's the reconnection.

Exits 1 unless all of these hold: no unexpected error (only SQLSTATE 57014 from cancels
and statement_timeout is expected; a refused connection is unexpected); no row lost or
added (each client's table is counted after every COPY and at the end); the server alive
throughout; its RSS, settled after the load, at most start x --memory-factor +
--memory-slack-mib; no leaked file descriptors; the idle server not busy afterwards (a
statement outliving its client); no panic in its log; and exit status 0 within 40 s of
SIGTERM. The data directory and server log are kept on failure or with --keep.
"""

import argparse
import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import psycopg
from psycopg import errors as pgerrors

# How often each action is picked (relative weights).
WEIGHTS = {
    "select1": 14,
    "lookup": 14,
    "aggregate": 10,
    "score": 15,
    "copy_in": 14,
    "copy_out": 9,
    "copy_abort": 4,
    "cancel": 7,
    "timeout": 7,
    "disconnect": 6,
}

# A query that would run for an hour (10^12 rows, one core): it only ends by cancel,
# timeout or disconnect, so one that is not stopped shows up as a busy idle server at the
# end. Not a cross join: DataFusion's nested-loop join checks for cancellation only between
# steps of about 8192 x (its build side) pairs, which takes seconds in a debug build.
SLOW_QUERY = "SELECT count(*) FROM generate_series(1, 1000000000000) t(v) WHERE v % 7 = 3"

CLIENT_TABLE = "CREATE TABLE {} (id BIGINT NOT NULL, note TEXT, amount DOUBLE PRECISION)"
COPY_ROWS = 100  # rows per COPY FROM STDIN
BIG_COPY_ROWS = 30_000  # about 1.2 MB: more than the server's 1 MB COPY chunk
CANCEL_ATTEMPTS = 15  # a cancel that lands before the query starts is ignored; retry
CANCEL_RETRY_S = 2.0
SETUP_SQL = [
    # Materialised feature tables keep scoring queries about the model, not the views.
    "CREATE TABLE churn_input AS SELECT customer_id, recency_days, frequency, "
    "sessions_since_last_order, last_order_rating, device, churned FROM churn_features",
    "CREATE TABLE rfm_weekly AS SELECT * FROM rfm_summary("
    "'SELECT customer_id, order_time, amount FROM orders', '2025-12-31', 'week')",
    "CREATE TABLE rfm_input AS SELECT customer_id, recency_days, frequency, monetary FROM rfm",
    "CREATE MODEL churn KIND churn_classifier TARGET churned "
    "OPTIONS (hidden = '16', epochs = 5, seed = 1) "
    "AS SELECT recency_days, frequency, sessions_since_last_order, last_order_rating, device, "
    "churned FROM churn_input ORDER BY customer_id",
    "CREATE MODEL bg KIND bgnbd AS SELECT frequency, recency, t FROM rfm_weekly",
    "CREATE MODEL gg KIND gamma_gamma AS SELECT frequency, monetary_value FROM rfm_weekly",
    "CREATE MODEL segments KIND kmeans OPTIONS (k_min = 3, k_max = 4, log = 'monetary') "
    "AS SELECT recency_days, frequency, monetary FROM rfm_input",
]
SCORE_QUERIES = [
    ("churn", "SELECT count(*), avg(churn_score('churn', recency_days, frequency, "
     "sessions_since_last_order, last_order_rating, device)) "
     "FROM churn_input WHERE customer_id BETWEEN %s AND %s"),
    ("btyd", "SELECT count(*), avg(p_alive('bg', frequency, recency, t)), "
     "sum(clv('bg', 'gg', frequency, recency, t, monetary_value, 12, 0.01)) "
     "FROM rfm_weekly WHERE customer_id BETWEEN %s AND %s"),
    ("segment", "SELECT segment('segments', recency_days, frequency, monetary) AS s, count(*) "
     "FROM rfm_input WHERE customer_id BETWEEN %s AND %s GROUP BY 1"),
]
SCORE_ROWS = 500  # customers per scoring query


class WrongResult(Exception):
    """A statement succeeded but returned something it must not (an unexpected error)."""


class CopyAborted(Exception):
    """Raised inside a COPY block so that psycopg ends the COPY with CopyFail."""


class Stats:
    """Counts and latencies of every client, and the errors that were not expected."""

    def __init__(self):
        self.latency = collections.defaultdict(list)  # kind -> seconds of each action
        self.expected = collections.Counter()  # kind -> actions ending in 57014 as meant
        self.unexpected = collections.Counter()  # kind -> unexpected errors
        self.messages = collections.Counter()  # normalised message -> count
        self.examples = {}  # normalised message -> first full message
        self.cancel_retries = 0
        self.rows_copied = 0
        self.row_mismatches = []  # (table, expected, found)

    def done(self, kind, seconds, expected_error=False):
        self.latency[kind].append(seconds)
        if expected_error:
            self.expected[kind] += 1

    def error(self, kind, exc):
        self.unexpected[kind] += 1
        text = describe(exc)
        key = f"{kind}: " + re.sub(r"\d+", "N", text)  # lt_c17 and lt_c3 are one error
        self.messages[key] += 1
        self.examples.setdefault(key, f"{kind}: {text}")

    def mismatch(self, table, expected, found):
        self.row_mismatches.append((table, expected, found))

    def actions(self):
        return sum(len(v) for v in self.latency.values())


def describe(exc):
    """One line: SQLSTATE, exception class and the first line of its message."""
    state = getattr(exc, "sqlstate", None)
    first = (str(exc).strip().splitlines() or [""])[0][:240]
    return f"{state + ' ' if state else ''}{type(exc).__name__}: {first}"


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def proc_status(pid):
    """VmRSS, VmHWM (peak RSS) in bytes and the thread count of a process."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return (int(fields["VmRSS"][0]) * 1024, int(fields["VmHWM"][0]) * 1024,
            int(fields["Threads"][0]))


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def mib(n):
    return n / (1 << 20)


def uncolour(line):
    """A log line without the terminal colour codes tracing writes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


def drop_socket(conn):
    """Cut a psycopg connection as a crashed client would: shut its socket down under
    libpq (the server sees end of stream mid-statement, with no Terminate). Shutting
    down a dup of the descriptor leaves libpq's own descriptor valid, so it cannot be
    reused by another connection's socket while libpq still holds it."""
    with contextlib.suppress(Exception):
        s = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            s.shutdown(socket.SHUT_RDWR)
        finally:
            s.close()


async def raw_message(reader):
    kind = await reader.readexactly(1)
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    return kind, await reader.readexactly(length - 4)


async def raw_abandon(port, sql, delay):
    """A client speaking the protocol by hand: log in, send a query, and reset the
    connection (RST, SO_LINGER 0) without waiting for the answer or saying Terminate."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        params = b"user\0tenure\0database\0tenure\0application_name\0load_test_raw\0\0"
        writer.write(struct.pack("!ii", 8 + len(params), 196608) + params)
        while True:
            kind, body = await raw_message(reader)
            if kind == b"E":
                fields = dict((f[:1], f[1:].decode()) for f in body.split(b"\0") if f)
                raise psycopg.OperationalError(
                    f"raw login refused: {fields.get(b'C')} {fields.get(b'M')}")
            if kind == b"Z":
                break
        query = sql.encode() + b"\0"
        writer.write(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        await writer.drain()
        await asyncio.sleep(delay)
    finally:
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


def copy_lines(first_id, n, client):
    return "".join(f"{i}\tclient {client} row {i}\t{i * 0.25}\n"
                   for i in range(first_id, first_id + n))


class Client:
    """One simulated application: a connection, a table, and a loop of actions."""

    def __init__(self, n, run, rng):
        self.n = n
        self.run = run
        self.stats = run.stats
        self.rng = rng
        self.table = f"lt_c{n}"
        self.conn = None
        self.created = False  # its table exists
        self.expected = 0  # rows this client's COPYs committed
        self.next_id = 1  # ids never repeat, so an aborted COPY's rows cannot hide
        self.last_id = 0  # highest committed id

    async def connect(self):
        """(Re)connect until it works or the run ends; each failure is unexpected."""
        while True:
            try:
                self.conn = await psycopg.AsyncConnection.connect(self.run.dsn, autocommit=True)
                return True
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                self.stats.error("connect", exc)
                if self.run.stop.is_set() or time.monotonic() > self.run.deadline:
                    return False
                await asyncio.sleep(1.0)

    async def discard(self):
        """Forget the connection without a polite goodbye (it is broken or abandoned)."""
        if self.conn is not None:
            drop_socket(self.conn)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 5)
            self.conn = None

    async def main(self, kinds, weights, deadline):
        if not await self.connect():
            return
        try:
            await self.conn.execute(CLIENT_TABLE.format(self.table))
        except Exception as exc:  # noqa: BLE001
            self.stats.error("create_table", exc)
            return
        self.created = True
        while time.monotonic() < deadline and not self.run.stop.is_set():
            if self.conn is None and not await self.connect():
                return
            await self.act(self.rng.choices(kinds, weights)[0])
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 10)

    async def act(self, kind):
        """Run one action under a watchdog; record its latency or its error."""
        start = time.perf_counter()
        task = asyncio.create_task(getattr(self, "do_" + kind)())
        done, _ = await asyncio.wait({task}, timeout=self.run.args.action_timeout)
        if not done:
            # Hung: cut the socket so psycopg's pending read fails, then give up on it.
            self.stats.error(kind, TimeoutError(
                f"no answer within {self.run.args.action_timeout} s"))
            await self.discard()
            task.cancel()
            await asyncio.wait({task}, timeout=10)
            return
        try:
            expected_error = task.result()
        except Exception as exc:  # noqa: BLE001 - anything raised here is unexpected
            self.stats.error(kind, exc)
            if self.conn is not None and (self.conn.broken or self.conn.closed):
                await self.discard()
            return
        self.stats.done(kind, time.perf_counter() - start, bool(expected_error))

    # -- actions: return True when they ended with the expected 57014 -------------------

    async def do_select1(self):
        row = await (await self.conn.execute("SELECT 1")).fetchone()
        if row != (1,):
            raise WrongResult(f"SELECT 1 returned {row}")

    async def do_lookup(self):
        cid = self.rng.randint(1, self.run.customers)
        rows = await (await self.conn.execute(
            "SELECT customer_id, signup_date, country, device FROM customers "
            "WHERE customer_id = %s", (cid,))).fetchall()
        if len(rows) != 1 or rows[0][0] != cid:
            raise WrongResult(f"lookup of customer {cid} returned {rows}")

    async def do_aggregate(self):
        lo = self.rng.randint(1, self.run.customers)
        await (await self.conn.execute(
            "SELECT payment_method, count(*), sum(amount) FROM orders "
            "WHERE customer_id BETWEEN %s AND %s GROUP BY payment_method ORDER BY 1",
            (lo, lo + 50))).fetchall()

    async def do_score(self):
        name, sql = self.rng.choice(SCORE_QUERIES)
        lo = self.rng.randint(1, max(1, self.run.customers - SCORE_ROWS))
        rows = await (await self.conn.execute(sql, (lo, lo + SCORE_ROWS - 1))).fetchall()
        if name == "segment":
            if not rows or any(r[0] is None or r[0] < 0 for r in rows):
                raise WrongResult(f"segment returned {rows[:5]}")
        else:
            count, score = rows[0][0], rows[0][1]
            if count == 0 or score is None or not 0.0 <= score <= 1.0:
                raise WrongResult(f"{name} score over {count} rows: {score}")

    async def do_copy_in(self):
        first = self.next_id
        self.next_id += COPY_ROWS
        cur = self.conn.cursor()
        async with cur.copy(f"COPY {self.table} (id, note, amount) FROM STDIN") as copy:
            await copy.write(copy_lines(first, COPY_ROWS, self.n))
        self.expected += COPY_ROWS
        self.last_id = first + COPY_ROWS - 1
        self.stats.rows_copied += COPY_ROWS
        await self.check_count("after COPY")

    async def do_copy_out(self):
        if self.rng.random() < 0.7:
            # The newest rows of this client's own table: their number and last id are known.
            fmt = self.rng.choice(["", " (FORMAT csv)"])
            sql = (f"COPY (SELECT id, note, amount FROM {self.table} ORDER BY id DESC "
                   f"LIMIT 200) TO STDOUT{fmt}")
            want = min(200, self.expected)
        else:
            lo = self.rng.randint(1, self.run.customers)
            sql = (f"COPY (SELECT * FROM orders WHERE customer_id BETWEEN {lo} AND {lo + 20}) "
                   "TO STDOUT")
            want = None
        chunks = []
        async with self.conn.cursor().copy(sql) as copy:
            async for data in copy:
                chunks.append(bytes(data))
        lines = b"".join(chunks).splitlines()
        if want is not None:
            top = int(lines[0].split(b"," if "csv" in sql else b"\t")[0]) if lines else 0
            if len(lines) != want or top != self.last_id:
                raise WrongResult(f"COPY TO of {self.table}: {len(lines)} rows (want {want}), "
                                  f"newest id {top} (want {self.last_id})")

    async def do_copy_abort(self):
        """COPY FROM STDIN that the client fails (CopyFail) after some data: nothing may
        be written. psycopg raises our exception when the server answers 57014, and the
        server's error otherwise."""
        n = self.rng.choice([COPY_ROWS, BIG_COPY_ROWS])
        first = self.next_id
        self.next_id += n
        try:
            async with self.conn.cursor().copy(
                    f"COPY {self.table} (id, note, amount) FROM STDIN") as copy:
                await copy.write(copy_lines(first, n, self.n))
                raise CopyAborted("load test aborts this COPY")
        except CopyAborted:
            pass
        await self.check_count("after an aborted COPY")

    async def do_cancel(self):
        """A slow query cancelled after about 0.2 s, as psql's Ctrl-C does."""
        task = asyncio.create_task(self.conn.execute(SLOW_QUERY))
        stuck = False
        try:
            await asyncio.sleep(self.rng.uniform(0.1, 0.3))
            for attempt in range(CANCEL_ATTEMPTS):
                if task.done():
                    break
                if attempt:
                    self.stats.cancel_retries += 1
                await self.conn.cancel_safe(timeout=10)
                await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
            stuck = not task.done()
        finally:
            if not task.done():
                # Never leave the query holding the connection: cut it (act() reconnects).
                drop_socket(self.conn)
                await asyncio.wait({task}, timeout=10)
            if task.done():
                task.exception()  # retrieved here; task.result() below raises it again
        if stuck:
            raise WrongResult(f"slow query still running after {CANCEL_ATTEMPTS} cancels")
        try:
            task.result()
        except pgerrors.QueryCanceled:
            return True
        raise WrongResult("slow query finished although cancelled")

    async def do_timeout(self):
        await self.conn.execute("SET statement_timeout = '200ms'")
        try:
            await self.conn.execute(SLOW_QUERY)
            timed_out = False
        except pgerrors.QueryCanceled:
            timed_out = True
        await self.conn.execute("RESET statement_timeout")  # the other actions run unbounded
        if not timed_out:
            raise WrongResult("slow query outlived statement_timeout = 200ms")
        return True

    async def do_disconnect(self):
        """Leave abruptly in one of three ways, then connect again."""
        way = self.rng.choice(["mid_query", "mid_copy", "raw_rst"])
        if way == "mid_query":
            task = asyncio.create_task(self.conn.execute(SLOW_QUERY))
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            drop_socket(self.conn)
            await asyncio.wait({task}, timeout=10)
            if task.done():
                task.exception()  # the failure we caused; mark it retrieved
        elif way == "mid_copy":
            # More than a megabyte, so the server has handed a chunk to its INSERT when the
            # connection goes: it must still write nothing.
            first = self.next_id
            self.next_id += BIG_COPY_ROWS
            with contextlib.suppress(Exception):
                async with self.conn.cursor().copy(
                        f"COPY {self.table} (id, note, amount) FROM STDIN") as copy:
                    await copy.write(copy_lines(first, BIG_COPY_ROWS, self.n))
                    drop_socket(self.conn)
                    raise ConnectionAbortedError
        else:
            # Leave politely first so this client never holds two connection slots.
            await self.conn.close()
            await raw_abandon(self.run.port, SLOW_QUERY, self.rng.uniform(0.05, 0.3))
        await self.discard()
        if not await self.connect():
            return False  # connect() reported the failure; the client loop ends
        if way == "mid_copy":
            await self.check_count("after a connection dropped mid-COPY")

    async def check_count(self, when):
        (count,) = await (await self.conn.execute(f"SELECT count(*) FROM {self.table}")).fetchone()
        if count != self.expected:
            self.stats.mismatch(self.table, self.expected, count)
            message = f"{self.table} has {count} rows {when}, expected {self.expected}"
            self.expected = count  # report each discrepancy once, not at every later check
            raise WrongResult(message)


class LoadRun:
    def __init__(self, args, port, server, log_path):
        self.args = args
        self.port = port
        self.server = server
        self.log_path = log_path
        self.dsn = (f"host=127.0.0.1 port={port} user=tenure dbname=tenure "
                    "connect_timeout=10 application_name=load_test")
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.deadline = 0.0
        self.customers = 0
        self.rss_samples = []  # (seconds since load start, rss bytes, threads)
        self.server_died = False

    def server_alive(self):
        if self.server.poll() is not None:
            self.server_died = True
            self.stop.set()
        return not self.server_died

    async def monitor(self, started):
        """Sample the server's RSS every second and print progress every 10 s."""
        last_print = 0.0
        while not self.stop.is_set():
            if not self.server_alive():
                print(f"!! server exited with status {self.server.returncode}", flush=True)
                return
            try:
                rss, _, threads = proc_status(self.server.pid)
            except OSError:  # exited between the check and the read
                await asyncio.sleep(0.2)
                continue
            elapsed = time.monotonic() - started
            self.rss_samples.append((elapsed, rss, threads))
            if elapsed - last_print >= 10 and time.monotonic() < self.deadline:
                last_print = elapsed
                n = self.stats.actions()
                print(f"  {elapsed:5.0f} s  {n:7d} actions  {n / elapsed:7.1f}/s  "
                      f"rss {mib(rss):7.1f} MiB  unexpected errors "
                      f"{sum(self.stats.unexpected.values())}", flush=True)
            await asyncio.sleep(1.0)


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/tenure-target")
    release = os.path.join(target, "release", "tenure")
    return release if os.path.exists(release) else os.path.join(target, "debug", "tenure")


def die_with_parent():
    """In the server's child process: be killed if this script dies without cleaning up
    (Linux's PR_SET_PDEATHSIG), so a killed run leaves no server behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(binary, data_dir, cwd, *args):
    out = subprocess.run([binary, *args, "--data-dir", data_dir], cwd=cwd,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"setup failed: {' '.join(args[:2])}\n{out.stdout[-2000:]}{out.stderr[-4000:]}")
    return out.stdout


async def wait_ready(run, timeout=120):
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if not run.server_alive():
            raise SystemExit(f"server exited with status {run.server.returncode} at start")
        try:
            conn = await psycopg.AsyncConnection.connect(run.dsn, autocommit=True)
            return conn
        except psycopg.OperationalError:
            await asyncio.sleep(0.5)
    raise SystemExit(f"server did not accept connections within {timeout} s")


async def warm_up(run):
    """One client runs every action but disconnect once, so model caches, prepared plans
    and the allocator are warm before the start RSS is taken."""
    warm_stats = Stats()
    saved, run.stats = run.stats, warm_stats
    client = Client("_warm", run, random.Random(0))
    run.deadline = time.monotonic() + 600
    if await client.connect():
        await client.conn.execute(CLIENT_TABLE.format(client.table))
        for kind in [k for k in WEIGHTS if k != "disconnect"]:
            await client.act(kind)
            if client.conn is None:
                await client.connect()
        with contextlib.suppress(Exception):
            await client.conn.close()
    run.stats = saved
    for key, count in warm_stats.messages.items():
        run.stats.messages["warm-up " + key] += count
        run.stats.examples["warm-up " + key] = "warm-up " + warm_stats.examples[key]
        run.stats.unexpected["warm-up"] += count
    run.stats.row_mismatches += warm_stats.row_mismatches


async def verify_tables(run, expected):
    """Every client's table holds exactly the rows its committed COPYs sent, once each."""
    conn = await psycopg.AsyncConnection.connect(run.dsn, autocommit=True)
    try:
        for table, want in expected.items():
            try:
                count, distinct = await (await conn.execute(
                    f"SELECT count(*), count(DISTINCT id) FROM {table}")).fetchone()
            except psycopg.Error as exc:
                run.stats.error("verify", exc)
                if conn.broken:
                    raise
                continue
            if count != want or distinct != count:
                run.stats.mismatch(table, want, f"{count} ({distinct} distinct ids)")
    finally:
        await conn.close()


async def load(args, run):
    first = await wait_ready(run)
    try:
        # Reads the table's data files, not just its statistics (count(*) may not).
        (run.customers,) = await (await first.execute(
            "SELECT max(customer_id) FROM customers")).fetchone()
    except psycopg.Error as exc:
        raise SystemExit(f"the server cannot read the demo data: {describe(exc)}") from None
    await first.close()

    print("warming up ...", flush=True)
    await warm_up(run)
    await asyncio.sleep(3)
    rss_start, _, threads_start = proc_status(run.server.pid)
    fds_start = open_fds(run.server.pid)
    print(f"server rss after warm-up {mib(rss_start):.1f} MiB, {fds_start} fds, "
          f"{threads_start} threads", flush=True)

    kinds, weights = list(WEIGHTS), [args.weights[k] for k in WEIGHTS]
    clients = [Client(i, run, random.Random(args.seed * 100_003 + i)) for i in range(args.clients)]
    print(f"{args.clients} clients for {args.duration} s ...", flush=True)
    started = time.monotonic()
    run.deadline = started + args.duration
    cpu_client0 = time.process_time()
    monitor = asyncio.create_task(run.monitor(started))
    tasks = [asyncio.create_task(c.main(kinds, weights, run.deadline)) for c in clients]
    # Clients finish their last action after the deadline; a hung one is cut by its watchdog.
    await asyncio.wait(tasks, timeout=args.duration + args.action_timeout + 60)
    load_seconds = time.monotonic() - started
    client_cpu = (time.process_time() - cpu_client0) / load_seconds
    for t in tasks:
        if not t.done():
            run.stats.error("client", TimeoutError("client did not finish after the deadline"))
            t.cancel()
        elif t.exception() is not None:
            run.stats.error("client", t.exception())

    result = {"load_seconds": load_seconds, "client_cpu": client_cpu,
              "rss_start": rss_start, "fds_start": fds_start, "threads_start": threads_start}
    if run.server_alive():
        try:
            await verify_tables(run, {c.table: c.expected for c in clients if c.created})
        except psycopg.Error as exc:
            run.stats.error("verify", exc)
        # Let the server settle: a few ordinary queries, then idle; RSS is sampled meanwhile.
        print(f"load done; settling {args.settle} s ...", flush=True)
        try:
            conn = await psycopg.AsyncConnection.connect(run.dsn, autocommit=True)
            for _ in range(5):
                await conn.execute("SELECT 1")
            await conn.close()
        except psycopg.Error as exc:
            run.stats.error("settle", exc)
        # The idle CPU is measured over the settle's last seconds.
        window = min(5.0, args.settle / 2)
        await asyncio.sleep(args.settle - window)
        cpu0 = proc_cpu_seconds(run.server.pid)
        await asyncio.sleep(window)
        result["idle_cpu"] = (proc_cpu_seconds(run.server.pid) - cpu0) / window
    run.stop.set()
    await monitor
    if run.server_alive():
        rss_end, hwm, threads_end = proc_status(run.server.pid)
        result.update(rss_end=rss_end, rss_peak=max([hwm] + [r for _, r, _ in run.rss_samples]),
                      fds_end=open_fds(run.server.pid), threads_end=threads_end,
                      threads_peak=max([threads_end] + [t for _, _, t in run.rss_samples]))
    return result


def stop_server(server):
    """SIGTERM; the server must exit 0 within 40 s (it gives statements 30 s)."""
    if server.poll() is not None:
        return False, f"had already exited with status {server.returncode}"
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        status = server.wait(40)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return False, "still running 40 s after SIGTERM (killed)"
    took = time.monotonic() - started
    return status == 0, f"exit status {status}, {took:.1f} s after SIGTERM"


def log_findings(log_path):
    """Lines of the server log worth a look: panics, and ERROR and WARN events (clients'
    failed statements are logged at INFO)."""
    counts, examples = collections.Counter(), {}
    with open(log_path, errors="replace") as f:
        for line in f:
            plain = uncolour(line).strip()
            level = re.match(r"\S+\s+(ERROR|WARN)\s", plain)
            level = "panicked" if "panicked at" in plain else level and level.group(1)
            if level:
                counts[level] += 1
                examples.setdefault(level, []).append(plain[:300])
    return counts, examples


def report(args, run, result, stop_ok, stop_msg):
    stats = run.stats
    print()
    build = os.path.basename(os.path.dirname(os.path.abspath(args.binary)))
    print(f"### tenure serve under load: {args.clients} clients, {args.duration:g} s "
          f"({build} binary, demo scale {args.scale:g})")
    print()
    print("| action | count | expected 57014 | unexpected errors | p50 ms | p95 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in list(WEIGHTS) + sorted(set(stats.unexpected) - set(WEIGHTS)):
        lat = stats.latency.get(kind, [])
        cells = [f"{percentile(lat, q) * 1000:.1f}" if lat else "-" for q in (0.5, 0.95, 0.99)]
        print(f"| {kind} | {len(lat):,} | {stats.expected[kind]:,} | {stats.unexpected[kind]:,} | "
              + " | ".join(cells) + " |")
    total = stats.actions()
    seconds = result.get("load_seconds", 0) or 1
    print()
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| actions | {total:,} ({total / seconds:,.1f}/s over {seconds:.0f} s) |")
    print(f"| unexpected errors | {sum(stats.unexpected.values()):,} |")
    print(f"| rows copied in (verified) / lost or extra | {stats.rows_copied:,} / "
          f"{len(stats.row_mismatches)} tables |")
    print(f"| cancel requests resent (query not started yet) | {stats.cancel_retries:,} |")
    limit = result["rss_start"] * args.memory_factor + args.memory_slack_mib * (1 << 20)
    if "rss_end" in result:
        print(f"| server RSS start / peak / settled {args.settle:g} s after (limit) | "
              f"{mib(result['rss_start']):.0f} / {mib(result['rss_peak']):.0f} / "
              f"{mib(result['rss_end']):.0f} MiB ({mib(limit):.0f}) |")
        print(f"| server fds start / end, threads start / peak / end | {result['fds_start']} / "
              f"{result['fds_end']}, {result['threads_start']} / {result['threads_peak']} / "
              f"{result['threads_end']} |")
        print(f"| server CPU when idle after the load | {result['idle_cpu']:.2f} cores |")
    print(f"| load generator CPU | {result.get('client_cpu', 0):.2f} cores |")
    print(f"| shutdown | {stop_msg} |")

    if stats.messages:
        print()
        print(f"Unexpected errors: {len(stats.messages)} distinct, the first 10 as they came "
              "(digits in the message make no difference):")
        for key, count in list(stats.messages.items())[:10]:
            print(f"  {count:6d} x {stats.examples[key]}")
    if stats.row_mismatches:
        print()
        print("Row count mismatches (first 10):")
        for table, want, found in stats.row_mismatches[:10]:
            print(f"  {table}: expected {want}, found {found}")
    counts, examples = log_findings(run.log_path)
    if counts:
        print()
        print("Server log: " + ", ".join(f"{n} {level}" for level, n in counts.items()))
        for level in ("panicked", "ERROR", "WARN"):
            for line in examples.get(level, [])[:3]:
                print(f"  {line}")

    failures = []
    if stats.unexpected:
        failures.append("unexpected errors")
    if stats.row_mismatches:
        failures.append("rows lost or added")
    if run.server_died:
        failures.append(f"the server died (status {run.server.returncode})")
    if "rss_end" in result:
        if result["rss_end"] > limit:
            failures.append(f"settled RSS {mib(result['rss_end']):.0f} MiB > {mib(limit):.0f} MiB")
        if result["fds_end"] > result["fds_start"] + args.fd_slack:
            failures.append(f"file descriptors {result['fds_start']} -> {result['fds_end']}")
        if result["idle_cpu"] > args.max_idle_cpu:
            failures.append(f"idle server busy ({result['idle_cpu']:.2f} cores): "
                            "a statement outlived its client?")
    if counts["panicked"]:
        failures.append("panics in the server log")
    if not stop_ok:
        failures.append(f"shutdown: {stop_msg}")
    print()
    print("VERDICT: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return not failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--binary", default=default_binary(),
                        help="tenure binary (default: $CARGO_TARGET_DIR or ~/.cache/tenure-target, "
                             "release/tenure if built, else debug/tenure)")
    parser.add_argument("--port", type=int, help="port to serve on (default: a free one)")
    parser.add_argument("--max-connections", type=int,
                        help="TENURE_MAX_CONNECTIONS for the server (default: clients + 20)")
    parser.add_argument("--scale", type=float, default=0.05, help="demo world scale")
    parser.add_argument("--settle", type=float, default=15,
                        help="seconds to wait after the load before the end RSS (default 15)")
    parser.add_argument("--memory-factor", type=float, default=1.5,
                        help="fail if settled RSS > start x this + --memory-slack-mib "
                             "(default 1.5)")
    parser.add_argument("--memory-slack-mib", type=float, default=64,
                        help="see --memory-factor (default 64)")
    parser.add_argument("--fd-slack", type=int, default=16,
                        help="fail if the server holds more than this many extra fds after")
    parser.add_argument("--max-idle-cpu", type=float, default=0.25,
                        help="fail if the idle server uses more cores than this after the load")
    parser.add_argument("--action-timeout", type=float, default=120,
                        help="an action with no answer after this many seconds is an error")
    parser.add_argument("--weight", action="append", default=[], metavar="ACTION=N",
                        help="change an action's weight, e.g. disconnect=0 (actions: "
                             + ", ".join(WEIGHTS) + ")")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    args = parser.parse_args()
    if args.settle < 2:
        parser.error("--settle must be at least 2 seconds")
    args.weights = dict(WEIGHTS)
    for item in args.weight:
        kind, _, value = item.partition("=")
        if kind not in WEIGHTS or not value.isdigit():
            parser.error(f"--weight {item}: expected ACTION=N, ACTION one of "
                         + ", ".join(WEIGHTS))
        args.weights[kind] = int(value)
    # psycopg warns when a COPY cut on purpose cannot be ended; that is the point of it.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    # Ctrl-C or a SIGTERM to this script still stops the server (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))

    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no tenure binary at {binary} (build it, or pass --binary)")
    root = tempfile.mkdtemp(prefix="tenure-load-")
    data_dir, log_path = os.path.join(root, "data"), os.path.join(root, "server.log")
    server = None
    passed = False
    try:
        # Run in the temporary directory, so no ./tenure.toml of the caller's applies.
        print(f"binary {binary}\ndata   {data_dir}", flush=True)
        t0 = time.monotonic()
        run_cli(binary, data_dir, root, "demo", "--scale", str(args.scale))
        cli_args = [a for sql in SETUP_SQL for a in ("-c", sql)]
        run_cli(binary, data_dir, root, "sql", *cli_args)
        print(f"demo world (scale {args.scale}) and models ready in "
              f"{time.monotonic() - t0:.1f} s", flush=True)

        port = args.port or free_port()
        env = dict(os.environ,
                   TENURE_MAX_CONNECTIONS=str(args.max_connections or args.clients + 20))
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        print(f"serving on 127.0.0.1:{port} (pid {server.pid}, max_connections "
              f"{env['TENURE_MAX_CONNECTIONS']}, log {log_path})", flush=True)
        run = LoadRun(args, port, server, log_path)
        result = asyncio.run(load(args, run))
        stop_ok, stop_msg = stop_server(server)
        passed = report(args, run, result, stop_ok, stop_msg)
        if not passed:
            with open(log_path, errors="replace") as f:
                tail = f.readlines()[-15:]
            print("\nLast lines of the server log:\n" + "".join(map(uncolour, tail)), end="")
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if args.keep or not passed:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
