//! PostgreSQL's `json` and `jsonb`: text that is valid JSON, with their operators and the
//! common functions.
//!
//! A JSON value is a UTF-8 string whose Arrow field carries [`PG_TYPE_KEY`] = `json` or
//! `jsonb`, so tables store it as text (Delta and Parquet readers see a string column) and
//! the wire protocol describes it as json (114) or jsonb (3802). `jsonb` text is
//! normalised as PostgreSQL prints it: keys sorted by length then bytes, the last of a
//! duplicated key kept, `", "` and `": "` between items; `json` is kept compact.
//!
//! - Casts `x::json`, `x::jsonb` become [`PARSE_JSON`] / [`PARSE_JSONB`] (see
//!   [`super::rewrite::rewrite_json_syntax`]), which check the text (22P02 `invalid input syntax for type
//!   json` otherwise). A cast whose target field carries metadata would disagree with its
//!   physical plan (see datafusion-pg-catalog's oid type planner), a function's does not.
//! - `->`, `->>`, `#>`, `#>>`, `@>`, `<@` and `?` are planned by [`JsonOperators`].
//! - `json_agg(x)` is `array_agg(x)` made a JSON array; `json_array_elements(x)` and
//!   `json_object_keys(x)` are the `unnest` of its elements or keys, in the select list.
//! - Column types `json` and `jsonb` come from [`PgTypes`] (see [`super::types`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, GenericListArray, Int32Builder, ListBuilder,
    OffsetSizeTrait, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DFSchema, DataFusionError, Result, plan_err};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::BinaryOperator;
use serde_json::Value;

use super::sqlstate::SqlState;

pub use super::types::PG_TYPE_KEY;
use super::types::PgTypes;

/// `x::json`, after [`rewrite_json_syntax`].
pub const PARSE_JSON: &str = "tenure_json";
/// `x::jsonb`, after [`rewrite_json_syntax`].
pub const PARSE_JSONB: &str = "tenure_jsonb";

/// `json` or `jsonb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonKind {
    Json,
    Jsonb,
}

impl JsonKind {
    pub fn name(self) -> &'static str {
        match self {
            JsonKind::Json => "json",
            JsonKind::Jsonb => "jsonb",
        }
    }

    /// The kind a field's metadata gives it, if any.
    pub fn of(field: &Field) -> Option<JsonKind> {
        match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
            Some("json") => Some(JsonKind::Json),
            Some("jsonb") => Some(JsonKind::Jsonb),
            _ => None,
        }
    }

    /// A text field of this kind.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        Field::new(name, DataType::Utf8, nullable).with_metadata(
            [(PG_TYPE_KEY.to_string(), self.name().to_string())]
                .into_iter()
                .collect(),
        )
    }

    /// `value` as this kind prints it.
    fn text(self, value: &Value) -> String {
        match self {
            JsonKind::Json => value.to_string(),
            JsonKind::Jsonb => {
                let mut out = String::new();
                write_jsonb(value, &mut out);
                out
            }
        }
    }
}

/// What json_build_object, json_build_array and json_agg print: PostgreSQL separates their
/// own items with `", "` (and an object's keys with `" : "`) and embeds each value compactly;
/// jsonb prints as jsonb does.
fn constructed(value: &Value, kind: JsonKind) -> String {
    if kind == JsonKind::Jsonb {
        return kind.text(value);
    }
    match value {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} : {v}", Value::String(k.clone())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// PostgreSQL's jsonb output: object keys by length, then bytes.
fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_jsonb(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Parses JSON text, failing as PostgreSQL does.
pub fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        DataFusionError::External(Box::new(crate::error::Error::state(
            SqlState::InvalidTextRepresentation,
            // PostgreSQL says json for jsonb too.
            format!(
                "invalid input syntax for type json: {e} in \"{}\"",
                text.chars().take(64).collect::<String>()
            ),
        )))
    })
}

