//! `COPY ... TO STDOUT` and `COPY ... FROM STDIN`: bulk transfer through the client
//! connection (psql's `\copy`, psycopg's `cursor.copy()`), in PostgreSQL's text and CSV
//! formats (and binary out).
//!
//! Out: the table or query runs like any query; each row is encoded by arrow-pg into one
//! CopyData message. In: the client's CopyData streams into one `INSERT` that commits at
//! CopyDone (see [`CopyIn`]): each chunk of whole lines is parsed into text columns and cast
//! to the table's column types (a value that does not fit names its column and lines).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col, lit};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::scalar::ScalarValue;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement as SqlStatement,
};
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireResult};
use pgwire::messages::copy::CopyData;
use tokio::sync::mpsc;

use super::sqlstate;
use crate::engine::{Engine, Output};
use crate::error::Error;
use crate::pg::sqlstate::SqlState;

/// The format of a COPY.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    pub kind: Kind,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Csv,
    Binary,
}

impl CopyFormat {
    /// The protocol's overall format code: 0 text (and CSV), 1 binary.
    pub fn code(&self) -> i8 {
        i8::from(self.kind == Kind::Binary)
    }
}

/// What a `COPY ... STDIN | STDOUT` asks for.
#[derive(Debug, Clone)]
pub enum CopyRequest {
    /// Send the result of this query (a table's columns or a query) to the client.
    Out { query: String, format: CopyFormat },
    /// Read rows for `table` (only `columns`, when given) from the client.
    In {
        table: ObjectName,
        columns: Vec<Ident>,
        format: CopyFormat,
    },
}

fn unsupported(message: impl Into<String>) -> ErrorInfo {
    sqlstate::error(SqlState::FeatureNotSupported, message)
}

/// Reads a parsed `COPY` statement.
// ErrorInfo is the error type of pgwire's API, large or not.
#[allow(clippy::result_large_err)]
pub fn request(statement: &SqlStatement) -> Result<CopyRequest, ErrorInfo> {
    let SqlStatement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(unsupported("not a COPY statement"));
    };
    let format = format(options, legacy_options)?;
    match (to, target, source) {
        (
            true,
            CopyTarget::Stdout,
            CopySource::Table {
                table_name,
                columns,
            },
        ) => {
            let columns = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Ok(CopyRequest::Out {
                query: format!("SELECT {columns} FROM {table_name}"),
                format,
            })
        }
        (true, CopyTarget::Stdout, CopySource::Query(query)) => Ok(CopyRequest::Out {
            query: query.to_string(),
            format,
        }),
        (
            false,
            CopyTarget::Stdin,
            CopySource::Table {
                table_name,
                columns,
            },
        ) => {
            if format.kind == Kind::Binary {
                return Err(unsupported(
                    "COPY FROM STDIN in binary format is not supported; use text or CSV",
                ));
            }
            Ok(CopyRequest::In {
                table: table_name.clone(),
                columns: columns.clone(),
                format,
            })
        }
        _ => Err(unsupported(
            "COPY supports TO STDOUT and FROM STDIN here; for files use COPY (query) TO 'path' \
             or CREATE EXTERNAL TABLE",
        )),
    }
}

