//! `COPY ... TO STDOUT` and `COPY ... FROM STDIN`: bulk transfer through the client
//! connection (psql's `\copy`, psycopg's `cursor.copy()`), in PostgreSQL's text and CSV
//! formats (and binary out).
//!
//! Out: the table or query runs like any query; each row is encoded by arrow-pg into one
//! CopyData message. In: the client's CopyData is collected until CopyDone, parsed into
//! text columns, cast to the table's column types (a value that does not fit names its
//! column and line) and inserted in one commit, like `INSERT ... SELECT`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col, lit};
use datafusion::scalar::ScalarValue;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement as SqlStatement,
};
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use super::sqlstate;
use crate::engine::{Engine, Output};
use crate::error::Error;

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
    sqlstate::error(sqlstate::FEATURE_NOT_SUPPORTED, message)
}

/// Reads a parsed `COPY` statement.
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
                            "22023",
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

/// A `COPY ... FROM STDIN` waiting for the client's data.
pub struct PendingCopyIn {
    pub table: TableReference,
    /// The table's full schema and the positions of the columns the data holds.
    pub table_schema: SchemaRef,
    pub columns: Vec<usize>,
    pub format: CopyFormat,
    pub data: Vec<u8>,
}

/// Parses the collected data into rows of text fields (`None` for NULL).
fn parse_rows(pending: &PendingCopyIn) -> Result<Vec<Vec<Option<String>>>, String> {
    let width = pending.columns.len();
    let text = std::str::from_utf8(&pending.data)
        .map_err(|e| format!("invalid UTF-8 in COPY data: {e}"))?;
    let mut rows = Vec::new();
    match pending.format.kind {
        Kind::Text => {
            for (number, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line == "\\." {
                    break;
                }
                if line.is_empty() && number + 1 == text.split('\n').count() {
                    continue;
                }
                let fields: Vec<Option<String>> = line
                    .split(pending.format.delimiter)
                    .map(|field| (field != pending.format.null).then(|| unescape_text(field)))
                    .collect();
                if fields.len() != width {
                    return Err(format!(
                        "line {}: expected {width} columns, found {}",
                        number + 1,
                        fields.len()
                    ));
                }
                rows.push(fields);
            }
        }
        Kind::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(pending.format.header)
                .delimiter(pending.format.delimiter as u8)
                .quote(pending.format.quote as u8)
                .escape(
                    (pending.format.escape != pending.format.quote)
                        .then_some(pending.format.escape as u8),
                )
                .double_quote(pending.format.escape == pending.format.quote)
                .flexible(true)
                .from_reader(text.as_bytes());
            for (number, record) in reader.records().enumerate() {
                let record = record.map_err(|e| format!("CSV: {e}"))?;
                if record.len() == 1 && record.get(0) == Some("\\.") {
                    break;
                }
                if record.len() != width {
                    return Err(format!(
                        "line {}: expected {width} columns, found {}",
                        number + 1 + usize::from(pending.format.header),
                        record.len()
                    ));
                }
                // PostgreSQL's CSV NULL is an unquoted empty field; the csv reader does not
                // tell quoted from unquoted, so an empty field is NULL unless NULL is set.
                rows.push(
                    record
                        .iter()
                        .map(|f| (f != pending.format.null).then(|| f.to_string()))
                        .collect(),
                );
            }
        }
        Kind::Binary => return Err("binary COPY FROM is not supported".into()),
    }
    Ok(rows)
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