/// A `kind` column's values as they are stored: each checked, jsonb's normalised (as
/// PostgreSQL stores jsonb); `column` names it in the error.
pub fn stored(array: &ArrayRef, kind: JsonKind, column: &str) -> crate::error::Result<ArrayRef> {
    let texts = texts(array)?;
    let texts = texts.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(texts.len(), texts.value_data().len());
    for text in texts {
        let Some(text) = text else {
            out.append_null();
            continue;
        };
        let value = parse(text).map_err(|e| {
            crate::error::Error::state(
                SqlState::InvalidTextRepresentation,
                format!("invalid value for column {column}: {}", inner_message(&e)),
            )
        })?;
        match kind {
            JsonKind::Json => out.append_value(text),
            JsonKind::Jsonb => out.append_value(kind.text(&value)),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn inner_message(e: &DataFusionError) -> String {
    match e {
        DataFusionError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// One JSON function; [`Op`] says which.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    name: &'static str,
    op: Op,
    signature: Signature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    /// `text::json`: checked (and for jsonb normalised).
    Parse(JsonKind),
    /// `json -> key` (a text key or an integer index, several for a path): JSON.
    Get,
    /// `json ->> key`: text.
    GetText,
    /// `json #> '{a,b}'`: JSON.
    Path,
    /// `json #>> '{a,b}'`: text.
    PathText,
    /// `jsonb @> jsonb`.
    Contains,
    /// `jsonb ? text`: a top-level key, or a string element of an array.
    Exists,
    BuildObject(JsonKind),
    BuildArray(JsonKind),
    /// `to_json(any)`.
    ToJson(JsonKind),
    /// A list (from `array_agg`) as a JSON array: `json_agg`.
    FromList(JsonKind),
    /// The elements of a JSON array as a list of JSON values (for `unnest`).
    Elements,
    /// The elements of a JSON array as a list of texts.
    ElementsText,
    /// The keys of a JSON object as a list of texts, in its text's order (for `unnest`).
    ObjectKeys,
    Typeof,
    ArrayLength,
}

/// `json_agg(x)`, after [`super::rewrite::rewrite_json_syntax`]: `array_agg(x)` as JSON.
pub const AGG: &str = "tenure_json_agg";
/// `jsonb_agg(x)`, likewise.
pub const AGG_B: &str = "tenure_jsonb_agg";
/// `json_array_elements(x)` is `unnest` of this.
pub const ELEMENTS: &str = "tenure_json_elements";
/// `json_array_elements_text(x)` is `unnest` of this.
pub const ELEMENTS_TEXT: &str = "tenure_json_elements_text";
/// `json_object_keys(x)` is `unnest` of this.
pub const OBJECT_KEYS: &str = "tenure_json_object_keys";

/// Every JSON function, by name.
fn functions() -> Vec<JsonFunction> {
    use JsonKind::{Json, Jsonb};
    let one = || Signature::any(1, Volatility::Immutable);
    let two = || Signature::any(2, Volatility::Immutable);
    let variadic = || {
        Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
            Volatility::Immutable,
        )
    };
    let path = || Signature::variadic_any(Volatility::Immutable);
    let f = |name, op, signature| JsonFunction {
        name,
        op,
        signature,
    };
    vec![
        f(PARSE_JSON, Op::Parse(Json), one()),
        f(PARSE_JSONB, Op::Parse(Jsonb), one()),
        f("json_extract_path", Op::Get, path()),
        f("jsonb_extract_path", Op::Get, path()),
        f("json_extract_path_text", Op::GetText, path()),
        f("jsonb_extract_path_text", Op::GetText, path()),
        // The operators' own names: a result column of one is `?column?` (pg::names).
        f("tenure_json_get", Op::Get, two()),
        f("tenure_json_get_text", Op::GetText, two()),
        f("tenure_jsonb_contains", Op::Contains, two()),
        f("tenure_jsonb_exists", Op::Exists, two()),
        f("tenure_json_path", Op::Path, two()),
        f("tenure_json_path_text", Op::PathText, two()),
        f("jsonb_contains", Op::Contains, two()),
        f("jsonb_exists", Op::Exists, two()),
        f("json_build_object", Op::BuildObject(Json), variadic()),
        f("jsonb_build_object", Op::BuildObject(Jsonb), variadic()),
        f("json_build_array", Op::BuildArray(Json), variadic()),
        f("jsonb_build_array", Op::BuildArray(Jsonb), variadic()),
        f("to_json", Op::ToJson(Json), one()),
        f("to_jsonb", Op::ToJson(Jsonb), one()),
        f(AGG, Op::FromList(Json), one()),
        f(AGG_B, Op::FromList(Jsonb), one()),
        f(ELEMENTS, Op::Elements, one()),
        f(ELEMENTS_TEXT, Op::ElementsText, one()),
        f(OBJECT_KEYS, Op::ObjectKeys, one()),
        f("json_typeof", Op::Typeof, one()),
        f("jsonb_typeof", Op::Typeof, one()),
        f("json_array_length", Op::ArrayLength, one()),
        f("jsonb_array_length", Op::ArrayLength, one()),
    ]
}

impl JsonFunction {
    /// The kind of an argument that is plain text: jsonb for the jsonb_ functions.
    fn default_kind(&self) -> JsonKind {
        if self.name.starts_with("jsonb") {
            JsonKind::Jsonb
        } else {
            JsonKind::Json
        }
    }
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("{} has its return field from its arguments", self.name)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = args
            .arg_fields
            .first()
            .map(|f| JsonKind::of(f).unwrap_or(self.default_kind()));
        let json = |kind: JsonKind| Arc::new(kind.field(self.name, true));
        let text = || Arc::new(Field::new(self.name, DataType::Utf8, true));
        Ok(match self.op {
            Op::Parse(kind)
            | Op::BuildObject(kind)
            | Op::BuildArray(kind)
            | Op::ToJson(kind)
            | Op::FromList(kind) => {
                if matches!(self.op, Op::BuildObject(_)) && args.arg_fields.len() % 2 == 1 {
                    return plan_err!(
                        "{}: argument list must have even number of elements",
                        self.name
                    );
                }
                json(kind)
            }
            Op::Get | Op::Path => json(input.unwrap_or(JsonKind::Json)),
            Op::GetText | Op::PathText | Op::Typeof => text(),
            Op::Contains | Op::Exists => Arc::new(Field::new(self.name, DataType::Boolean, true)),
            Op::ArrayLength => Arc::new(Field::new(self.name, DataType::Int32, true)),
            Op::Elements => Arc::new(Field::new_list(
                self.name,
                input.unwrap_or(JsonKind::Json).field("item", true),
                true,
            )),
            Op::ElementsText | Op::ObjectKeys => Arc::new(Field::new_list(
                self.name,
                Field::new("item", DataType::Utf8, true),
                true,
            )),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let kinds: Vec<Option<JsonKind>> =
            args.arg_fields.iter().map(|f| JsonKind::of(f)).collect();
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let input_kind = kinds
            .first()
            .copied()
            .flatten()
            .unwrap_or(self.default_kind());
        let out: ArrayRef = match self.op {
            Op::Parse(kind) => map_json(&arrays[0], |_, v| Ok(Some(kind.text(&v))))?,
            Op::Get | Op::GetText => {
                let keys: Vec<Keys> = arrays[1..].iter().map(Keys::of).collect::<Result<_>>()?;
                let text = self.op == Op::GetText;
                map_json(&arrays[0], |row, v| {
                    let mut at = Some(&v);
                    for key in &keys {
                        at = at.and_then(|value| key.get(value, row));
                    }
                    Ok(at.and_then(|found| output(found, input_kind, text)))
                })?
            }
            Op::Path | Op::PathText => {
                let paths = path_lists(&arrays[1])?;
                let text = self.op == Op::PathText;
                map_json(&arrays[0], |row, v| {
                    let Some(path) = &paths[row] else {
                        return Ok(None);
                    };
                    let mut at = Some(&v);
                    for step in path {
                        at = at.and_then(|value| match value {
                            Value::Object(map) => map.get(step),
                            Value::Array(items) => index(items, step.parse().ok()?),
                            _ => None,
                        });
                    }
                    Ok(at.and_then(|found| output(found, input_kind, text)))
                })?
            }
            Op::Contains | Op::Exists => {
                let left = texts(&arrays[0])?;
                let right = texts(&arrays[1])?;
                let (left, right) = (left.as_string::<i32>(), right.as_string::<i32>());
                // `props @> '{"page": "cart"}'`: a constant right side is parsed once.
                let constant = match (&args.args[1], self.op) {
                    (ColumnarValue::Scalar(_), Op::Contains) if !right.is_null(0) => {
                        Some(parse(right.value(0))?)
                    }
                    _ => None,
                };
                let mut out = BooleanBuilder::with_capacity(rows);
                for row in 0..rows {
                    if left.is_null(row) || right.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    let value = parse(left.value(row))?;
                    out.append_value(if self.op == Op::Contains {
                        match &constant {
                            Some(wanted) => contains(&value, wanted, true),
                            None => contains(&value, &parse(right.value(row))?, true),
                        }
                    } else {
                        exists(&value, right.value(row))
                    });
                }
                Arc::new(out.finish())
            }
            Op::BuildObject(kind) | Op::BuildArray(kind) => {
                let formatters = formatters(&arrays)?;
                let mut out = StringBuilder::new();
                for row in 0..rows {
                    let values = (0..arrays.len())
                        .map(|i| to_value(&arrays[i], kinds[i], &formatters[i], row))
                        .collect::<Result<Vec<_>>>()?;
                    if kind == JsonKind::Json && matches!(self.op, Op::BuildObject(_)) {
                        // json keeps its keys in order, duplicates too.
                        let mut items = Vec::new();
                        for pair in values.chunks(2) {
                            items.push(format!("{} : {}", object_key(&pair[0])?, pair[1]));
                        }
                        out.append_value(format!("{{{}}}", items.join(", ")));
                        continue;
                    }
                    let value = if matches!(self.op, Op::BuildArray(_)) {
                        Value::Array(values)
                    } else {
                        let mut object = serde_json::Map::new();
                        for pair in values.chunks(2) {
                            let Value::String(key) = object_key(&pair[0])? else {
                                unreachable!("object_key gives a string");
                            };
                            object.insert(key, pair[1].clone());
                        }
                        Value::Object(object)
                    };
                    out.append_value(constructed(&value, kind));
                }
                Arc::new(out.finish())
            }
            Op::ToJson(kind) | Op::FromList(kind) => {
                let formatters = formatters(&arrays)?;
                let mut out = StringBuilder::new();
                for row in 0..rows {
                    if arrays[0].is_null(row) {
                        out.append_null();
                    } else {
                        let value = to_value(&arrays[0], kinds[0], &formatters[0], row)?;
                        out.append_value(match self.op {
                            Op::FromList(_) => constructed(&value, kind),
                            _ => kind.text(&value),
                        });
                    }
                }
                Arc::new(out.finish())
            }
            Op::Elements | Op::ElementsText => {
                let text = self.op == Op::ElementsText;
                let texts = texts(&arrays[0])?;
                let texts = texts.as_string::<i32>();
                let item = if text {
                    Field::new("item", DataType::Utf8, true)
                } else {
                    input_kind.field("item", true)
                };
                let mut out = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(item));
                for row in 0..rows {
                    if texts.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    match parse(texts.value(row))? {
                        Value::Array(items) => {
                            for item in &items {
                                match output(item, input_kind, text) {
                                    Some(s) => out.values().append_value(s),
                                    None => out.values().append_null(),
                                }
                            }
                            out.append(true);
                        }
                        _ => return Err(value_error("cannot extract elements from a non-array")),
                    }
                }
                Arc::new(out.finish())
            }
            Op::ObjectKeys => {
                let texts = texts(&arrays[0])?;
                let texts = texts.as_string::<i32>();
                let mut out = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
                for row in 0..rows {
                    if texts.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    for key in object_keys(texts.value(row))? {
                        out.values().append_value(key);
                    }
                    out.append(true);
                }
                Arc::new(out.finish())
            }
            Op::Typeof => map_json(&arrays[0], |_, v| {
                Ok(Some(
                    match v {
                        Value::Object(_) => "object",
                        Value::Array(_) => "array",
                        Value::String(_) => "string",
                        Value::Number(_) => "number",
                        Value::Bool(_) => "boolean",
                        Value::Null => "null",
                    }
                    .to_string(),
                ))
            })?,
            Op::ArrayLength => {
                let texts = texts(&arrays[0])?;
                let texts = texts.as_string::<i32>();
                let mut out = Int32Builder::with_capacity(rows);
                for row in 0..rows {
                    if texts.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    match parse(texts.value(row))? {
                        Value::Array(items) => out.append_value(items.len() as i32),
                        _ => return Err(value_error("cannot get array length of a non-array")),
                    }
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The keys of the JSON object `text` in the order written, a duplicated one as often as it
/// is written (json_object_keys; a jsonb's text has them in PostgreSQL's jsonb order
/// already). serde_json's maps sort their keys, so the text is read key by key.
fn object_keys(text: &str) -> Result<Vec<String>> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<M: MapAccess<'de>>(
            self,
            mut map: M,
        ) -> std::result::Result<Self::Value, M::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(Some(keys))
        }
        fn visit_seq<S: serde::de::SeqAccess<'de>>(
            self,
            mut seq: S,
        ) -> std::result::Result<Self::Value, S::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let keys = reader
        .deserialize_any(Keys)
        .and_then(|keys| reader.end().map(|()| keys));
    match keys {
        Ok(Some(keys)) => Ok(keys),
        Ok(None) => Err(value_error(match parse(text)? {
            Value::Array(_) => "cannot call json_object_keys on an array",
            _ => "cannot call json_object_keys on a scalar",
        })),
        // The text is not JSON: parse says so as everywhere else.
        Err(_) => parse(text).map(|_| Vec::new()),
    }
}

/// An object key from a value, as json_build_object takes it: text as is, any other value
/// in its JSON text, NULL refused.
fn object_key(value: &Value) -> Result<Value> {
    match value {
        Value::Null => Err(value_error("null value not allowed for object key")),
        Value::String(s) => Ok(Value::String(s.clone())),
        other => Ok(Value::String(other.to_string())),
    }
}

fn value_error(message: &str) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::Error::state(
        SqlState::InvalidParameterValue,
        message,
    )))
}

fn texts(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(datafusion::arrow::compute::cast(array, &DataType::Utf8)?)
}

fn formatters(arrays: &[ArrayRef]) -> Result<Vec<ArrayFormatter<'_>>> {
    static OPTIONS: std::sync::LazyLock<FormatOptions<'static>> =
        std::sync::LazyLock::new(FormatOptions::default);
    Ok(arrays
        .iter()
        .map(|a| ArrayFormatter::try_new(a.as_ref(), &OPTIONS))
        .collect::<std::result::Result<_, _>>()?)
}

