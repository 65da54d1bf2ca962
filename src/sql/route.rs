//! One classification of a parsed statement: who carries it out, and whether it changes what
//! is stored. The server, the shell and the engine all ask here, so a new kind of statement
//! is taught to tenure in this one file (and then implemented where its [`Route`] leads).
//!
//! | route | statements | carried out by |
//! | --- | --- | --- |
//! | [`Route::Transaction`] | BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE | the server's session (a no-op plan in the shell, where every statement commits) |
//! | [`Route::Session`] | SET, SHOW, RESET, DISCARD, DEALLOCATE, DECLARE, FETCH, MOVE, CLOSE | the server's session (DataFusion's SET and SHOW in the shell) |
//! | [`Route::Model`] | CREATE MODEL, DROP MODEL | the engine's model registry, never inside a transaction block |
//! | [`Route::Access`] | CREATE/ALTER/DROP ROLE and USER, GRANT, REVOKE | the engine's access control (`engine/access.rs`) |
//! | [`Route::Maintenance`] | VACUUM, OPTIMIZE | the engine's tables, never inside a transaction block |
//! | [`Route::CopyStream`] | COPY ... FROM STDIN, COPY ... TO STDOUT | the server's COPY sub-protocol |
//! | [`Route::Syntax`] | UPDATE, DELETE, TRUNCATE, ALTER TABLE, CREATE/DROP POLICY, CREATE TABLE with keys or defaults, CREATE/DROP INDEX, COMMENT ON, CREATE EXTERNAL TABLE, COPY TO a file | the engine, from the statement's syntax |
//! | [`Route::Plan`] | queries, EXPLAIN, INSERT, CREATE TABLE [AS], CREATE VIEW, CREATE SCHEMA, DROP ... | a DataFusion plan made in the client's session (so it can be described and prepared), carried out by the engine |

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, ObjectType, Statement as SqlStatement,
};

use super::Statement;

/// Who carries a statement out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Transaction control: the session's transaction block.
    Transaction,
    /// Session state and cursors, kept per connection.
    Session,
    /// tenure's model registry: CREATE MODEL and DROP MODEL.
    Model,
    /// Roles and privileges, kept in the catalog.
    Access,
    /// Table upkeep: VACUUM and OPTIMIZE, each table in its own commits (as PostgreSQL's
    /// VACUUM, not inside a transaction block).
    Maintenance,
    /// Data through the client connection: COPY FROM STDIN and COPY TO STDOUT.
    CopyStream,
    /// The engine carries it out from its syntax: writes DataFusion cannot plan (Delta
    /// updates and deletes, keys, indexes, comments) and statements whose paths are checked
    /// against the allowed roots first. Such a statement is never planned by a caller.
    Syntax,
    /// DataFusion plans it; the engine carries the plan out.
    Plan,
}

impl Route {
    /// The route of `statement`.
    pub fn of(statement: &Statement) -> Route {
        match statement {
            Statement::DataFusion(df) => Route::of_datafusion(df),
            Statement::CreateModel(_) | Statement::DropModel(_) => Route::Model,
            Statement::CopyStream(_) => Route::CopyStream,
            Statement::Fetch(_) => Route::Session,
            Statement::Maintain(_) => Route::Maintenance,
            Statement::Access(_) => Route::Access,
        }
    }

    /// Whether statements of this route are refused inside a transaction block, because
    /// what they change is not part of the catalog a block commits.
    pub fn outside_blocks_only(self) -> bool {
        matches!(self, Route::Model | Route::Maintenance)
    }