/// Inserts the collected rows into the table in one commit; returns how many.
pub async fn finish(
    engine: &Engine,
    ctx: &datafusion::prelude::SessionContext,
    pending: PendingCopyIn,
) -> Result<u64, Error> {
    let rows =
        parse_rows(&pending).map_err(|e| Error::invalid(format!("COPY {}: {e}", pending.table)))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(pending.columns.len());
    let mut fields = Vec::with_capacity(pending.columns.len());
    for (position, &column) in pending.columns.iter().enumerate() {
        let field = pending.table_schema.field(column);
        let mut builder = StringBuilder::new();
        for row in &rows {
            builder.append_option(row[position].as_deref());
        }
        let text: ArrayRef = Arc::new(builder.finish());
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let typed = cast_with_options(&text, field.data_type(), &options).map_err(|e| {
            Error::invalid(format!(
                "invalid value for column {} of table {}: {e}",
                field.name(),
                pending.table
            ))
        })?;
        arrays.push(typed);
        fields.push(Field::new(field.name(), field.data_type().clone(), true));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let input = MemTable::try_new(schema, vec![vec![batch]])?;
    let scan = LogicalPlanBuilder::scan("copy_input", provider_as_source(Arc::new(input)), None)?
        .build()?;
    // Every column of the table: its default, or NULL, where the COPY names no data for it.
    let target = ctx.table_provider(pending.table.clone()).await?;
    let projection: Vec<Expr> = pending
        .table_schema
        .fields()
        .iter()
        .enumerate()
        .map(
            |(i, field)| match pending.columns.iter().position(|&c| c == i) {
                Some(_) => col(datafusion::common::Column::new_unqualified(field.name())),
                None => cast(
                    target
                        .get_column_default(field.name())
                        .cloned()
                        .unwrap_or(lit(ScalarValue::Null)),
                    field.data_type().clone(),
                )
                .alias(field.name()),
            },
        )
        .collect();
    let projected = LogicalPlanBuilder::from(scan)
        .project(projection)?
        .build()?;
    let plan = LogicalPlanBuilder::insert_into(
        projected,
        pending.table.clone(),
        provider_as_source(target),
        InsertOp::Append,
    )?
    .build()?;
    match engine.execute_plan_in(ctx, plan).await? {
        Output::Command { rows, .. } => Ok(rows.unwrap_or(0)),
        Output::Rows(_) => Ok(0),
    }
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

    fn pending(kind: Kind, data: &str, header: bool) -> PendingCopyIn {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", datafusion::arrow::datatypes::DataType::Int64, true),
            Field::new("b", datafusion::arrow::datatypes::DataType::Utf8, true),
        ]));
        PendingCopyIn {
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
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn text_format_nulls_and_escapes() {
        let rows = parse_rows(&pending(
            Kind::Text,
            "1\ta\\tb\n\\N\tx\\\\y\n2\t\\N\n\\.\n",
            false,
        ))
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".to_string()), Some("a\tb".to_string())],
                vec![None, Some("x\\y".to_string())],
                vec![Some("2".to_string()), None],
            ]
        );
        let error = parse_rows(&pending(Kind::Text, "1\n", false)).unwrap_err();
        assert!(
            error.contains("line 1: expected 2 columns, found 1"),
            "{error}"
        );
    }

    #[test]
    fn csv_format_quotes_header_and_nulls() {
        let rows = parse_rows(&pending(Kind::Csv, "a,b\n1,\"x, \"\"y\"\"\"\n,z\n", true)).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".to_string()), Some("x, \"y\"".to_string())],
                vec![None, Some("z".to_string())],
            ]
        );
    }
}

/// Receives `COPY ... FROM STDIN` data and finishes the copy at CopyDone.
pub struct CopyInHandler {
    pub(super) shared: Arc<super::Shared>,
}

#[async_trait::async_trait]
impl CopyHandler for CopyInHandler {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = super::query::session(client)?;
        let mut pending = session.copy_in();
        match pending.as_mut() {
            Some(pending) => {
                pending.data.extend_from_slice(&data.data);
                Ok(())
            }
            None => Err(super::startup::user_error(sqlstate::error(
                sqlstate::PROTOCOL_VIOLATION,
                "CopyData without a COPY FROM STDIN in progress",
            ))),
        }
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = super::query::session(client)?;
        let Some(pending) = session.copy_in().take() else {
            return Err(super::startup::user_error(sqlstate::error(
                sqlstate::PROTOCOL_VIOLATION,
                "CopyDone without a COPY FROM STDIN in progress",
            )));
        };
        let engine = self.shared.engine.clone();
        let ctx = session.ctx();
        // Parsing and writing are CPU and disk work: on the execution runtime.
        let rows = self
            .shared
            .cpu
            .spawn(async move { finish(&engine, &ctx, pending).await })
            .await
            .map_err(|e| {
                super::startup::user_error(sqlstate::error("XX000", format!("COPY failed: {e}")))
            })?
            .map_err(super::query::engine_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .feed(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(session) = super::query::session(client) {
            session.copy_in().take();
        }
        super::startup::user_error(sqlstate::error(
            sqlstate::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