/// Each row's JSON text parsed and mapped, with its row number, to an output text (None:
/// NULL); a NULL stays NULL.
fn map_json(
    array: &ArrayRef,
    mut f: impl FnMut(usize, Value) -> Result<Option<String>>,
) -> Result<ArrayRef> {
    let texts = texts(array)?;
    let texts = texts.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(texts.len(), texts.value_data().len());
    for (row, text) in texts.iter().enumerate() {
        match text.map(|text| f(row, parse(text)?)).transpose()?.flatten() {
            Some(s) => out.append_value(s),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// What `->` / `#>` (JSON) or `->>` / `#>>` (text: a string unquoted, JSON null as NULL)
/// give for `value`.
fn output(value: &Value, kind: JsonKind, text: bool) -> Option<String> {
    match (value, text) {
        (Value::Null, true) => None,
        (Value::String(s), true) => Some(s.clone()),
        (other, _) => Some(kind.text(other)),
    }
}

/// An array element by PostgreSQL's index: from 0, negative from the end.
fn index(items: &[Value], at: i64) -> Option<&Value> {
    let at = if at < 0 { items.len() as i64 + at } else { at };
    usize::try_from(at).ok().and_then(|i| items.get(i))
}

/// The keys of one `->` step, row by row: texts (object keys) or integers (array indexes).
enum Keys {
    Text(ArrayRef),
    Index(ArrayRef),
}

impl Keys {
    fn of(array: &ArrayRef) -> Result<Keys> {
        if array.data_type().is_integer() {
            Ok(Keys::Index(datafusion::arrow::compute::cast(
                array,
                &DataType::Int64,
            )?))
        } else {
            Ok(Keys::Text(texts(array)?))
        }
    }

    fn get<'v>(&self, value: &'v Value, row: usize) -> Option<&'v Value> {
        match self {
            Keys::Text(keys) => {
                let keys = keys.as_string::<i32>();
                if keys.is_null(row) {
                    return None;
                }
                match value {
                    Value::Object(map) => map.get(keys.value(row)),
                    _ => None,
                }
            }
            Keys::Index(indexes) => {
                let indexes = indexes.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                if indexes.is_null(row) {
                    return None;
                }
                match value {
                    Value::Array(items) => index(items, indexes.value(row)),
                    _ => None,
                }
            }
        }
    }
}

/// `#>`'s right side per row: a text array, or its text form `'{a,b}'`.
fn path_lists(array: &ArrayRef) -> Result<Vec<Option<Vec<String>>>> {
    fn of_list<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Result<Vec<Option<Vec<String>>>> {
        (0..list.len())
            .map(|row| {
                if list.is_null(row) {
                    return Ok(None);
                }
                let items = texts(&list.value(row))?;
                Ok(Some(
                    items
                        .as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap_or_default().to_string())
                        .collect(),
                ))
            })
            .collect()
    }
    match array.data_type() {
        DataType::List(_) => of_list(array.as_list::<i32>()),
        DataType::LargeList(_) => of_list(array.as_list::<i64>()),
        _ => Ok(texts(array)?
            .as_string::<i32>()
            .iter()
            .map(|text| text.map(array_literal_items))
            .collect()),
    }
}