    /// The route of a statement DataFusion parsed.
    pub fn of_datafusion(statement: &DFStatement) -> Route {
        let inner = match statement {
            DFStatement::CreateExternalTable(_) | DFStatement::CopyTo(_) => return Route::Syntax,
            DFStatement::Reset(_) => return Route::Session,
            DFStatement::Statement(inner) => inner.as_ref(),
            _ => return Route::Plan,
        };
        match inner {
            SqlStatement::StartTransaction { .. }
            | SqlStatement::Commit { .. }
            | SqlStatement::Rollback { .. }
            | SqlStatement::Savepoint { .. }
            | SqlStatement::ReleaseSavepoint { .. } => Route::Transaction,
            SqlStatement::Set(_)
            | SqlStatement::ShowVariable { .. }
            | SqlStatement::Reset(_)
            | SqlStatement::Discard { .. }
            | SqlStatement::Deallocate { .. }
            | SqlStatement::Declare { .. }
            | SqlStatement::Close { .. } => Route::Session,
            SqlStatement::Update(_)
            | SqlStatement::Delete(_)
            | SqlStatement::Merge(_)
            | SqlStatement::Truncate(_)
            | SqlStatement::AlterTable(_)
            | SqlStatement::CreateIndex(_)
            | SqlStatement::CreatePolicy(_)
            | SqlStatement::DropPolicy(_)
            | SqlStatement::Comment { .. } => Route::Syntax,
            SqlStatement::Drop { object_type, .. } if *object_type == ObjectType::Index => {
                Route::Syntax
            }
            SqlStatement::CreateTable(create)
                if declares_keys_or_defaults(create) || creates_temporary(create) =>
            {
                Route::Syntax
            }
            _ => Route::Plan,
        }
    }
}

/// Whether `statement` changes stored state (table data, the catalog or models), as opposed
/// to reading it or changing only the session.
pub fn changes_state(statement: &Statement) -> bool {
    match statement {
        Statement::CreateModel(_)
        | Statement::DropModel(_)
        | Statement::Maintain(_)
        | Statement::Access(_) => true,
        Statement::CopyStream(copy) => {
            !matches!(copy.as_ref(), SqlStatement::Copy { to: true, .. })
        }
        Statement::Fetch(_) => false,
        Statement::DataFusion(df) => match Route::of_datafusion(df) {
            Route::Transaction | Route::Session => false,
            _ => match df {
                DFStatement::Statement(inner) => !matches!(
                    inner.as_ref(),
                    SqlStatement::Query(_)
                        | SqlStatement::Explain { .. }
                        | SqlStatement::ExplainTable { .. }
                        | SqlStatement::ShowTables { .. }
                        | SqlStatement::ShowColumns { .. }
                        | SqlStatement::ShowFunctions { .. }
                ),
                DFStatement::Explain(_) => false,
                _ => true,
            },
        },
    }
}

/// Whether `statement` writes as part of an open transaction block, which then holds the
/// catalog lock and commits its writes together. Model statements are refused inside a block
/// instead: model versions are not part of the catalog a block commits.
pub fn writes_in_block(statement: &Statement) -> bool {
    changes_state(statement) && !Route::of(statement).outside_blocks_only()
}

/// Whether CREATE TABLE makes a temporary table (`TEMP`, or a name in `pg_temp`), which
/// DataFusion refuses to plan.
pub fn creates_temporary(create: &CreateTable) -> bool {
    create.temporary
        || create.name.0.first().is_some_and(|schema| {
            create.name.0.len() == 2
                && schema
                    .as_ident()
                    .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_temp"))
        })
}