#[allow(clippy::result_large_err)]
fn format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat, ErrorInfo> {
    let mut format = CopyFormat {
        kind: Kind::Text,
        delimiter: '\t',
        null: "\\N".to_string(),
        header: false,
        quote: '"',
        escape: '"',
    };
    let mut delimiter = None;
    let mut null = None;
    let mut escape = None;
    for option in options {
        match option {
            CopyOption::Format(name) => {
                format.kind = match name.value.to_ascii_lowercase().as_str() {
                    "text" => Kind::Text,
                    "csv" => Kind::Csv,
                    "binary" => Kind::Binary,
                    other => {
                        return Err(sqlstate::error(
                            SqlState::InvalidParameterValue,
                            format!("COPY format \"{other}\" not recognized"),
                        ));
                    }
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => format.header = *h,
            CopyOption::Quote(c) => format.quote = *c,
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => format.kind = Kind::Binary,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => format.header = true,
            CopyLegacyOption::Csv(csv) => {
                format.kind = Kind::Csv;
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = *c,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => {
                            return Err(unsupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            other => return Err(unsupported(format!("COPY option {other} is not supported"))),
        }
    }
    if format.kind == Kind::Csv {
        format.delimiter = delimiter.unwrap_or(',');
        format.null = null.unwrap_or_default();
        format.escape = escape.unwrap_or(format.quote);
    } else {
        format.delimiter = delimiter.unwrap_or('\t');
        format.null = null.unwrap_or_else(|| "\\N".to_string());
    }
    if format.kind == Kind::Text && format.header {
        return Err(unsupported("COPY HEADER is available only in CSV mode"));
    }
    Ok(format)
}

/// The rows of `batch` as CopyData messages, one per row.
pub fn encode_batch(
    fields: &Arc<Vec<FieldInfo>>,
    format: &CopyFormat,
    batch: &RecordBatch,
) -> PgWireResult<Vec<CopyData>> {
    let mut encoder = encoder(fields, format);
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, array) in batch.columns().iter().enumerate() {
            arrow_pg::encoder::encode_value(&mut encoder, array, row, schema.field(i), &fields[i])?;
        }
        out.push(encoder.take_copy());
    }
    Ok(out)
}

/// The CSV header line, when the format asks for one.
pub fn header(fields: &[FieldInfo], format: &CopyFormat) -> Option<CopyData> {
    (format.kind == Kind::Csv && format.header).then(|| {
        let line = fields
            .iter()
            .map(|f| csv_quote(f.name(), format))
            .collect::<Vec<_>>()
            .join(&format.delimiter.to_string());
        CopyData::new(format!("{line}\n").into())
    })
}

fn csv_quote(value: &str, format: &CopyFormat) -> String {
    if value.contains([format.delimiter, format.quote, '\n', '\r']) {
        let doubled = value.replace(format.quote, &format!("{}{}", format.escape, format.quote));
        format!("{q}{doubled}{q}", q = format.quote)
    } else {
        value.to_string()
    }
}

fn encoder(fields: &Arc<Vec<FieldInfo>>, format: &CopyFormat) -> CopyEncoder {
    match format.kind {
        Kind::Binary => CopyEncoder::new_binary(fields.clone()),
        Kind::Text => CopyEncoder::new_text(
            fields.clone(),
            CopyTextOptions {
                delimiter: format.delimiter.to_string().into(),
                null_string: format.null.clone().into(),
            },
        ),
        Kind::Csv => CopyEncoder::new_csv(
            fields.clone(),
            CopyCsvOptions {
                delimiter: format.delimiter.to_string().into(),
                quote: format.quote.to_string().into(),
                escape: format.escape.to_string().into(),
                null_string: format.null.clone().into(),
                force_quote: Vec::new(),
            },
        ),
    }
}

/// What a `COPY ... FROM STDIN` reads: the named columns of a table, in a format.
#[derive(Debug)]
pub struct CopyShape {
    pub table: TableReference,
    /// The table's full schema and the positions of the columns the data holds.
    pub table_schema: SchemaRef,
    pub columns: Vec<usize>,
    pub format: CopyFormat,
}

/// How many bytes of COPY data to gather before parsing them into a batch.
const CHUNK_BYTES: usize = 1 << 20;

/// A `COPY ... FROM STDIN` in progress. The client's data is parsed a chunk of whole lines
/// at a time (on the execution runtime) into batches that stream into one INSERT, which
/// commits once at CopyDone: memory stays at a chunk and a few batches whatever the size
/// of the input, and a COPY that fails or is cut off (CopyFail, an error in the data, a
/// dropped connection) writes nothing.
pub struct CopyIn {
    shape: Arc<CopyShape>,
    /// Data received and not parsed yet (at most a partial line after each chunk).
    buffer: Vec<u8>,
    /// Lines parsed so far (for the line numbers of errors).
    lines: usize,
    /// The CSV header is still ahead.
    header_ahead: bool,
    /// The data's end marker (`\.`) has been read: anything after it is ignored.
    ended: bool,
    /// The first error in the data; the rest of the data is ignored and CopyDone reports it.
    error: Option<Error>,
    batches: mpsc::Sender<Piece>,
    insert: tokio::task::JoinHandle<Result<u64, Error>>,
}

/// What the INSERT reads from the channel: rows, then the end of the data. A channel that
/// closes without `Done` fails the INSERT, so that it commits nothing.
enum Piece {
    Rows(RecordBatch),
    Done,
}

impl CopyIn {
    /// Starts the INSERT that the copy's rows stream into, on `runtime`.
    pub async fn start(
        engine: Arc<Engine>,
        ctx: datafusion::prelude::SessionContext,
        runtime: &tokio::runtime::Handle,
        shape: CopyShape,
    ) -> Result<CopyIn, Error> {
        let fields: Vec<Field> = shape
            .columns
            .iter()
            .map(|&c| {
                let field = shape.table_schema.field(c);
                Field::new(field.name(), field.data_type().clone(), true)
            })
            .collect();
        let input_schema = Arc::new(Schema::new(fields));
        let (sender, receiver) = mpsc::channel(2);
        let input = StreamingTable::try_new(
            input_schema.clone(),
            vec![Arc::new(CopyStream {
                schema: input_schema,
                receiver: std::sync::Mutex::new(Some(receiver)),
            })],
        )?;
        let scan =
            LogicalPlanBuilder::scan("copy_input", provider_as_source(Arc::new(input)), None)?
                .build()?;
        // Every column of the table: its default, or NULL, where the COPY names no data for
        // it.
        let target = ctx.table_provider(shape.table.clone()).await?;
        let projection: Vec<Expr> = shape
            .table_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| match shape.columns.contains(&i) {
                true => col(datafusion::common::Column::new_unqualified(field.name())),
                false => cast(
                    target
                        .get_column_default(field.name())
                        .cloned()
                        .unwrap_or(lit(ScalarValue::Null)),
                    field.data_type().clone(),
                )
                .alias(field.name()),
            })
            .collect();
        let projected = LogicalPlanBuilder::from(scan)
            .project(projection)?
            .build()?;
        let plan = LogicalPlanBuilder::insert_into(
            projected,
            shape.table.clone(),
            provider_as_source(target),
            InsertOp::Append,
        )?
        .build()?;
        let insert = runtime.spawn(async move {
            match engine.execute_plan_in(&ctx, plan).await? {
                Output::Command { rows, .. } => Ok(rows.unwrap_or(0)),
                Output::Rows(_) => Ok(0),
            }
        });
        Ok(CopyIn {
            header_ahead: shape.format.header,
            shape: Arc::new(shape),
            buffer: Vec::new(),
            lines: 0,
            ended: false,
            error: None,
            batches: sender,
            insert,
        })
    }

    /// CopyData: gathers the data, and sends each full chunk of lines on as a batch.
    pub async fn receive(&mut self, data: &[u8], runtime: &tokio::runtime::Handle) {
        if self.error.is_some() || self.ended {
            return;
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            let whole = complete_lines(&self.shape.format, &self.buffer);
            if whole > 0 {
                let chunk: Vec<u8> = self.buffer.drain(..whole).collect();
                self.send(chunk, runtime).await;
            }
        }
    }

    /// CopyDone: sends the rest and waits for the INSERT to commit; returns how many rows.
    pub async fn finish(mut self, runtime: &tokio::runtime::Handle) -> Result<u64, Error> {
        let rest = std::mem::take(&mut self.buffer);
        if !rest.is_empty() && self.error.is_none() && !self.ended {
            self.send(rest, runtime).await;
        }
        if let Some(error) = self.error.take() {
            // Dropping the sender without Done fails the INSERT: nothing is written.
            drop(self.batches);
            let _ = self.insert.await;
            return Err(error);
        }
        let _ = self.batches.send(Piece::Done).await;
        drop(self.batches);
        self.insert
            .await
            .map_err(|e| Error::invalid(format!("COPY failed: {e}")))?
    }

    /// Parses `chunk` (whole lines) on `runtime` and hands the batch to the INSERT.
    async fn send(&mut self, chunk: Vec<u8>, runtime: &tokio::runtime::Handle) {
        let shape = self.shape.clone();
        let (first_line, header) = (self.lines, self.header_ahead);
        let parsed = runtime
            .spawn(async move { parse_chunk(&shape, &chunk, first_line, header) })
            .await
            .map_err(|e| Error::invalid(format!("COPY failed: {e}")))
            .and_then(|parsed| parsed);
        self.header_ahead = false;
        let (batch, lines, ended) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                self.error = Some(error);
                return;
            }
        };
        self.lines += lines;
        self.ended = ended;
        if batch.num_rows() > 0 && self.batches.send(Piece::Rows(batch)).await.is_err() {
            // The INSERT stopped early; CopyDone reports its error.
            self.ended = true;
        }
    }
}

