//! Printing results: aligned tables for people, CSV and JSON for programs.

use std::io::Write;

use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;
use clap::ValueEnum;

use crate::error::Result;

/// How `tenure sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned table with a row count, like psql.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array of objects per statement.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Format as ValueEnum>::from_str(s, true)
    }
}

/// Writes `batches` to `out` in `format`.
pub fn print_batches(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    match format {
        Format::Table => {
            let options = FormatOptions::default().with_null("NULL");
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if let Some(first) = batches.first()
                && first.num_columns() > 0
            {
                let table =
                    arrow::util::pretty::pretty_format_batches_with_options(batches, &options)?;
                writeln!(out, "{table}")?;
            }
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                write!(out, "[]")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
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
    fn formats_render_rows() {
        let table = render(Format::Table);
        assert!(table.contains("| 1  | a,b  |"), "{table}");
        assert!(
            table.contains("NULL") && table.ends_with("(2 rows)\n"),
            "{table}"
        );
        assert_eq!(render(Format::Csv), "id,name\n1,\"a,b\"\n2,\n");
        assert_eq!(
            render(Format::Json),
            "[{\"id\":1,\"name\":\"a,b\"},{\"id\":2}]\n"
        );
    }
}
