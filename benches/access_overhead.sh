#!/usr/bin/env bash
# What privilege checks cost per statement: pgbench (prepared, SELECT 1 and a read of a
# 10,000-row table) against two tenure binaries on fresh data directories, one after the
# other on this machine: BEFORE (a build without access control) as the trusted local
# superuser, and AFTER as the same superuser, as a role that reads through a grant, as a
# role that reads through column privileges and, last, under a row policy.
#
# Usage: benches/access_overhead.sh BEFORE_BINARY AFTER_BINARY [SECONDS]
set -euo pipefail
BEFORE="$1"
AFTER="$2"
SECONDS_EACH="${3:-8}"
PORT=55477
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/read.sql" <<'SQL'
\set id random(1, 10000)
SELECT id, region FROM accounts WHERE id = :id;
SQL
echo 'SELECT 1;' > "$WORK/select1.sql"

serve() {
    "$1" serve --create --data-dir "$WORK/$2" --listen "127.0.0.1:$PORT" >"$WORK/$2.log" 2>&1 &
    for _ in $(seq 100); do
        psql -X -q -h 127.0.0.1 -p "$PORT" -U tenure -d tenure -c 'SELECT 1' >/dev/null 2>&1 && return
        sleep 0.2
    done
    echo "server did not start" >&2
    exit 1
}

setup() {
    psql -X -q -h 127.0.0.1 -p "$PORT" -U tenure -d tenure -c \
        "CREATE TABLE accounts AS SELECT value AS id, CASE WHEN value % 2 = 0 THEN 'north' ELSE 'south' END AS region FROM generate_series(1, 10000) AS t(value)"
}

bench() { # label user script
    for clients in 1 4 16; do
        tps=$(pgbench -h 127.0.0.1 -p "$PORT" -U "$2" -n -M prepared -T "$SECONDS_EACH" \
            -c "$clients" -j "$clients" -f "$WORK/$3" tenure 2>/dev/null |
            awk '/^tps/ { print int($3) }')
        printf '%-40s %-12s %2d clients: %s tps\n' "$1" "$3" "$clients" "$tps"
    done
}

serve "$BEFORE" before
setup
bench "before, superuser" tenure select1.sql
bench "before, superuser" tenure read.sql
kill %1
wait %1 2>/dev/null || true

serve "$AFTER" after
setup
psql -X -q -h 127.0.0.1 -p "$PORT" -U tenure -d tenure \
    -c "CREATE ROLE analyst LOGIN" -c "GRANT SELECT ON accounts TO analyst"
bench "after, superuser" tenure select1.sql
bench "after, superuser" tenure read.sql
bench "after, role with a grant" analyst select1.sql
bench "after, role with a grant" analyst read.sql
psql -X -q -h 127.0.0.1 -p "$PORT" -U tenure -d tenure \
    -c "CREATE ROLE clerk LOGIN" -c "GRANT SELECT (id, region) ON accounts TO clerk"
bench "after, role with column privileges" clerk read.sql
psql -X -q -h 127.0.0.1 -p "$PORT" -U tenure -d tenure \
    -c "ALTER TABLE accounts ENABLE ROW LEVEL SECURITY" \
    -c "CREATE POLICY north ON accounts USING (region = 'north')"
bench "after, role under a row policy" analyst read.sql
