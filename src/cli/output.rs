//! Printing results: aligned tables for people, CSV and JSON for programs.
//!
//! Every value is printed in PostgreSQL's text form, the one the server sends psql (through
//! the same encoder, `server::encode`): floats as `float8out` writes them, numerics with their
//! scale, booleans as `t` / `f`, lists as `{1,2}`, records as `(a,b)`, time stamps without
//! trailing fraction zeros. Tables are laid out as psql's aligned format lays them out.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::ValueEnum;
use pgwire::api::results::FieldFormat;
use pgwire::types::format::FormatOptions;

use crate::error::{Error, Result};

/// How `tenure sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table with a row count, like psql.
    Table,
    /// CSV with a header row, as PostgreSQL's `COPY ... (FORMAT csv, HEADER)` writes it.
    Csv,
    /// One JSON array of objects per statement; NULL is null, NaN and infinities are strings.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Format as ValueEnum>::from_str(s, true)
    }
}

/// Writes `batches` (all of one schema) to `out` in `format`.
pub fn print_batches(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(());
    };
    match format {
        Format::Table => table(out, &schema, batches),
        Format::Csv => csv(out, &schema, batches),
        Format::Json => json(out, batches),
    }
}

/// The PostgreSQL text form of every value of `array` (`None` for NULL).
fn texts(array: &ArrayRef, field: &Field) -> Result<Vec<Option<String>>> {
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let batch = RecordBatch::try_new(schema.clone(), vec![array.clone()])?;
    Ok(rows_as_text(&batch)?
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect())
}

/// Every row of `batch` as PostgreSQL text values, through the server's encoder.
fn rows_as_text(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>> {
    let fields = crate::server::encode::pg_fields(
        &batch.schema(),
        &pgwire::api::portal::Format::UnifiedText,
        Some(Arc::new(FormatOptions::default())),
    )
    .map_err(|e| Error::invalid(format!("cannot print this result: {e}")))?;
    debug_assert!(fields.iter().all(|f| f.format() == FieldFormat::Text));
    let rows = crate::server::encode::data_rows(&fields, batch)
        .map_err(|e| Error::invalid(format!("cannot print this result: {e}")))?;
    Ok(rows
        .iter()
        .map(|row| {
            // A DataRow's values: a 4-byte length (-1 for NULL), then that many bytes.
            let mut data: &[u8] = &row.data;
            (0..row.field_count)
                .map(|_| {
                    let length = i32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                    data = &data[4..];
                    (length >= 0).then(|| {
                        let (value, rest) = data.split_at(length as usize);
                        data = rest;
                        String::from_utf8_lossy(value).into_owned()
                    })
                })
                .collect()
        })
        .collect())
}

fn all_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(rows_as_text(batch)?);
    }
    Ok(rows)
}

fn is_number(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

/// psql's aligned format: centred headers, numbers right-aligned, `+` where a value goes on
/// to the next line, NULL as nothing, the row count below.
fn table(out: &mut dyn Write, schema: &Schema, batches: &[RecordBatch]) -> Result<()> {
    let rows = all_rows(batches)?;
    let count = rows.len();
    let footer = format!("({count} row{})", if count == 1 { "" } else { "s" });
    if schema.fields().is_empty() {
        writeln!(out, "--\n{footer}\n")?;
        return Ok(());
    }
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| is_number(f.data_type()))
        .collect();
    let cells: Vec<Vec<Vec<&str>>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| v.as_deref().unwrap_or("").split('\n').collect())
                .collect()
        })
        .collect();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| {
            cells
                .iter()
                .flat_map(|row| row[c].iter().map(|line| width(line)))
                .chain([width(field.name())])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let header: Vec<String> = schema
        .fields()
        .iter()
        .zip(&widths)
        .map(|(field, &w)| {
            let pad = w - width(field.name());
            format!(
                "{}{}{}",
                " ".repeat(pad / 2),
                field.name(),
                " ".repeat(pad - pad / 2)
            )
        })
        .collect();
    let line = |out: &mut dyn Write, parts: Vec<String>, ends: Vec<char>| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (part, end)) in parts.iter().zip(ends).enumerate() {
            if i > 0 {
                text.push('|');
            }
            text.push(' ');
            text.push_str(part);
            text.push(end);
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header, vec![' '; widths.len()])?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    )?;
    for row in &cells {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..height {
            let mut parts = Vec::with_capacity(row.len());
            let mut ends = Vec::with_capacity(row.len());
            for (c, cell) in row.iter().enumerate() {
                let text = cell.get(k).copied().unwrap_or("");
                let pad = " ".repeat(widths[c] - width(text));
                parts.push(if numeric[c] {
                    format!("{pad}{text}")
                } else {
                    format!("{text}{pad}")
                });
                ends.push(if k + 1 < cell.len() { '+' } else { ' ' });
            }
            line(out, parts, ends)?;
        }
    }
    writeln!(out, "{footer}\n")?;
    Ok(())
}

