//! `tenure sql`: one-shot commands (`-c`, `-f`) and the interactive shell.

use std::io::Write;
use std::time::Instant;

use rustyline::error::ReadlineError;

use super::output::{Format, print_batches};
use crate::engine::{Engine, Output};
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;

/// Shell state that backslash commands change.
pub struct Shell<'a> {
    engine: &'a Engine,
    /// The shell's own session: its settings and temporary tables.
    session: datafusion::prelude::SessionContext,
    pub format: Format,
    pub timing: bool,
}

const HELP: &str = "\
SQL statements end with ';'. Backslash commands:
  \\d              list tables and views (\\dS: with the system schemas')
  \\d NAME         describe a table or view
  \\dt, \\dv        list tables, views (\\dtS, \\dvS: with system ones)
  \\dn             list schemas
  \\df [PATTERN]   list functions (name contains PATTERN)
  \\timing         toggle printing how long each statement took
  \\format FORMAT  print rows as table, csv or json
  \\? or \\help     this help
  \\q              quit";

impl<'a> Shell<'a> {
    pub fn new(engine: &'a Engine, format: Format, timing: bool) -> Self {
        Shell {
            engine,
            session: engine.new_session(),
            format,
            timing,
        }
    }

    /// Runs a script: SQL statements and backslash commands (one per line). Stops at the
    /// first error and returns it.
    pub async fn run_script(&mut self, script: &str, out: &mut dyn Write) -> Result<()> {
        let mut sql = String::new();
        for line in script.lines() {
            // A backslash command stands on its own line between statements.
            if line.trim_start().starts_with('\\') && !statement_started(&sql) {
                if !sql.trim().is_empty() {
                    self.run_sql(&std::mem::take(&mut sql), out).await?;
                }
                if !self.backslash(line.trim(), out).await? {
                    return Ok(());
                }
                continue;
            }
            sql.push_str(line);
            sql.push('\n');
        }
        if !sql.trim().is_empty() {
            self.run_sql(&sql, out).await?;
        }
        Ok(())
    }

    /// Runs every statement in `sql`, printing results as they come.
    pub async fn run_sql(&mut self, sql: &str, out: &mut dyn Write) -> Result<()> {
        for statement in self.engine.parse(sql)? {
            let started = Instant::now();
            let (progress, reports) = tokio::sync::mpsc::unbounded_channel();
            let reporter = tokio::spawn(super::progress::report(reports));
            let work = async {
                match self
                    .engine
                    .execute_in(&self.session, statement, Some(&progress))
                    .await?
                {
                    Output::Rows(stream) => {
                        use futures::TryStreamExt;
                        let schema = stream.schema();
                        let mut batches: Vec<_> = stream.try_collect().await?;
                        if batches.is_empty() {
                            batches.push(arrow::record_batch::RecordBatch::new_empty(schema));
                        }
                        Ok(Ok(batches))
                    }
                    Output::Command { tag, rows } => Ok(Err((tag, rows))),
                }
            };
            // Ctrl-C stops the statement (dropping it stops a training at its next
            // mini-batch, before it stores a version) and keeps the shell, as in psql.
            let result: Result<_> = tokio::select! {
                result = work => result,
                () = interrupted() => Err(Error::state(
                    SqlState::QueryCanceled,
                    "canceling statement due to user request",
                )),
            };
            drop(progress);
            // The reporter ends when the sender is gone; it only draws, so it cannot fail.
            let _ = reporter.await;
            match result? {
                Ok(batches) => print_batches(out, &batches, self.format)?,
                Err((tag, rows)) => {
                    if self.format == Format::Table {
                        match rows {
                            Some(rows) => writeln!(out, "{tag} {rows}")?,
                            None => writeln!(out, "{tag}")?,
                        }
                    }
                }
            }
            // On standard error, as notices are, so that CSV and JSON output stays clean.
            if self.timing {
                eprintln!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(())
    }

    /// Runs one backslash command; returns false when the shell should quit.
    async fn backslash(&mut self, line: &str, out: &mut dyn Write) -> Result<bool> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let argument = words.next();
        let sql = match (command, argument) {
            ("\\q" | "\\quit", _) => return Ok(false),
            ("\\?" | "\\help", _) => {
                writeln!(out, "{HELP}")?;
                return Ok(true);
            }
            ("\\timing", _) => {
                self.timing = !self.timing;
                writeln!(out, "Timing is {}.", if self.timing { "on" } else { "off" })?;
                return Ok(true);
            }
            ("\\format", Some(format)) => {
                self.format = format.parse().map_err(|_| {
                    Error::invalid(format!("unknown format {format}; use table, csv or json"))
                })?;
                return Ok(true);
            }
            ("\\d", None) => list_relations(None, false),
            ("\\dS", None) => list_relations(None, true),
            ("\\dt" | "\\dtS", _) => list_relations(Some("BASE TABLE"), command.ends_with('S')),
            ("\\dv" | "\\dvS", _) => list_relations(Some("VIEW"), command.ends_with('S')),
            ("\\d" | "\\dS", Some(name)) => {
                let batches = self.engine.query(&describe(name)).await?;
                if batches.iter().all(|b| b.num_rows() == 0) {
                    return Err(Error::state(
                        SqlState::UndefinedTable,
                        format!("Did not find any relation named \"{name}\"."),
                    ));
                }
                print_batches(out, &batches, self.format)?;
                return Ok(true);
            }
            ("\\dn", _) => "SELECT schema_name AS schema FROM information_schema.schemata \
                 WHERE catalog_name = 'tenure' ORDER BY 1"
                .to_string(),
            ("\\df", pattern) => format!(
                "SELECT DISTINCT routine_name AS function, function_type AS kind, \
                 description FROM information_schema.routines {} ORDER BY 1",
                pattern
                    .map(|p| format!("WHERE routine_name LIKE '%{}%'", p.replace('\'', "''")))
                    .unwrap_or_default()
            ),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown command {line}; \\? lists the commands"
                )));
            }
        };
        let format = self.format;
        let batches = self.engine.query(&sql).await?;
        print_batches(out, &batches, format)?;
        Ok(true)
    }

    /// The interactive shell: line editing, history, multi-line statements.
    pub async fn interactive(&mut self) -> Result<()> {
        let mut editor = rustyline::DefaultEditor::new()
            .map_err(|e| Error::invalid(format!("cannot start the line editor: {e}")))?;
        let history = std::env::var_os("HOME")
            .map(|home| std::path::PathBuf::from(home).join(".tenure_history"));
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        println!(
            "tenure {} — data directory {}\nType \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            self.engine.data_dir().root().display()
        );
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() {
                "tenure=> "
            } else {
                "tenure-> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(Error::invalid(format!("input error: {e}"))),
            };
            if buffer.is_empty() && line.trim_start().starts_with('\\') {
                let _ = editor.add_history_entry(line.as_str());
                let mut stdout = std::io::stdout();
                match self.backslash(line.trim(), &mut stdout).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => eprintln!("ERROR: {e}"),
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            if !statement_complete(&buffer) {
                continue;
            }
            let sql = std::mem::take(&mut buffer);
            let _ = editor.add_history_entry(sql.trim());
            let mut stdout = std::io::stdout();
            if let Err(e) = self.run_sql(&sql, &mut stdout).await {
                eprintln!("ERROR: {e}");
            }
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        Ok(())
    }
}

