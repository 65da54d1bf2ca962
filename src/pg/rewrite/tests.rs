use super::*;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

#[test]
fn case_subqueries_become_plannable() {
    let sql = "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d \
               WHERE a.atthasdef AND d.adrelid = a.attrelid) ELSE NULL END AS dflt, \
               CASE WHEN (SELECT t.typcollation FROM pg_catalog.pg_type t \
               WHERE t.oid = a.atttypid) <> a.attcollation THEN 'x' END AS coll \
               FROM pg_catalog.pg_attribute a";
    assert_eq!(
        rewritten(sql, |s| {
            eager_catalog_case_subqueries(s);
        }),
        "SELECT tenure_if((a.atthasdef) AND (a.atthasdef), (SELECT d.adbin FROM \
         pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid)) AS dflt, \
         tenure_if((SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = \
         a.atttypid) <> a.attcollation, 'x') AS coll FROM pg_catalog.pg_attribute a"
    );
    assert_eq!(
        rewritten(
            "SELECT pg_catalog.pg_get_serial_sequence(CAST(a.attrelid AS TEXT), a.attname) \
             FROM pg_catalog.pg_attribute a",
            inline_serial_sequence_lookups
        ),
        "SELECT CAST(NULL AS TEXT) FROM pg_catalog.pg_attribute a"
    );
    assert_eq!(
        rewritten(
            "SELECT (SELECT json_build_object('always', a.attidentity = 'a') \
             FROM pg_catalog.pg_sequence WHERE a.attidentity <> '') AS identity \
             FROM pg_catalog.pg_attribute a",
            inline_serial_sequence_lookups
        ),
        "SELECT NULL AS identity FROM pg_catalog.pg_attribute a"
    );
}

/// `sql` after `rewrite`, printed (shared with the rewrites' own test modules).
pub(super) fn rewritten(sql: &str, rewrite: fn(&mut SqlStatement)) -> String {
    let mut statement = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
        .unwrap();
    rewrite(&mut statement);
    statement.to_string()
}

#[test]
fn partition_ancestors_are_empty() {
    // psql's trigger listing: the correlated lookup joins the ancestors, so it is NULL.
    let sql = rewritten(
        "SELECT t.tgname, (SELECT u.tgrelid FROM pg_catalog.pg_trigger AS u, \
         pg_catalog.pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth) \
         WHERE u.tgrelid = a.relid ORDER BY a.depth LIMIT 1) AS parent \
         FROM pg_catalog.pg_trigger t",
        empty_partition_ancestors,
    );
    assert_eq!(
        sql,
        "SELECT t.tgname, NULL AS parent FROM pg_catalog.pg_trigger t"
    );
    // Elsewhere, an empty table with the function's columns under the query's alias.
    let sql = rewritten(
        "SELECT * FROM pg_partition_ancestors('t') WITH ORDINALITY AS a(relid, depth)",
        empty_partition_ancestors,
    );
    assert_eq!(
        sql,
        "SELECT * FROM (SELECT CAST(NULL AS INT) AS relid, CAST(NULL AS BIGINT) AS \
         ordinality WHERE false) AS a (relid, depth)"
    );
}

#[test]
fn regclass_outputs_become_name_lookups() {
    let sql = rewritten(
        "SELECT conrelid::regclass, confrelid::pg_catalog.regclass AS other, \
         c.oid::regclass::text FROM pg_constraint c",
        show_regclass_names,
    );
    assert!(
        sql.contains(") AS conrelid, COALESCE(")
            && sql.contains("tenure_regclass_oid = confrelid), CAST(confrelid AS TEXT)) AS other")
            && sql.ends_with(
                "tenure_regclass_oid = c.oid), CAST(c.oid AS TEXT)) FROM pg_constraint c"
            ),
        "{sql}"
    );
    // Compared, a regclass stays an oid.
    let sql = rewritten(
        "SELECT 1 FROM pg_constraint WHERE conrelid = 't'::regclass",
        show_regclass_names,
    );
    assert!(!sql.contains("tenure_regclass"), "{sql}");
    // A quoted name is checked; a quoted oid is not.
    let mut statement = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("SELECT 't'::regclass, '16384'::regclass")
        .and_then(|mut p| p.parse_statement())
        .unwrap();
    assert!(check_regclass_names(&mut statement));
    let sql = statement.to_string();
    assert!(
        sql.starts_with("SELECT tenure_checked_regclass((SELECT c.oid FROM pg_catalog.pg_class")
            && sql.contains("parse_ident('t')")
            && sql.ends_with("LIMIT 1), 't')::REGCLASS, '16384'::REGCLASS"),
        "{sql}"
    );
}