/// The items of a PostgreSQL array literal `{a,"b c"}`.
fn array_literal_items(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => current.extend(chars.next()),
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if !inner.is_empty() {
        items.push(current);
    }
    items
}

/// PostgreSQL's jsonb containment: every key and element of `right` is in `left`; at the
/// top level an array contains a scalar it has as an element.
fn contains(left: &Value, right: &Value, top: bool) -> bool {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => r
            .iter()
            .all(|(k, rv)| l.get(k).is_some_and(|lv| contains(lv, rv, false))),
        (Value::Array(l), Value::Array(r)) => r
            .iter()
            .all(|rv| l.iter().any(|lv| contains(lv, rv, false))),
        (Value::Array(l), scalar) if top && !scalar.is_object() => l.iter().any(|lv| lv == scalar),
        (l, r) => l == r,
    }
}

fn exists(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.contains_key(key),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

/// One value of an Arrow array as JSON, as PostgreSQL's to_json gives it.
fn to_value(
    array: &ArrayRef,
    kind: Option<JsonKind>,
    formatter: &ArrayFormatter<'_>,
    row: usize,
) -> Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let display = || formatter.value(row).to_string();
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        t if t.is_integer() => serde_json::from_str(&display()).unwrap_or(Value::String(display())),
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            let text = display();
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => serde_json::from_str(&text)
                    .ok()
                    .or_else(|| serde_json::Number::from_f64(x).map(Value::Number))
                    .unwrap_or(Value::String(text)),
                _ => Value::String(text),
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = display();
            match kind {
                Some(_) => parse(&text)?,
                None => Value::String(text),
            }
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            let formatter = formatters(std::slice::from_ref(&values))?.remove(0);
            let kind = JsonKind::of(item);
            Value::Array(
                (0..values.len())
                    .map(|i| to_value(&values, kind, &formatter, i))
                    .collect::<Result<_>>()?,
            )
        }
        DataType::Struct(fields) => {
            let columns = array.as_struct();
            let mut object = serde_json::Map::new();
            for (field, column) in fields.iter().zip(columns.columns()) {
                let formatter = formatters(std::slice::from_ref(column))?.remove(0);
                object.insert(
                    field.name().clone(),
                    to_value(column, JsonKind::of(field), &formatter, row)?,
                );
            }
            Value::Object(object)
        }
        _ => Value::String(display()),
    })
}