/// The INSERT's input: the batches of the copy's channel, read once.
#[derive(Debug)]
struct CopyStream {
    schema: SchemaRef,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Piece>>>,
}

impl PartitionStream for CopyStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.receiver.lock().ok().and_then(|mut r| r.take());
        let pieces = futures::stream::unfold(receiver, |receiver| async move {
            let mut receiver = match receiver {
                Some(receiver) => receiver,
                None => return None,
            };
            match receiver.recv().await {
                Some(Piece::Rows(batch)) => Some((Ok(batch), Some(receiver))),
                Some(Piece::Done) => None,
                None => Some((
                    Err(DataFusionError::Execution(
                        "COPY FROM STDIN stopped before its end; nothing was written".into(),
                    )),
                    None,
                )),
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), pieces))
    }
}

/// The length of the part of `data` that holds only whole lines: up to its last newline
/// outside a CSV quoted field.
fn complete_lines(format: &CopyFormat, data: &[u8]) -> usize {
    if format.kind != Kind::Csv {
        return data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    }
    let (quote, escape) = (format.quote as u8, format.escape as u8);
    let mut quoted = false;
    let mut end = 0;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if quoted && b == escape && escape != quote {
            i += 2;
            continue;
        }
        if b == quote {
            quoted = !quoted;
        } else if b == b'\n' && !quoted {
            end = i + 1;
        }
        i += 1;
    }
    end
}

