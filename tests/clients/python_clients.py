"""Python drivers against a running tenure server: psycopg 3 (text and binary, server-side
parameters, type introspection, json), psycopg2, asyncpg and SQLAlchemy 2's Inspector.

    python python_clients.py PORT

Run by tests/server.rs with the interpreter in TENURE_TEST_PYTHON (.ci/run makes a venv with
tests/clients/requirements.txt). Every check runs even when an earlier one failed; the exit
status is the number of failures, and each failure is printed with its traceback.
"""

import asyncio
import datetime
import sys
import traceback

PORT = int(sys.argv[1])
DSN = f"host=127.0.0.1 port={PORT} user=tenure dbname=tenure"
failures = []


def check(name):
    def run(fn):
        try:
            fn()
            print(f"ok   {name}")
        except Exception:
            failures.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}")
        return fn

    return run


@check("psycopg: connect and server version")
def _():
    import psycopg

    with psycopg.connect(DSN) as conn:
        assert conn.info.server_version >= 150000, conn.info.server_version
        assert conn.info.parameter_status("server_version").startswith("15.")
        assert conn.execute("SELECT current_database()").fetchone()[0] == "tenure"


@check("psycopg: tables, parameters, text and binary results")
def _():
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_orders")
        conn.execute(
            "CREATE TABLE py_orders (id BIGINT NOT NULL, customer TEXT, amount DOUBLE PRECISION,"
            " paid BOOLEAN, day DATE, at TIMESTAMP)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO py_orders VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (1, "ann", 12.5, True, datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5)),
                    (2, "bob", None, False, datetime.date(2024, 2, 3), None),
                    (3, "ann", 7.25, True, None, datetime.datetime(2024, 3, 4, 5, 6, 7)),
                ],
            )
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(
                    "SELECT id, customer, amount, paid, day, at FROM py_orders WHERE customer = %s ORDER BY id",
                    ("ann",),
                )
                rows = cur.fetchall()
                assert rows == [
                    (1, "ann", 12.5, True, datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5)),
                    (3, "ann", 7.25, True, None, datetime.datetime(2024, 3, 4, 5, 6, 7)),
                ], (binary, rows)
                assert [d.name for d in cur.description] == ["id", "customer", "amount", "paid", "day", "at"]
                cur.execute("SELECT count(*), sum(amount) FROM py_orders")
                assert cur.fetchone() == (3, 19.75), binary
                assert [d.name for d in cur.description] == ["count", "sum"]
                cur.execute("SELECT ARRAY[1, 2, 3] AS xs, NULL::TEXT AS nothing")
                assert cur.fetchone() == ([1, 2, 3], None), binary


@check("psycopg: transactions, errors and recovery")
def _():
    import psycopg

    with psycopg.connect(DSN) as conn:  # not autocommit: psycopg opens a transaction
        assert conn.execute("SELECT 1").fetchone() == (1,)
        try:
            conn.execute("SELECT * FROM no_such_table")
            raise AssertionError("expected an error")
        except psycopg.errors.UndefinedTable:
            pass
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)
        before = conn.execute("SELECT count(*) FROM py_orders").fetchone()[0]
        conn.execute("INSERT INTO py_orders VALUES (9, 'x', 1.0, true, NULL, NULL)")
        assert conn.execute("SELECT count(*) FROM py_orders").fetchone() == (before + 1,)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM py_orders").fetchone() == (before,)
        conn.rollback()


@check("psycopg: type introspection (TypeInfo.fetch)")
def _():
    import psycopg
    from psycopg.types import TypeInfo

    with psycopg.connect(DSN, autocommit=True) as conn:
        for name in ("int8", "text", "float8", "bool", "date"):
            info = TypeInfo.fetch(conn, name)
            assert info is not None and info.name == name, (name, info)