#[test]
fn like_escape_characters_become_backslashes() {
    let sql = rewritten(
        "SELECT 1 FROM t WHERE name NOT LIKE 'pg/_%' ESCAPE '/'",
        rewrite_like_escapes,
    );
    assert!(
        sql.contains("NOT LIKE 'pg\\_%'") && !sql.contains("ESCAPE"),
        "{sql}"
    );
    let sql = rewritten(
        "SELECT 1 FROM t WHERE name LIKE $1 ESCAPE '/'",
        rewrite_like_escapes,
    );
    assert!(
        sql.contains("regexp_replace") && !sql.contains("ESCAPE"),
        "{sql}"
    );
}

#[test]
fn array_functions_and_field_selection_become_datafusion_calls() {
    // pgjdbc's getPrimaryKeys and getIndexInfo.
    assert_eq!(
        rewritten(
            "SELECT (information_schema._pg_expandarray(i.indkey)).n AS seq, \
             i.indoption[(information_schema._pg_expandarray(i.indkey)).n - 1] & 1 \
             FROM pg_index i WHERE i.indkey[1] > 0 AND (r.keys).x = 2",
            |s| {
                rewrite_expandarray(s);
                rewrite_field_access(s);
                rewrite_int2vector_subscripts(s);
            }
        ),
        "SELECT get_field((unnest(tenure_expand_array(i.indkey))), 'n') AS seq, \
         tenure_int2vector_element(i.indoption, get_field((unnest(tenure_expand_array(\
         i.indkey))), 'n') - 1) & 1 FROM pg_index i WHERE i.indkey[1] > 0 AND \
         get_field((r.keys), 'x') = 2"
    );
    // SQLAlchemy's key reflection.
    assert_eq!(
        rewritten(
            "SELECT unnest(c.conkey), generate_subscripts(c.conkey, $1::INTEGER) \
             FROM pg_catalog.pg_constraint c",
            rewrite_expandarray
        ),
        "SELECT unnest(c.conkey), unnest(generate_series(1, array_length(c.conkey, \
         $1::INTEGER))) FROM pg_catalog.pg_constraint c"
    );
    // pgjdbc's getTypeInfo, after datafusion-pg-catalog's regproc rule.
    assert_eq!(
        rewritten(
            "SELECT typinput = (SELECT oid FROM pg_catalog.pg_proc \
             WHERE proname = 'pg_catalog.array_in') FROM pg_catalog.pg_type",
            compare_regproc_columns_by_name
        ),
        "SELECT typinput = 'array_in' FROM pg_catalog.pg_type"
    );
}

#[test]
fn name_lookups_become_catalog_subqueries() {
    let sql = rewritten(
        "SELECT pg_size_pretty(pg_table_size(c.oid)), pg_relation_size('t') \
         FROM pg_catalog.pg_class c",
        rewrite_name_lookups,
    );
    assert_eq!(
        sql,
        "SELECT pg_size_pretty((SELECT max(bytes) FROM pg_catalog.tenure_relation_sizes \
         WHERE relid = c.oid)), (SELECT max(bytes) FROM pg_catalog.tenure_relation_sizes \
         WHERE relid = tenure_checked_regclass((SELECT oid FROM pg_catalog.pg_class \
         WHERE relname = 't' LIMIT 1), 't')) AS pg_relation_size FROM pg_catalog.pg_class c"
    );
    let sql = rewritten("SELECT to_regtype('bigint')", rewrite_name_lookups);
    assert!(
        sql.contains("FROM pg_catalog.pg_type") && sql.contains("'int8'"),
        "{sql}"
    );
}

#[test]
fn catalog_scalar_subqueries_are_aggregated() {
    let sql = rewritten(
        "SELECT (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) \
         FROM pg_catalog.pg_attribute a",
        aggregate_catalog_subqueries,
    );
    assert!(sql.contains("SELECT max(d.adbin)"), "{sql}");
    let already = "SELECT (SELECT count(*) FROM pg_catalog.pg_class)";
    assert_eq!(rewritten(already, aggregate_catalog_subqueries), already);
}

#[test]
fn default_lookups_survive_the_compatibility_rules() {
    // psql's \d: the outer-only a.atthasdef moves out of the subquery.
    let sql = "SELECT a.attname, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) \
               FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid \
               AND d.adnum = a.attnum AND a.atthasdef), \
               (SELECT c.collname FROM pg_catalog.pg_collation c WHERE c.oid = a.attcollation) \
               FROM pg_catalog.pg_attribute a";
    assert_eq!(
        rewritten(sql, |s| assert!(keep_default_lookups(s))),
        "SELECT a.attname, tenure_if(a.atthasdef, (SELECT \
         pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d \
         WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum)), (SELECT c.collname FROM \
         pg_catalog.pg_collation c WHERE c.oid = a.attcollation) FROM pg_catalog.pg_attribute a"
    );
    let other = "SELECT (SELECT count(*) FROM pg_catalog.pg_class)";
    assert_eq!(
        rewritten(other, |s| assert!(!keep_default_lookups(s))),
        other
    );
}