/// The table's rows in a chunk of whole lines of COPY data, typed as the table's columns;
/// with how many lines it held and whether it held the end marker `\.`. `first_line`
/// counts the lines before the chunk; `header` skips the chunk's first line (CSV HEADER).
fn parse_chunk(
    shape: &CopyShape,
    data: &[u8],
    first_line: usize,
    header: bool,
) -> Result<(RecordBatch, usize, bool), Error> {
    let invalid = |e: String| Error::invalid(format!("COPY {}: {e}", shape.table));
    let (rows, lines, ended) =
        parse_rows(&shape.format, shape.columns.len(), data, first_line, header)
            .map_err(invalid)?;
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(shape.columns.len());
    let mut fields = Vec::with_capacity(shape.columns.len());
    for (position, &column) in shape.columns.iter().enumerate() {
        let field = shape.table_schema.field(column);
        let mut builder = StringBuilder::new();
        for (number, row) in rows.iter().enumerate() {
            if row[position].is_none() && !field.is_nullable() {
                return Err(Error::state(
                    SqlState::NotNullViolation,
                    format!(
                        "null value in column {} of table {} violates its NOT NULL constraint \
                     (COPY line {})",
                        field.name(),
                        shape.table,
                        row_line(first_line, header, number)
                    ),
                ));
            }
            builder.append_option(row[position].as_deref());
        }
        let text: ArrayRef = Arc::new(builder.finish());
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let typed = cast_with_options(&text, field.data_type(), &options).map_err(|e| {
            Error::state(
                SqlState::InvalidTextRepresentation,
                format!(
                    "invalid value for column {} of table {}: {e} (COPY lines {}-{})",
                    field.name(),
                    shape.table,
                    first_line + 1,
                    first_line + lines
                ),
            )
        })?;
        arrays.push(typed);
        fields.push(Field::new(field.name(), field.data_type().clone(), true));
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?;
    Ok((batch, lines, ended))
}

/// The line number of the `row`-th row of a chunk (text rows are one line each).
fn row_line(first_line: usize, header: bool, row: usize) -> usize {
    first_line + usize::from(header) + row + 1
}

/// Parsed lines: the rows (NULL as None), the lines consumed and whether the data ended.
type ParsedLines = (Vec<Vec<Option<String>>>, usize, bool);

/// Parses whole lines of COPY data into rows of text fields (`None` for NULL); with how
/// many lines there were and whether the end marker `\.` was among them.
fn parse_rows(
    format: &CopyFormat,
    width: usize,
    data: &[u8],
    first_line: usize,
    header: bool,
) -> Result<ParsedLines, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("invalid UTF-8 in COPY data: {e}"))?;
    let mut rows = Vec::new();
    let mut lines = 0;
    let mut ended = false;
    match format.kind {
        Kind::Text => {
            let text = text.strip_suffix('\n').unwrap_or(text);
            for line in text.split('\n').filter(|_| !data.is_empty()) {
                lines += 1;
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line == "\\." {
                    ended = true;
                    break;
                }
                let fields: Vec<Option<String>> = line
                    .split(format.delimiter)
                    .map(|field| (field != format.null).then(|| unescape_text(field)))
                    .collect();
                if fields.len() != width {
                    return Err(format!(
                        "line {}: expected {width} columns, found {}",
                        first_line + lines,
                        fields.len()
                    ));
                }
                rows.push(fields);
            }
        }
        Kind::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(header)
                .delimiter(format.delimiter as u8)
                .quote(format.quote as u8)
                .escape((format.escape != format.quote).then_some(format.escape as u8))
                .double_quote(format.escape == format.quote)
                .flexible(true)
                .from_reader(text.as_bytes());
            for record in reader.records() {
                let record = record.map_err(|e| format!("CSV: {e}"))?;
                let line = first_line + record.position().map_or(0, |p| p.line() as usize);
                if record.len() == 1 && record.get(0) == Some("\\.") {
                    ended = true;
                    break;
                }
                if record.len() != width {
                    return Err(format!(
                        "line {line}: expected {width} columns, found {}",
                        record.len()
                    ));
                }
                // PostgreSQL's CSV NULL is an unquoted empty field; the csv reader does not
                // tell quoted from unquoted, so an empty field is NULL unless NULL is set.
                rows.push(
                    record
                        .iter()
                        .map(|f| (f != format.null).then(|| f.to_string()))
                        .collect(),
                );
            }
            lines = text.bytes().filter(|&b| b == b'\n').count()
                + usize::from(!text.is_empty() && !text.ends_with('\n'));
        }
        Kind::Binary => return Err("binary COPY FROM is not supported".into()),
    }
    Ok((rows, lines, ended))
}

