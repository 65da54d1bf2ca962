"""Access control through psycopg: the state tests/access.rs sets up, seen by another client.

Usage: python access.py PORT   (a tenure server on 127.0.0.1:PORT, set up by tests/access.rs)

alice reads spend_by_region (a view bob owns) but not customers, whatever the path: a
query, a server-side cursor, COPY TO STDOUT, or COPY FROM STDIN into it; the errors are
psycopg's InsufficientPrivilege (42501). Then alice changes her own password, which
tests/access.rs logs in with after a restart. Exits non-zero on any mismatch.
"""

import sys

import psycopg
from psycopg import errors

port = int(sys.argv[1])


def connect(user, password):
    return psycopg.connect(
        f"host=127.0.0.1 port={port} user={user} password={password} dbname=tenure",
        autocommit=True,
    )


def refused(conn, action, what):
    try:
        action(conn)
    except errors.InsufficientPrivilege as e:
        assert "public.customers" in str(e), f"{what}: {e}"
        return
    raise AssertionError(f"{what}: alice was not refused")


def select(conn):
    conn.execute("SELECT * FROM customers").fetchall()


def cursor(conn):
    with conn.transaction():
        with conn.cursor(name="c") as cur:
            cur.execute("SELECT id FROM customers")
            cur.fetchmany(2)


def copy_out(conn):
    with conn.cursor() as cur:
        with cur.copy("COPY customers TO STDOUT") as copy:
            for _ in copy:
                pass


def copy_in(conn):
    with conn.cursor() as cur:
        with cur.copy("COPY customers (id, region, spend, visits) FROM STDIN") as copy:
            copy.write_row((9, "west", 1.0, 1))


def prepared_join(conn):
    conn.execute(
        "SELECT r.region FROM spend_by_region r JOIN customers c ON c.region = r.region WHERE c.id = %s",
        (1,),
    ).fetchall()


with connect("alice", "alice-pw") as alice:
    rows = alice.execute("SELECT region FROM spend_by_region ORDER BY region").fetchall()
    assert [r[0] for r in rows] == ["east", "north", "south"], rows
    for action in (select, cursor, copy_out, copy_in, prepared_join):
        refused(alice, action, action.__name__)
    # Only a superuser may change another role; a role may change its own password.
    try:
        alice.execute("ALTER USER bob PASSWORD 'mine'")
        raise AssertionError("alice changed bob's password")
    except errors.InsufficientPrivilege:
        pass
    alice.execute("ALTER USER alice PASSWORD 'alice-pw2'")

with connect("admin", "admin-secret") as admin:
    count = admin.execute("SELECT count(*) FROM customers").fetchone()[0]
    assert count == 6, f"the refused COPY FROM wrote rows: {count}"

try:
    connect("alice", "alice-pw").close()
    raise AssertionError("the old password still logs in")
except psycopg.OperationalError:
    pass
connect("alice", "alice-pw2").close()
print("access.py: ok")