/// CSV as `COPY ... TO STDOUT (FORMAT csv, HEADER)` writes it: NULL as nothing, an empty
/// text as `""`, values with a comma, quote or line break quoted.
fn csv(out: &mut dyn Write, schema: &Schema, batches: &[RecordBatch]) -> Result<()> {
    let quote = |value: &str| {
        if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value.to_string()
        }
    };
    let header: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
    writeln!(out, "{}", header.join(","))?;
    for row in all_rows(batches)? {
        let line: Vec<String> = row
            .iter()
            .map(|v| v.as_deref().map(quote).unwrap_or_default())
            .collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

/// One JSON array of objects, every key present: NULL as null, numbers as numbers (NaN and
/// the infinities as the strings PostgreSQL's `to_json` gives), lists as arrays, records as
/// objects, everything else as its PostgreSQL text.
fn json(out: &mut dyn Write, batches: &[RecordBatch]) -> Result<()> {
    let mut objects = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let columns: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(array, field)| json_values(array, field))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let members: Vec<String> = schema
                .fields()
                .iter()
                .zip(&columns)
                .map(|(field, values)| format!("{}:{}", json_string(field.name()), values[row]))
                .collect();
            objects.push(format!("{{{}}}", members.join(",")));
        }
    }
    writeln!(out, "[{}]", objects.join(","))?;
    Ok(())
}

/// The JSON text of every value of `array`.
fn json_values(array: &ArrayRef, field: &Field) -> Result<Vec<String>> {
    let nested = |row: usize, values: Vec<String>| (!array.is_null(row)).then_some(values);
    let values = match array.data_type() {
        DataType::List(child) | DataType::LargeList(child) | DataType::FixedSizeList(child, _) => {
            (0..array.len())
                .map(|row| {
                    let items = match array.data_type() {
                        DataType::List(_) => array.as_list::<i32>().value(row),
                        DataType::LargeList(_) => array.as_list::<i64>().value(row),
                        _ => array.as_fixed_size_list().value(row),
                    };
                    let items = json_values(&items, child)?;
                    Ok(nested(row, items).map(|items| format!("[{}]", items.join(","))))
                })
                .collect::<Result<Vec<_>>>()?
        }
        DataType::Struct(children) => {
            let record = array.as_struct();
            let columns: Vec<Vec<String>> = record
                .columns()
                .iter()
                .zip(children)
                .map(|(column, child)| json_values(column, child))
                .collect::<Result<_>>()?;
            (0..array.len())
                .map(|row| {
                    let members = children
                        .iter()
                        .zip(&columns)
                        .map(|(child, values)| {
                            format!("{}:{}", json_string(child.name()), values[row])
                        })
                        .collect();
                    nested(row, members).map(|m| format!("{{{}}}", m.join(",")))
                })
                .collect()
        }
        data_type => {
            let number = is_number(data_type);
            let boolean = *data_type == DataType::Boolean;
            texts(array, field)?
                .into_iter()
                .map(|text| {
                    text.map(|text| match text.as_str() {
                        "NaN" | "Infinity" | "-Infinity" if number => json_string(&text),
                        "t" if boolean => "true".to_string(),
                        "f" if boolean => "false".to_string(),
                        _ if number => text,
                        _ => json_string(&text),
                    })
                })
                .collect()
        }
    };
    Ok(values
        .into_iter()
        .map(|v| v.unwrap_or_else(|| "null".to_string()))
        .collect())
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, ListArray, StringArray, StructArray};
    use arrow::datatypes::Int64Type;

    use super::*;

    fn batch() -> RecordBatch {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
        ]);
        let record = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["x y", "z"])) as ArrayRef,
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("items", list.data_type().clone(), true),
            Field::new("pair", record.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 22])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
                Arc::new(Float64Array::from(vec![f64::NAN, 0.5])),
                Arc::new(list),
                Arc::new(record),
            ],
        )
        .unwrap()
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        print_batches(&mut out, &[batch()], format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_are_laid_out_as_psql_does() {
        assert_eq!(
            render(Format::Table),
            " id | name | score | items |   pair\n\
             ----+------+-------+-------+-----------\n  \
             1 | a,b  |   NaN | {1,2} | (1,\"x y\")\n \
             22 |      |   0.5 |       | (2,z)\n\
             (2 rows)\n\n"
        );
    }

    #[test]
    fn csv_and_json_keep_every_value() {
        assert_eq!(
            render(Format::Csv),
            "id,name,score,items,pair\n1,\"a,b\",NaN,\"{1,2}\",\"(1,\"\"x y\"\")\"\n22,,0.5,,\"(2,z)\"\n"
        );
        assert_eq!(
            render(Format::Json),
            "[{\"id\":1,\"name\":\"a,b\",\"score\":\"NaN\",\"items\":[1,2],\"pair\":{\"a\":1,\"b\":\"x y\"}},\
             {\"id\":22,\"name\":null,\"score\":0.5,\"items\":null,\"pair\":{\"a\":2,\"b\":\"z\"}}]\n"
        );
    }
}
