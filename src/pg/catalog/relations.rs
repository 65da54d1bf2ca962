//! pg_namespace, pg_class and pg_attribute as tenure shows them: datafusion-pg-catalog's
//! with the oids that survive a restart, keys as indexes, column types it does not know,
//! and the session's temporary tables.

/// pg_namespace, pg_class and pg_attribute with the oids that survive a restart
/// (pg/oids.rs) in place of datafusion-pg-catalog's, and with the scanning session's
/// temporary tables (`tenure.temporary_columns`; the crate lists only the shared catalog).
/// They are planned over that crate's tables, and [`super::CATALOG_VIEWS`] over them, so
/// every view shows the same oids.
///
/// pg_class also gets the keys' indexes as rows (relkind 'i', oids from
/// `KeyConstraint::index_oid`), `reloptions` (always NULL), which SQLAlchemy's index
/// reflection reads, `relhasindex` true for tables with a primary or unique key (psql's `\d`
/// then lists them), and `relhastriggers` for both ends of a foreign key, as PostgreSQL's
/// referential triggers make it (psql's `\d` then lists foreign keys and "Referenced by").
/// pg_attribute's `atttypmod` carries a numeric column's precision and scale
/// (`numeric(12,2)` in format_type, pgjdbc's getColumns), from information_schema.columns;
/// its `atttypid` and `atttypmod` say json, jsonb and varchar(n) where
/// `tenure.column_types` does.
pub(super) const RELATION_VIEWS: [(&str, &str); 3] = [
    (
        "pg_namespace",
        "SELECT tenure_namespace_oid(nspname, 'oid') AS oid, nspname, nspowner, nspacl, options \
         FROM pg_catalog.pg_namespace \
         UNION ALL \
         SELECT DISTINCT tenure_namespace_oid(table_schema, 'oid'), table_schema, \
                CAST(0 AS INT), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR) \
         FROM tenure.temporary_columns",
    ),
    (
        "pg_attribute",
        "SELECT tenure_relation_oid(an.nspname, ac.relname, 'regclass') AS attrelid, \
                a.attname, \
                tenure_oid(CASE WHEN ct.pg_type = 'json' THEN 114 \
                                WHEN ct.pg_type = 'jsonb' THEN 3802 \
                                WHEN ct.pg_type LIKE 'varchar(%' THEN 1043 \
                                ELSE a.atttypid END, 'regtype') AS atttypid, \
                a.attstattarget, a.attlen, a.attnum, a.attndims, a.attcacheoff, \
                CAST(CASE WHEN a.atttypid = 1700 AND p.numeric_scale IS NOT NULL \
                          THEN p.numeric_precision * 65536 + p.numeric_scale + 4 \
                          WHEN ct.pg_type LIKE 'varchar(%' \
                          THEN CAST(regexp_replace(ct.pg_type, '[^0-9]', '', 'g') AS INT) + 4 \
                          ELSE a.atttypmod END AS INT) AS atttypmod, \
                a.attbyval, a.attalign, a.attstorage, \
                a.attcompression, a.attnotnull, \
                a.atthasdef OR x.column_name IS NOT NULL AS atthasdef, \
                a.atthasmissing, a.attidentity, a.attgenerated, a.attisdropped, a.attislocal, \
                a.attinhcount, a.attcollation, a.attacl, a.attoptions, a.attfdwoptions, \
                a.attmissingval \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class ac ON ac.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace an ON an.oid = ac.relnamespace \
         LEFT JOIN tenure.column_types ct ON ct.table_schema = an.nspname \
              AND ct.table_name = ac.relname AND ct.column_name = a.attname \
         LEFT JOIN (SELECT c.oid AS relid, d.column_name \
                    FROM tenure.defaults d \
                    JOIN pg_catalog.pg_namespace n ON n.nspname = d.table_schema \
                    JOIN pg_catalog.pg_class c \
                      ON c.relnamespace = n.oid AND c.relname = d.table_name \
                    WHERE c.relkind = 'r') x \
           ON x.relid = a.attrelid AND x.column_name = a.attname \
         LEFT JOIN (SELECT c.oid AS relid, i.column_name, i.numeric_precision, i.numeric_scale \
                    FROM information_schema.columns i \
                    JOIN pg_catalog.pg_namespace n ON n.nspname = i.table_schema \
                    JOIN pg_catalog.pg_class c \
                      ON c.relnamespace = n.oid AND c.relname = i.table_name \
                    WHERE i.data_type LIKE 'Decimal%' AND c.relkind IN ('r', 'v')) p \
           ON p.relid = a.attrelid AND p.column_name = a.attname \
         UNION ALL \
         SELECT tenure_relation_oid(t.table_schema, t.table_name, 'regclass'), t.column_name, \
                tenure_oid(t.atttypid, 'regtype'), CAST(-1 AS INT), \
                COALESCE(ty.typlen, CAST(-1 AS SMALLINT)), t.attnum, CAST(0 AS INT), \
                CAST(-1 AS INT), t.atttypmod, COALESCE(ty.typbyval, false), \
                COALESCE(ty.typalign, 'i'), COALESCE(ty.typstorage, 'x'), \
                CAST(NULL AS VARCHAR), t.attnotnull, false, false, '', '', false, true, \
                CAST(0 AS INT), CAST(0 AS INT), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), \
                CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR) \
         FROM tenure.temporary_columns t \
         LEFT JOIN pg_catalog.pg_type ty ON ty.oid = t.atttypid",
    ),
    (
        "pg_class",
        "SELECT tenure_relation_oid(cn.nspname, c.relname, 'oid') AS oid, c.relname, \
                tenure_namespace_oid(cn.nspname, 'regnamespace') AS relnamespace, c.reltype, \
                c.reloftype, tenure_relation_owner(cn.nspname, c.relname) AS relowner, \
                c.relam, c.relfilenode, c.reltablespace, c.relpages, c.reltuples, \
                c.relallvisible, c.reltoastrelid, \
                c.relhasindex OR x.relname IS NOT NULL AS relhasindex, \
                c.relisshared, c.relpersistence, c.relkind, c.relnatts, c.relchecks, \
                c.relhasrules, \
                c.relhastriggers OR f.relname IS NOT NULL AS relhastriggers, \
                c.relhassubclass, \
                tenure_relation_row_security(cn.nspname, c.relname) AS relrowsecurity, \
                c.relforcerowsecurity, c.relispopulated, c.relreplident, c.relispartition, \
                c.relrewrite, c.relfrozenxid, c.relminmxid, c.relpartbound, \
                CAST(NULL AS VARCHAR[]) AS reloptions \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace \
         LEFT JOIN (SELECT DISTINCT n.oid AS relnamespace, k.table_name AS relname \
                    FROM tenure.keys k \
                    JOIN pg_catalog.pg_namespace n ON n.nspname = k.table_schema \
                    WHERE k.constraint_type <> 'FOREIGN KEY') x \
           ON x.relnamespace = c.relnamespace AND x.relname = c.relname AND c.relkind = 'r' \
         LEFT JOIN (SELECT DISTINCT n.oid AS relnamespace, f.relname \
                    FROM (SELECT table_schema AS nspname, table_name AS relname \
                          FROM tenure.keys WHERE constraint_type = 'FOREIGN KEY' \
                          UNION ALL \
                          SELECT references_schema, references_table \
                          FROM tenure.keys WHERE constraint_type = 'FOREIGN KEY') f \
                    JOIN pg_catalog.pg_namespace n ON n.nspname = f.nspname) f \
           ON f.relnamespace = c.relnamespace AND f.relname = c.relname AND c.relkind = 'r' \
         UNION ALL \
         SELECT tenure_key_oid(k.table_schema, k.table_name, k.constraint_name), \
                k.constraint_name, tenure_namespace_oid(n.nspname, 'regnamespace'), 0, 0, \
                c.relowner, 403, 0, 0, 1, \
                CAST(0 AS DOUBLE), 0, 0, false, false, 'p', 'i', \
                CAST(array_length(k.positions) AS SMALLINT), CAST(0 AS SMALLINT), \
                false, false, false, false, false, true, 'n', false, 0, 0, 0, \
                CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR[]) \
         FROM tenure.keys k \
         JOIN pg_catalog.pg_namespace n ON n.nspname = k.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = k.table_name \
         WHERE c.relkind = 'r' AND k.constraint_type <> 'FOREIGN KEY' \
         UNION ALL \
         SELECT tenure_relation_oid(t.table_schema, t.table_name, 'oid'), t.table_name, \
                tenure_namespace_oid(t.table_schema, 'regnamespace'), 0, 0, CAST(0 AS INT), \
                2, 0, 0, 0, CAST(0 AS DOUBLE), 0, 0, false, false, 't', 'r', \
                CAST(count(*) AS SMALLINT), CAST(0 AS SMALLINT), \
                false, false, false, false, false, true, 'd', false, 0, 0, 0, \
                CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR[]) \
         FROM tenure.temporary_columns t GROUP BY t.table_schema, t.table_name",
    ),
];
