//! PostgreSQL column types that tenure stores as text and marks in the column's Arrow field
//! metadata ([`PG_TYPE_KEY`]), which the Delta schema keeps: `json` and `jsonb` (see
//! [`super::json`]) and `varchar(n)`, whose n storage checks values against
//! ([`check_length`]) and the server describes as the type modifier.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;

use super::sqlstate::SqlState;

/// Field metadata naming the PostgreSQL type of a text column (`json`, `jsonb`,
/// `varchar(20)`).
pub const PG_TYPE_KEY: &str = "tenure.pg_type";

/// A nullable text field marked as PostgreSQL type `pg_type`.
fn marked_text(pg_type: &str) -> FieldRef {
    Arc::new(
        Field::new("", DataType::Utf8, true).with_metadata(
            [(PG_TYPE_KEY.to_string(), pg_type.to_string())]
                .into_iter()
                .collect(),
        ),
    )
}

/// Column types `json`, `jsonb` and `varchar(n)`; every other type as datafusion-pg-catalog
/// plans it.
#[derive(Debug, Default)]
pub struct PgTypes(datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner);

impl TypePlanner for PgTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        match sql_type {
            SqlType::JSON => Ok(Some(marked_text("json"))),
            SqlType::JSONB => Ok(Some(marked_text("jsonb"))),
            other => match varchar_length(other) {
                // PostgreSQL's bounds, which also keep n + 4 (the type modifier) an int4.
                Some(0) => {
                    datafusion::common::plan_err!("length for type varchar must be at least 1")
                }
                Some(length) if length > MAX_VARCHAR_LENGTH => datafusion::common::plan_err!(
                    "length for type varchar cannot exceed {MAX_VARCHAR_LENGTH}"
                ),
                Some(length) => Ok(Some(marked_text(&format!("varchar({length})")))),
                None => self.0.plan_type_field(other),
            },
        }
    }
}

/// PostgreSQL's largest n of `varchar(n)`.
const MAX_VARCHAR_LENGTH: u64 = 10_485_760;

/// n of `varchar(n)` (`character varying(n)`).
pub fn varchar_length(sql_type: &SqlType) -> Option<u64> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    match sql_type {
        SqlType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
        | SqlType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
        | SqlType::CharVarying(Some(CharacterLength::IntegerLength { length, .. })) => {
            Some(*length)
        }
        _ => None,
    }
}

/// The PostgreSQL type, with its type modifier, of a field whose Arrow type does not tell
/// it: `json`, `jsonb` and `varchar(n)` (n + 4, PostgreSQL's modifier) from its mark, and
/// bigint for DataFusion's unsigned counts. The RowDescription and pg_attribute (of
/// temporary tables) use it.
pub fn postgres_type(field: &Field) -> Option<(postgres_types::Type, i32)> {
    use postgres_types::Type;
    if let Some(length) = declared_length(field) {
        return Some((
            Type::VARCHAR,
            i32::try_from(length).map_or(-1, |n| n.saturating_add(4)),
        ));
    }
    match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("json") => Some((Type::JSON, -1)),
        Some("jsonb") => Some((Type::JSONB, -1)),
        _ if *field.data_type() == DataType::UInt64 => Some((Type::INT8, -1)),
        _ => None,
    }
}

/// n of a `varchar(n)` column's field.
pub fn declared_length(field: &Field) -> Option<usize> {
    field
        .metadata()
        .get(PG_TYPE_KEY)?
        .strip_prefix("varchar(")?
        .strip_suffix(')')?
        .parse()
        .ok()
}

/// A `varchar(n)` column's values, each checked against n (22001 otherwise, as in
/// PostgreSQL); `column` names it in the error.
pub fn check_length(array: &ArrayRef, length: usize, column: &str) -> crate::error::Result<()> {
    let texts = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    for text in texts.as_string::<i32>().iter().flatten() {
        if text.chars().count() > length {
            return Err(crate::error::Error::state(
                SqlState::StringDataRightTruncation,
                format!("value too long for type character varying({length}) in column {column}"),
            ));
        }
    }
    Ok(())
}