@check("psycopg: COPY TO STDOUT and FROM STDIN")
def _():
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT id, customer FROM py_orders ORDER BY id) TO STDOUT") as copy:
                rows = list(copy.rows())
            assert rows == [("1", "ann"), ("2", "bob"), ("3", "ann")], rows
            cur.execute("DROP TABLE IF EXISTS py_copied")
            cur.execute("CREATE TABLE py_copied (id BIGINT, customer TEXT)")
            with cur.copy("COPY py_copied (id, customer) FROM STDIN") as copy:
                for row in [(1, "x"), (2, None), (3, "tab\there")]:
                    copy.write_row(row)
            cur.execute("SELECT id, customer FROM py_copied ORDER BY id")
            assert cur.fetchall() == [(1, "x"), (2, None), (3, "tab\there")]


@check("psycopg2: simple protocol")
def _():
    import psycopg2

    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT customer, count(*) FROM py_orders GROUP BY customer ORDER BY customer")
    assert cur.fetchall() == [("ann", 2), ("bob", 1)]
    cur.execute("SELECT %s::BIGINT + 1, %s", (41, "it's quoted"))
    assert cur.fetchone() == (42, "it's quoted")
    conn.close()


@check("psycopg2: default (transactional) mode commits and rolls back writes")
def _():
    import psycopg2

    conn = psycopg2.connect(DSN)
    other = psycopg2.connect(DSN)
    other.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE py_ledger (id BIGINT NOT NULL, note TEXT)")
    cur.executemany("INSERT INTO py_ledger VALUES (%s, %s)", [(1, "a"), (2, "b")])
    cur.execute("SELECT count(*) FROM py_ledger")
    assert cur.fetchone() == (2,)
    conn.rollback()
    check_cur = other.cursor()
    check_cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'py_ledger'")
    assert check_cur.fetchone() == (0,), "rolled back"
    with conn:  # commits on leaving the block
        cur.execute("CREATE TABLE py_ledger (id BIGINT NOT NULL, note TEXT)")
        cur.executemany("INSERT INTO py_ledger VALUES (%s, %s)", [(1, "a"), (2, "b")])
    check_cur.execute("SELECT string_agg(note, ',' ORDER BY id) FROM py_ledger")
    assert check_cur.fetchone() == ("a,b",)
    conn.close()
    other.close()


@check("psycopg2: named (server-side) cursors")
def _():
    import psycopg2

    conn = psycopg2.connect(DSN)
    cur = conn.cursor("numbers")  # DECLARE "numbers" CURSOR WITHOUT HOLD FOR ...; FETCH ...
    cur.itersize = 3
    cur.execute("SELECT x, x * 2 AS twice FROM generate_series(1, 10) AS g(x) ORDER BY x")
    assert [row[0] for row in cur] == list(range(1, 11))
    cur.close()
    cur = conn.cursor("pairs")
    cur.execute("SELECT x FROM generate_series(1, 10) AS g(x) ORDER BY x")
    assert cur.fetchmany(4) == [(1,), (2,), (3,), (4,)]
    assert cur.fetchone() == (5,)
    assert cur.fetchall() == [(x,) for x in range(6, 11)]
    assert [d.name for d in cur.description] == ["x"]
    cur.close()
    conn.commit()
    conn.close()


@check("psycopg: server-side cursors, with parameters, text and binary")
def _():
    import psycopg

    # DECLARE with a server-side parameter, then Describe of the cursor as a portal, then
    # FETCH FORWARD n, as psycopg 3's ServerCursor does.
    with psycopg.connect(DSN) as conn:
        with conn.cursor(name="py_stream") as cur:
            cur.itersize = 4
            cur.execute(
                "SELECT x, x * 0.5 AS half, 'n' || CAST(x AS TEXT) AS label"
                " FROM generate_series(1, 25) AS g(x) WHERE x > %s ORDER BY x",
                (5,),
            )
            assert [d.name for d in cur.description] == ["x", "half", "label"], cur.description
            assert cur.fetchone() == (6, 3.0, "n6")
            assert cur.fetchmany(3) == [(7, 3.5, "n7"), (8, 4.0, "n8"), (9, 4.5, "n9")]
            cur.scroll(2)  # MOVE 2 FROM "py_stream": skips 10 and 11
            assert cur.fetchone() == (12, 6.0, "n12")
            assert [row[0] for row in cur] == list(range(13, 26))
        with conn.cursor(name="py_binary", binary=True) as cur:
            cur.execute(
                "SELECT id, customer, at FROM py_orders WHERE id >= %s ORDER BY id", (2,)
            )
            assert cur.fetchall() == [(2, "bob", None), (3, "ann", datetime.datetime(2024, 3, 4, 5, 6, 7))]
        conn.commit()
        with conn.cursor(name="py_held", withhold=True) as cur:
            cur.execute("SELECT x FROM generate_series(1, 3) AS g(x) ORDER BY x")
            conn.commit()  # a held cursor outlives its transaction
            assert cur.fetchall() == [(1,), (2,), (3,)]