/// PostgreSQL text-format escapes: `\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`.
fn unescape_text(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The table a COPY FROM names, its schema and the positions of the named columns.
pub async fn target(
    ctx: &datafusion::prelude::SessionContext,
    table: &ObjectName,
    columns: &[Ident],
) -> Result<(TableReference, SchemaRef, Vec<usize>), Error> {
    let reference = object_name_to_table_reference(table.clone(), true)?;
    let provider = ctx.table_provider(reference.clone()).await?;
    let schema = provider.schema();
    let positions = if columns.is_empty() {
        (0..schema.fields().len()).collect()
    } else {
        columns
            .iter()
            .map(|c| {
                let name = if c.quote_style.is_some() {
                    c.value.clone()
                } else {
                    c.value.to_lowercase()
                };
                schema.index_of(&name).map_err(|_| Error::NotFound {
                    kind: "column",
                    name: format!("{name} of {reference}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((reference, schema, positions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: Kind, header: bool) -> CopyShape {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", datafusion::arrow::datatypes::DataType::Int64, true),
            Field::new("b", datafusion::arrow::datatypes::DataType::Utf8, false),
        ]));
        CopyShape {
            table: TableReference::bare("t"),
            table_schema: schema,
            columns: vec![0, 1],
            format: CopyFormat {
                kind,
                delimiter: if kind == Kind::Csv { ',' } else { '\t' },
                null: if kind == Kind::Csv {
                    String::new()
                } else {
                    "\\N".into()
                },
                header,
                quote: '"',
                escape: '"',
            },
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3_000),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// COPY data of any bytes, weighted to its delimiters, quotes and escapes: rows or a
        /// clear error, never a panic; the complete-lines split never overruns.
        #[test]
        fn copy_parser_takes_any_bytes(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(b"\n\t,\"\\.N0123".to_vec()),
                ],
                0..512,
            ),
            csv in proptest::prelude::any::<bool>(),
            header in proptest::prelude::any::<bool>(),
        ) {
            let shape = shape(if csv { Kind::Csv } else { Kind::Text }, header);
            let end = complete_lines(&shape.format, &data);
            proptest::prop_assert!(end <= data.len());
            let _ = parse_chunk(&shape, &data[..end], 0, header);
        }
    }

    fn rows(kind: Kind, data: &str, header: bool) -> Result<Vec<Vec<Option<String>>>, String> {
        let shape = shape(kind, header);
        parse_rows(&shape.format, 2, data.as_bytes(), 0, header).map(|(rows, _, _)| rows)
    }

    #[test]
    fn text_format_nulls_and_escapes() {
        let parsed = rows(Kind::Text, "1\ta\\tb\n\\N\tx\\\\y\n2\t\\N\n\\.\n", false).unwrap();
        assert_eq!(
            parsed,
            vec![
                vec![Some("1".to_string()), Some("a\tb".to_string())],
                vec![None, Some("x\\y".to_string())],
                vec![Some("2".to_string()), None],
            ]
        );
        let error = rows(Kind::Text, "1\n", false).unwrap_err();
        assert!(
            error.contains("line 1: expected 2 columns, found 1"),
            "{error}"
        );
    }

    #[test]
    fn csv_format_quotes_header_and_nulls() {
        let parsed = rows(Kind::Csv, "a,b\n1,\"x, \"\"y\"\"\"\n,z\n", true).unwrap();
        assert_eq!(
            parsed,
            vec![
                vec![Some("1".to_string()), Some("x, \"y\"".to_string())],
                vec![None, Some("z".to_string())],
            ]
        );
    }

    #[test]
    fn chunks_end_at_whole_lines_and_count_them() {
        let csv = shape(Kind::Csv, false).format;
        // A newline inside a quoted field does not end a line.
        let data = b"1,\"two\nlines\"\n2,x\n3,\"open\nfield";
        assert_eq!(complete_lines(&csv, data), 18);
        let text = shape(Kind::Text, false).format;
        assert_eq!(complete_lines(&text, b"1\ta\n2\tb\n3\t"), 8);
        assert_eq!(complete_lines(&text, b"1\ta"), 0);

        // Line numbers run on across chunks; a NULL in a NOT NULL column names its line.
        let shape = shape(Kind::Text, false);
        let (batch, lines, ended) = parse_chunk(&shape, b"1\ta\n2\tb\n", 0, false).unwrap();
        assert_eq!((batch.num_rows(), lines, ended), (2, 2, false));
        let error = parse_chunk(&shape, b"3\tc\n4\t\\N\n", 2, false).unwrap_err();
        assert!(
            error.to_string().contains("column b") && error.to_string().contains("line 4"),
            "{error}"
        );
        let error = parse_chunk(&shape, b"5\tc\nx\td\n", 4, false).unwrap_err();
        assert!(
            error.to_string().contains("column a") && error.to_string().contains("lines 5-6"),
            "{error}"
        );
        // The end marker ends the data.
        let (batch, _, ended) = parse_chunk(&shape, b"5\tc\n\\.\n", 4, false).unwrap();
        assert_eq!((batch.num_rows(), ended), (1, true));
    }
}