/// Completes at the next Ctrl-C (SIGINT); never, where signals cannot be received.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// True when `sql` holds an unfinished statement (text after the last complete one).
fn statement_started(sql: &str) -> bool {
    !sql.trim().is_empty() && !statement_complete(sql)
}

/// True when `sql` ends with a `;` outside quotes and comments.
fn statement_complete(sql: &str) -> bool {
    let mut in_single = false;
    let mut in_double = false;
    let mut last_significant = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '-' if !in_single && !in_double && chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last_significant = Some((c, in_single || in_double));
        }
    }
    matches!(last_significant, Some((';', false)))
}

/// The relations `\d`, `\dt` and `\dv` list: the user's schemas, or with `system` (`\dS`)
/// pg_catalog, information_schema and tenure's own schema too.
fn list_relations(kind: Option<&str>, system: bool) -> String {
    format!(
        "SELECT table_schema AS \"Schema\", table_name AS \"Name\", \
         CASE table_type WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' ELSE lower(table_type) END AS \"Type\" \
         FROM information_schema.tables \
         WHERE table_catalog = 'tenure' {} {} \
         ORDER BY 1, 2",
        kind.map(|k| format!("AND table_type = '{k}'"))
            .unwrap_or_default(),
        if system {
            ""
        } else {
            "AND table_schema NOT IN ('pg_catalog', 'information_schema', 'tenure')"
        }
    )
}

/// `\d NAME`: the columns with PostgreSQL's type names, as psql's `\d` shows them.
fn describe(name: &str) -> String {
    // As in psql, a name is folded to lower case unless it is quoted.
    let fold = |part: &str| match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => part.to_lowercase(),
    };
    let (schema, table) = match name.split_once('.') {
        Some((schema, table)) => (fold(schema), fold(table)),
        None => ("public".to_string(), fold(name)),
    };
    format!(
        "SELECT column_name AS \"Column\", \
         CASE WHEN data_type = 'numeric' AND numeric_precision IS NOT NULL \
                THEN 'numeric(' || numeric_precision || ',' || numeric_scale || ')' \
              WHEN character_maximum_length IS NOT NULL \
                THEN data_type || '(' || character_maximum_length || ')' \
              ELSE data_type END AS \"Type\", \
         CASE is_nullable WHEN 'YES' THEN '' ELSE 'not null' END AS \"Nullable\", \
         coalesce(column_default, '') AS \"Default\" \
         FROM pg_catalog.tenure_columns \
         WHERE table_catalog = 'tenure' AND table_schema = '{}' AND table_name = '{}' \
         ORDER BY ordinal_position",
        schema.replace('\'', "''"),
        table.replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_an_unquoted_semicolon() {
        assert!(statement_complete("SELECT 1;"));
        assert!(statement_complete("SELECT 1;  \n"));
        assert!(!statement_complete("SELECT ';'"));
        assert!(!statement_complete("SELECT 1 -- done;"));
        assert!(statement_complete("SELECT 'a;b';"));
        assert!(!statement_complete("SELECT\n"));
    }
}