@check("asyncpg: prepared statements, parameters, arrays and their type introspection")
def _():
    import asyncpg

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="tenure", database="tenure")
        try:
            rows = await conn.fetch("SELECT id, amount FROM py_orders WHERE id >= $1 ORDER BY id", 2)
            assert [(r["id"], r["amount"]) for r in rows] == [(2, None), (3, 7.25)], rows
            value = await conn.fetchval("SELECT $1::TEXT || '!'", "hi")
            assert value == "hi!", value
            assert await conn.fetchval("SELECT count(*) FROM py_orders") == 3
            # Arrays make asyncpg introspect their types with its own catalog query (a
            # recursive CTE with correlated subqueries) before the first such statement.
            assert await conn.fetchval("SELECT $1::int[]", [1, 2]) == [1, 2]
            row = await conn.fetchrow("SELECT ARRAY[1, 2], ARRAY['a', 'b c']")
            assert list(row.keys()) == ["array", "array"], row.keys()
            assert (row[0], row[1]) == ([1, 2], ["a", "b c"]), row
            await conn.execute("SET jit = off")
        finally:
            await conn.close()

    asyncio.run(run())


@check("psycopg and asyncpg: json and jsonb columns, parameters and operators")
def _():
    import json

    import asyncpg
    import psycopg
    from psycopg.types.json import Json, Jsonb

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_events")
        conn.execute("CREATE TABLE py_events (id INT, props JSONB, raw JSON)")
        conn.execute(
            "INSERT INTO py_events VALUES (%s, %s, %s), (%s, %s, %s)",
            (1, Jsonb({"page": "cart", "items": [1, 2]}), Json({"b": 1}), 2, Jsonb({"page": "home"}), None),
        )
        cur = conn.execute("SELECT id, props, raw FROM py_events ORDER BY id")
        assert [d.type_code for d in cur.description][1:] == [3802, 114], cur.description
        assert cur.fetchall() == [
            (1, {"page": "cart", "items": [1, 2]}, {"b": 1}),
            (2, {"page": "home"}, None),
        ]
        # jsonb is stored as PostgreSQL prints it: keys by length, then bytes.
        text = conn.execute("SELECT props::text FROM py_events WHERE id = 1").fetchone()[0]
        assert text == '{"page": "cart", "items": [1, 2]}', text
        found = conn.execute(
            "SELECT id, props ->> 'page', props -> 'items' -> 0 FROM py_events "
            "WHERE props @> %s AND props ? %s",
            (Jsonb({"page": "cart"}), "items"),
        ).fetchall()
        assert found == [(1, "cart", 1)], found
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT props FROM py_events WHERE id = %s", (2,))
            assert cur.fetchone() == ({"page": "home"},)
        try:
            conn.execute("INSERT INTO py_events (id, props) VALUES (3, 'not json')")
            raise AssertionError("invalid JSON was stored")
        except psycopg.errors.InvalidTextRepresentation as e:
            assert "props" in str(e), e

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="tenure", database="tenure")
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
            rows = await conn.fetch("SELECT props FROM py_events ORDER BY id")
            assert [r["props"] for r in rows] == [{"page": "cart", "items": [1, 2]}, {"page": "home"}], rows
            assert await conn.fetchval("SELECT $1::jsonb -> 'q'", {"q": [1]}) == [1]
        finally:
            await conn.close()

    asyncio.run(run())