/// `->`, `->>`, `#>`, `#>>`, and on JSON values `@>`, `<@` and `?` (DataFusion leaves the
/// first four unplanned; `@>` of arrays stays DataFusion's).
#[derive(Debug)]
pub struct JsonOperators {
    get: Arc<ScalarUDF>,
    get_text: Arc<ScalarUDF>,
    path: Arc<ScalarUDF>,
    path_text: Arc<ScalarUDF>,
    contains: Arc<ScalarUDF>,
    exists: Arc<ScalarUDF>,
}

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_json = |e: &Expr| {
            e.to_field(schema)
                .is_ok_and(|(_, field)| JsonKind::of(&field).is_some())
        };
        let (udf, swap) = match &expr.op {
            BinaryOperator::Arrow => (&self.get, false),
            BinaryOperator::LongArrow => (&self.get_text, false),
            BinaryOperator::HashArrow => (&self.path, false),
            BinaryOperator::HashLongArrow => (&self.path_text, false),
            BinaryOperator::AtArrow if is_json(&expr.left) || is_json(&expr.right) => {
                (&self.contains, false)
            }
            BinaryOperator::ArrowAt if is_json(&expr.left) || is_json(&expr.right) => {
                (&self.contains, true)
            }
            BinaryOperator::Question if is_json(&expr.left) => (&self.exists, false),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let args = if swap {
            vec![expr.right, expr.left]
        } else {
            vec![expr.left, expr.right]
        };
        Ok(PlannerResult::Planned(udf.call(args)))
    }
}

