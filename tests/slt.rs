//! Runs every sqllogictest file under sql/slt against a fresh data directory.
//!
//! `TENURE_SLT_COMPLETE=1 cargo test slt` rewrites the expected results from what tenure
//! returns (review the diff before committing).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use tenure::{Engine, Output};

use crate::support::open_engine;

struct Db {
    engine: Arc<Engine>,
    /// A client session of its own, as a connection has (temporary tables live there).
    session: datafusion::prelude::SessionContext,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let mut statements = self.engine.parse(sql).map_err(|e| DbError(e.to_string()))?;
        let last = statements
            .pop()
            .ok_or_else(|| DbError("empty statement".into()))?;
        for statement in statements {
            self.engine
                .execute_in(&self.session, statement, None)
                .await
                .map_err(|e| DbError(e.to_string()))?;
        }
        match self
            .engine
            .execute_in(&self.session, last, None)
            .await
            .map_err(|e| DbError(e.to_string()))?
        {
            Output::Command { rows, .. } => Ok(DBOutput::StatementComplete(rows.unwrap_or(0))),
            Output::Rows(stream) => {
                use futures::TryStreamExt;
                let schema = stream.schema();
                let batches: Vec<_> = stream
                    .try_collect()
                    .await
                    .map_err(|e| DbError(e.to_string()))?;
                let types = schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                let mut rows = Vec::new();
                for batch in &batches {
                    let formatters: Vec<_> = batch
                        .columns()
                        .iter()
                        .map(|c| (c.clone(), ArrayFormatter::try_new(c.as_ref(), &options())))
                        .collect();
                    for row in 0..batch.num_rows() {
                        let mut cells = Vec::new();
                        for (column, formatter) in &formatters {
                            let formatter =
                                formatter.as_ref().map_err(|e| DbError(e.to_string()))?;
                            cells.push(cell(column, formatter, row));
                        }
                        rows.push(cells);
                    }
                }
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tenure"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("NULL")
}

fn cell(column: &ArrayRef, formatter: &ArrayFormatter<'_>, row: usize) -> String {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Float64Type};
    if column.is_null(row) {
        return "NULL".to_string();
    }
    // Rust's shortest round-trip formatting: 2525 rather than arrow's 2525.0.
    let text = match column.data_type() {
        DataType::Float64 => column.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Float32 => column.as_primitive::<Float32Type>().value(row).to_string(),
        _ => formatter.value(row).to_string(),
    };
    if text.is_empty() {
        "(empty)".to_string()
    } else {
        text
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = crate::support::project_file("sql/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/slt exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files under sql/slt");
    let complete = std::env::var_os("TENURE_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(open_engine(data_dir.path()).await);
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            let session = engine.new_session();
            async move { Ok::<_, DbError>(Db { engine, session }) }
        });
        runner.with_column_validator(sqllogictest::default_column_validator);
        if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{}", file.display(), e.display(true)));
        }
    }
    assert!(
        failures.is_empty(),
        "sqllogictest failures:\n{}",
        failures.join("\n\n")
    );
}