/// Whether CREATE TABLE declares keys, constraints or column defaults, which tenure keeps in
/// its catalog (DataFusion's CREATE TABLE would drop them).
pub fn declares_keys_or_defaults(create: &CreateTable) -> bool {
    !create.constraints.is_empty()
        || create.columns.iter().any(|c| {
            c.options.iter().any(|o| {
                matches!(
                    o.option,
                    ColumnOption::PrimaryKey(_)
                        | ColumnOption::Unique(_)
                        | ColumnOption::ForeignKey(_)
                        | ColumnOption::Check(_)
                        | ColumnOption::Default(_)
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(sql: &str) -> (Route, bool) {
        let mut parsed = super::super::parse(sql).expect("parses");
        assert_eq!(parsed.len(), 1, "{sql}");
        let statement = parsed.remove(0);
        (Route::of(&statement), changes_state(&statement))
    }

    /// Every route with the statements it takes, and whether they change stored state.
    #[test]
    fn each_statement_has_one_route() {
        use Route::*;
        let table: &[(&str, Route, bool)] = &[
            ("BEGIN", Transaction, false),
            ("START TRANSACTION", Transaction, false),
            ("COMMIT", Transaction, false),
            ("ROLLBACK", Transaction, false),
            ("SAVEPOINT a", Transaction, false),
            ("RELEASE SAVEPOINT a", Transaction, false),
            ("ROLLBACK TO SAVEPOINT a", Transaction, false),
            ("SET search_path = public", Session, false),
            ("SET TIME ZONE 'UTC'", Session, false),
            ("SHOW TimeZone", Session, false),
            ("RESET ALL", Session, false),
            ("DISCARD ALL", Session, false),
            ("DEALLOCATE ALL", Session, false),
            ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", Session, false),
            ("FETCH 2 FROM c", Session, false),
            ("MOVE NEXT IN c", Session, false),
            ("CLOSE c", Session, false),
            ("CREATE MODEL m KIND kmeans AS SELECT 1 AS x", Model, true),
            ("DROP MODEL IF EXISTS m", Model, true),
            ("COPY t FROM STDIN", CopyStream, true),
            ("CREATE ROLE r LOGIN", Access, true),
            ("CREATE USER u PASSWORD 'x'", Access, true),
            ("ALTER USER u NOLOGIN", Access, true),
            ("DROP ROLE r", Access, true),
            ("GRANT SELECT ON t TO r", Access, true),
            ("REVOKE r FROM u", Access, true),
            ("COPY (SELECT 1) TO STDOUT", CopyStream, false),
            ("UPDATE t SET a = 1", Syntax, true),
            ("DELETE FROM t WHERE a = 1", Syntax, true),
            (
                "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
                Syntax,
                true,
            ),
            ("TRUNCATE t", Syntax, true),
            ("ALTER TABLE t RENAME TO u", Syntax, true),
            ("CREATE INDEX i ON t (a)", Syntax, true),
            ("CREATE POLICY p ON t USING (a = 1)", Syntax, true),
            ("DROP POLICY p ON t", Syntax, true),
            ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", Syntax, true),
            ("DROP INDEX i", Syntax, true),
            ("COMMENT ON TABLE t IS 'x'", Syntax, true),
            ("CREATE TABLE t (a INT PRIMARY KEY)", Syntax, true),
            ("CREATE TABLE t (a INT DEFAULT 1)", Syntax, true),
            ("CREATE TEMP TABLE t (a INT)", Syntax, true),
            ("CREATE TABLE pg_temp.t AS SELECT 1 AS a", Syntax, true),
            (
                "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/x.csv'",
                Syntax,
                true,
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", Syntax, true),
            ("SELECT 1", Plan, false),
            ("WITH a AS (SELECT 1) SELECT * FROM a", Plan, false),
            ("EXPLAIN SELECT 1", Plan, false),
            ("SHOW TABLES", Plan, false),
            ("INSERT INTO t VALUES (1)", Plan, true),
            ("CREATE TABLE t (a INT)", Plan, true),
            ("CREATE TABLE t AS SELECT 1 AS a", Plan, true),
            ("CREATE VIEW v AS SELECT 1 AS a", Plan, true),
            ("CREATE SCHEMA s", Plan, true),
            ("DROP TABLE t", Plan, true),
            ("DROP VIEW v", Plan, true),
        ];
        for (sql, route, changes) in table {
            assert_eq!(classified(sql), (*route, *changes), "{sql}");
        }
    }

    #[test]
    fn model_statements_are_not_block_writes() {
        let statements = super::super::parse(
            "CREATE MODEL m KIND kmeans AS SELECT 1 AS x; INSERT INTO t VALUES (1); SELECT 1",
        )
        .expect("parses");
        let in_block: Vec<bool> = statements.iter().map(writes_in_block).collect();
        assert_eq!(in_block, [false, true, false]);
    }
}