/// Registers the JSON functions, operators and types in `ctx` (after datafusion-pg-catalog,
/// whose type planner [`PgTypes`] extends).
pub fn install(ctx: &SessionContext) {
    let mut by_name = std::collections::HashMap::new();
    for function in functions() {
        let name = function.name;
        let udf = Arc::new(ScalarUDF::new_from_impl(function));
        ctx.register_udf(udf.as_ref().clone());
        by_name.insert(name, udf);
    }
    let operators = JsonOperators {
        get: by_name["tenure_json_get"].clone(),
        get_text: by_name["tenure_json_get_text"].clone(),
        path: by_name["tenure_json_path"].clone(),
        path_text: by_name["tenure_json_path_text"].clone(),
        contains: by_name["tenure_jsonb_contains"].clone(),
        exists: by_name["tenure_jsonb_exists"].clone(),
    };
    let state = ctx.state_ref();
    let existing = state.read().clone();
    let mut builder =
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(PgTypes::default()));
    if let Some(planners) = builder.expr_planners() {
        planners.insert(0, Arc::new(operators));
    }
    *state.write() = builder.build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_postgres_output() {
        let value: Value =
            serde_json::from_str(r#"{"bb": [1, {"b": 2, "a": null}], "a": "x", "a": "y"}"#)
                .unwrap();
        assert_eq!(
            JsonKind::Jsonb.text(&value),
            r#"{"a": "y", "bb": [1, {"a": null, "b": 2}]}"#
        );
        assert_eq!(JsonKind::Json.text(&Value::Array(vec![])), "[]");
    }

    #[test]
    fn containment_and_existence_follow_postgres() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(contains(
            &v(r#"{"a": 1, "b": [1, 2]}"#),
            &v(r#"{"b": [2]}"#),
            true
        ));
        assert!(!contains(&v(r#"{"a": 1}"#), &v(r#"{"a": 2}"#), true));
        assert!(contains(&v("[1, 2, 3]"), &v("2"), true));
        assert!(!contains(&v(r#"{"a": [1, 2]}"#), &v(r#"{"a": 1}"#), true));
        assert!(exists(&v(r#"{"a": 1}"#), "a"));
        assert!(exists(&v(r#"["a", "b"]"#), "b"));
        assert!(!exists(&v(r#"{"a": {"b": 1}}"#), "b"));
    }

    #[test]
    fn array_literals_split_as_postgres_reads_them() {
        assert_eq!(array_literal_items("{a,b}"), ["a", "b"]);
        assert_eq!(array_literal_items(r#"{"a,b",1}"#), ["a,b", "1"]);
        assert!(array_literal_items("{}").is_empty());
    }
}