@check("psycopg: varchar(n) keeps and enforces its length")
def _():
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py_codes")
        conn.execute("CREATE TABLE py_codes (code VARCHAR(3), name TEXT)")
        conn.execute("INSERT INTO py_codes VALUES (%s, %s)", ("abc", "a name of any length"))
        cur = conn.execute("SELECT code, name FROM py_codes")
        assert [(d.type_code, d.display_size) for d in cur.description] == [(1043, 3), (25, None)], [
            (d.type_code, d.display_size) for d in cur.description
        ]
        try:
            conn.execute("INSERT INTO py_codes VALUES (%s, NULL)", ("abcd",))
            raise AssertionError("a value too long was stored")
        except psycopg.errors.StringDataRightTruncation as e:
            assert "character varying(3)" in str(e), e
        assert conn.execute("SELECT 'abcdef'::varchar(3)").fetchone() == ("abc",)
        # information_schema as PostgreSQL's (dbt and SQLAlchemy read it), json types too.
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, character_maximum_length, udt_name "
            "FROM information_schema.columns WHERE table_name IN ('py_codes', 'py_events') "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        assert columns == [
            ("py_codes", "code", "character varying", 3, "varchar"),
            ("py_codes", "name", "text", None, "text"),
            ("py_events", "id", "integer", None, "int4"),
            ("py_events", "props", "jsonb", None, "jsonb"),
            ("py_events", "raw", "json", None, "json"),
        ], columns


@check("SQLAlchemy 2: engine, Inspector names, has_table, get_columns")
def _():
    import sqlalchemy
    from sqlalchemy import inspect, text

    engine = sqlalchemy.create_engine(f"postgresql+psycopg://tenure@127.0.0.1:{PORT}/tenure")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM py_orders")).scalar() == 3
    inspector = inspect(engine)
    assert "py_orders" in inspector.get_table_names(), inspector.get_table_names()
    assert inspector.has_table("py_orders") and not inspector.has_table("nope")
    assert "public" in inspector.get_schema_names()
    columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("py_orders")]
    assert columns == [
        ("id", "BIGINT", False),
        ("customer", "TEXT", True),
        ("amount", "DOUBLE PRECISION", True),
        ("paid", "BOOLEAN", True),
        ("day", "DATE", True),
        ("at", "TIMESTAMP", True),
    ], columns
    engine.dispose()


@check("SQLAlchemy 2: Table(autoload_with) reflects primary, unique and foreign keys, defaults")
def _():
    import sqlalchemy
    from sqlalchemy import inspect, text

    engine = sqlalchemy.create_engine(f"postgresql+psycopg://tenure@127.0.0.1:{PORT}/tenure")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS py_lines"))
        conn.execute(text("DROP TABLE IF EXISTS py_products"))
        conn.execute(text(
            "CREATE TABLE py_products (sku TEXT PRIMARY KEY, name TEXT UNIQUE,"
            " price DOUBLE PRECISION DEFAULT 0)"
        ))
        conn.execute(text(
            "CREATE TABLE py_lines (order_id BIGINT, line INT, sku TEXT REFERENCES py_products,"
            " PRIMARY KEY (order_id, line))"
        ))
    metadata = sqlalchemy.MetaData()
    lines = sqlalchemy.Table("py_lines", metadata, autoload_with=engine)
    assert [c.name for c in lines.primary_key.columns] == ["order_id", "line"], lines.primary_key
    assert not lines.c.order_id.nullable and lines.c.sku.nullable
    fks = [(fk.parent.name, fk.column.table.name, fk.column.name) for fk in lines.foreign_keys]
    assert fks == [("sku", "py_products", "sku")], fks
    products = metadata.tables["py_products"]
    assert [c.name for c in products.primary_key.columns] == ["sku"], products.primary_key
    inspector = inspect(engine)
    defaults = [(c["name"], c["default"]) for c in inspector.get_columns("py_products")]
    assert defaults == [("sku", None), ("name", None), ("price", "0")], defaults
    uniques = [(u["name"], u["column_names"]) for u in inspector.get_unique_constraints("py_products")]
    assert uniques == [("py_products_name_key", ["name"])], uniques
    indexes = sorted((i["name"], i["column_names"], i["unique"]) for i in inspector.get_indexes("py_products"))
    assert indexes == [("py_products_name_key", ["name"], True)], indexes
    engine.dispose()


print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(len(failures))
