//! Arrow record batches to DataRow messages.
//!
//! arrow-pg encodes one value at a time through a generic path: a type dispatch, a downcast
//! and, in the text format, a formatted `String` per float, time stamp or numeric. Its text
//! also differs from PostgreSQL's: floats read "1.0" and "inf", time stamps always carry six
//! fraction digits and timestamptz shows the column's zone rather than the session's.
//! This module writes the common column types straight from their arrays into one buffer per
//! batch, as PostgreSQL 15 writes them (`float8out`, `timestamp_out`, `numeric_send`, ...),
//! and hands every other type, value by value, to arrow-pg's encoder.

use std::str::FromStr;

use arrow::array::timezone::Tz;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, RecordBatch,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use bytes::{BufMut, BytesMut};
use chrono::{Offset, TimeZone};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

/// Microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const POSTGRES_EPOCH_DAYS: i32 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The RowDescription of a result with `schema`: arrow-pg's, with `json` and `jsonb` for the
/// text columns that are (see [`crate::pg::json`]), `varchar(n)`'s length, bigint for
/// DataFusion's unsigned counts, and the table oid and column number of plain table columns
/// (see [`crate::pg::origins`]).
pub fn pg_fields(
    schema: &arrow::datatypes::Schema,
    format: &pgwire::api::portal::Format,
    options: Option<std::sync::Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    use postgres_types::Type;
    let fields = arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, options)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| {
            let (table, column) = match crate::pg::origins::origin(field) {
                Some((table, column)) => (Some(table), Some(column)),
                None => (info.table_id(), info.column_id()),
            };
            let (datatype, modifier, size) = match crate::pg::types::postgres_type(field) {
                Some((datatype, modifier)) => {
                    let size = if datatype == Type::INT8 { 8 } else { -1 };
                    (datatype, modifier, size)
                }
                None => (
                    info.datatype().clone(),
                    info.type_modifier(),
                    info.type_size(),
                ),
            };
            FieldInfo::new(
                info.name().to_string(),
                table,
                column,
                datatype,
                info.format(),
            )
            .with_format_options(info.format_options().clone())
            .with_type_size(size)
            .with_type_modifier(modifier)
        })
        .collect())
}

/// Encodes every row of `batch` for a result whose columns are `fields`.
pub fn data_rows(fields: &[FieldInfo], batch: &RecordBatch) -> PgWireResult<Vec<DataRow>> {
    let schema = batch.schema();
    let columns: Vec<Column> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(fields)
        .map(|((array, field), pg)| Column::new(array, field, pg))
        .collect();
    let rows = batch.num_rows();
    let mut out = RowWriter(BytesMut::with_capacity(rows * (2 + 12 * columns.len())));
    let mut ends = Vec::with_capacity(rows);
    for row in 0..rows {
        for column in &columns {
            column.write(row, &mut out)?;
        }
        ends.push(out.0.len());
    }
    let mut data = out.0;
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let row = data.split_to(end - start);
            start = end;
            DataRow::new(row, columns.len() as i16)
        })
        .collect())
}

/// A column's values, typed once per batch.
enum Values<'a> {
    Bool(&'a BooleanArray),
    /// Integers of any Arrow width, sent as int2, int4 or int8 (`bytes`) as arrow-pg types them.
    Int {
        value: Box<dyn Fn(usize) -> i64 + 'a>,
        bytes: usize,
    },
    Float4(&'a Float32Array),
    Float8(&'a Float64Array),
    Text(Box<dyn Fn(usize) -> &'a [u8] + 'a>),
    Date(&'a Date32Array),
    /// Microseconds since 1970 (`None` where a unit's conversion overflows); `zone` is the
    /// session's time zone for timestamptz, `None` for timestamp without time zone.
    Timestamp {
        micros: Box<dyn Fn(usize) -> Option<i64> + 'a>,
        zone: Option<Zone>,
    },
    Numeric {
        array: &'a Decimal128Array,
        scale: u32,
        /// `numeric` without a declared precision (DataFusion's Decimal128(38, 10)):
        /// written without the trailing fraction zeros the fixed scale pads with.
        unconstrained: bool,
    },
    /// Anything else: arrow-pg's encoder.
    Other,
}

/// The session's time zone, resolved once per batch.
enum Zone {
    Utc,
    Named(Tz),
}

impl Zone {
    fn offset_seconds(&self, micros: i64) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Named(tz) => {
                let seconds = micros.div_euclid(1_000_000);
                match chrono::DateTime::from_timestamp(seconds, 0) {
                    Some(utc) => tz
                        .offset_from_utc_datetime(&utc.naive_utc())
                        .fix()
                        .local_minus_utc(),
                    None => 0,
                }
            }
        }
    }
}

struct Column<'a> {
    array: &'a ArrayRef,
    field: &'a Field,
    pg: &'a FieldInfo,
    nulls: Option<&'a NullBuffer>,
    binary: bool,
    /// extra_float_digits: above 0 the shortest exact text, else 15 (6) + it digits.
    float_digits: i8,
    values: Values<'a>,
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, field: &'a Field, pg: &'a FieldInfo) -> Column<'a> {
        let options: &FormatOptions = pg.format_options();
        let binary = pg.format() == FieldFormat::Binary;
        // Date and time text follows DateStyle; tenure only accepts ISO (settings.rs), which
        // is all this writes. Anything else goes to arrow-pg.
        let iso = options.date_style.to_ascii_uppercase().starts_with("ISO");
        let values = match array.data_type() {
            DataType::Boolean => Values::Bool(array.as_boolean()),
            DataType::Int8 => int(array.as_primitive::<Int8Type>(), 2),
            DataType::Int16 => int(array.as_primitive::<Int16Type>(), 2),
            DataType::Int32 => int(array.as_primitive::<Int32Type>(), 4),
            DataType::Int64 => int(array.as_primitive::<Int64Type>(), 8),
            DataType::UInt8 => int(array.as_primitive::<UInt8Type>(), 2),
            DataType::UInt16 => int(array.as_primitive::<UInt16Type>(), 4),
            DataType::UInt32 => int(array.as_primitive::<UInt32Type>(), 8),
            // DataFusion's counts (row_number(), cardinality()) are UInt64, which arrow-pg
            // calls numeric; PostgreSQL's are bigint (see `pg_fields`). No count passes i64.
            DataType::UInt64 => {
                let a = array.as_primitive::<UInt64Type>();
                Values::Int {
                    value: Box::new(move |i| i64::try_from(a.value(i)).unwrap_or(i64::MAX)),
                    bytes: 8,
                }
            }
            DataType::Float32 => Values::Float4(array.as_primitive()),
            DataType::Float64 => Values::Float8(array.as_primitive()),
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                Values::Text(Box::new(move |i| a.value(i).as_bytes()))
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                Values::Text(Box::new(move |i| a.value(i).as_bytes()))
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                Values::Text(Box::new(move |i| a.value(i).as_bytes()))
            }
            DataType::Date32 if iso || binary => Values::Date(array.as_primitive()),
            DataType::Timestamp(unit, tz) if iso || binary => {
                let zone = match tz {
                    None => None,
                    Some(_) => match session_zone(&options.time_zone) {
                        Some(zone) => Some(zone),
                        None => return Column::other(array, field, pg),
                    },
                };
                let micros: Box<dyn Fn(usize) -> Option<i64>> = match unit {
                    TimeUnit::Second => {
                        let a = array.as_primitive::<TimestampSecondType>();
                        Box::new(move |i| a.value(i).checked_mul(1_000_000))
                    }
                    TimeUnit::Millisecond => {
                        let a = array.as_primitive::<TimestampMillisecondType>();
                        Box::new(move |i| a.value(i).checked_mul(1_000))
                    }
                    TimeUnit::Microsecond => {
                        let a = array.as_primitive::<TimestampMicrosecondType>();
                        Box::new(move |i| Some(a.value(i)))
                    }
                    // PostgreSQL keeps microseconds; the nanoseconds are cut, as arrow-pg does.
                    TimeUnit::Nanosecond => {
                        let a = array.as_primitive::<TimestampNanosecondType>();
                        Box::new(move |i| Some(a.value(i).div_euclid(1_000)))
                    }
                };
                Values::Timestamp { micros, zone }
            }
            DataType::Decimal128(precision, scale) if *scale >= 0 => Values::Numeric {
                array: array.as_primitive(),
                scale: *scale as u32,
                unconstrained: (*precision, *scale) == UNCONSTRAINED_NUMERIC,
            },
            _ => Values::Other,
        };
        Column {
            array,
            field,
            pg,
            nulls: array.nulls(),
            binary,
            float_digits: options.extra_float_digits,
            values,
        }
    }

    fn other(array: &'a ArrayRef, field: &'a Field, pg: &'a FieldInfo) -> Column<'a> {
        Column {
            array,
            field,
            pg,
            nulls: None,
            binary: false,
            float_digits: 1,
            values: Values::Other,
        }
    }

    fn write(&self, row: usize, out: &mut RowWriter) -> PgWireResult<()> {
        if let Values::Other = self.values {
            return self.write_other(row, out);
        }
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            out.0.put_i32(-1);
            return Ok(());
        }
        let at = out.0.len();
        out.0.put_i32(0);
        let buf = &mut out.0;
        let written = match (&self.values, self.binary) {
            (Values::Bool(a), false) => {
                buf.put_u8(if a.value(row) { b't' } else { b'f' });
                true
            }
            (Values::Bool(a), true) => {
                buf.put_u8(u8::from(a.value(row)));
                true
            }
            (Values::Int { value, .. }, false) => {
                buf.put_slice(itoa::Buffer::new().format(value(row)).as_bytes());
                true
            }
            (Values::Int { value, bytes }, true) => {
                let v = value(row);
                match bytes {
                    2 => buf.put_i16(v as i16),
                    4 => buf.put_i32(v as i32),
                    _ => buf.put_i64(v),
                }
                true
            }
            (Values::Float4(a), false) => {
                write_float(f64::from(a.value(row)), Float::Four, self.float_digits, buf);
                true
            }
            (Values::Float4(a), true) => {
                buf.put_f32(a.value(row));
                true
            }
            (Values::Float8(a), false) => {
                write_float(a.value(row), Float::Eight, self.float_digits, buf);
                true
            }
            (Values::Float8(a), true) => {
                buf.put_f64(a.value(row));
                true
            }
            (Values::Text(value), binary) => {
                // jsonb's binary form is a version byte (1) and the text.
                if binary && *self.pg.datatype() == postgres_types::Type::JSONB {
                    buf.put_u8(1);
                }
                buf.put_slice(value(row));
                true
            }
            (Values::Date(a), false) => {
                let (year, month, day) = civil_from_days(i64::from(a.value(row)));
                write_date(year, month, day, buf);
                if year <= 0 {
                    buf.put_slice(b" BC");
                }
                true
            }
            (Values::Date(a), true) => {
                buf.put_i32(a.value(row).wrapping_sub(POSTGRES_EPOCH_DAYS));
                true
            }
            (Values::Timestamp { micros, zone }, binary) => match micros(row) {
                Some(micros) if binary => {
                    buf.put_i64(micros.wrapping_sub(POSTGRES_EPOCH_MICROS));
                    true
                }
                Some(micros) => write_timestamp(micros, zone.as_ref(), buf),
                None => false,
            },
            (
                Values::Numeric {
                    array,
                    scale,
                    unconstrained,
                },
                binary,
            ) => {
                let (value, scale) = match unconstrained {
                    true => without_trailing_zeros(array.value(row), *scale),
                    false => (array.value(row), *scale),
                };
                if binary {
                    write_numeric_binary(value, scale, buf)
                } else {
                    write_numeric_text(value, scale, buf);
                    true
                }
            }
            (Values::Other, _) => unreachable!("handled above"),
        };
        if !written {
            // A value this module does not write (a time stamp out of range): arrow-pg's.
            out.0.truncate(at);
            return self.write_other(row, out);
        }
        let length = (out.0.len() - at - 4) as i32;
        out.0[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    fn write_other(&self, row: usize, out: &mut RowWriter) -> PgWireResult<()> {
        arrow_pg::encoder::encode_value(out, self.array, row, self.field, self.pg)
    }
}

fn int<'a, T>(array: &'a arrow::array::PrimitiveArray<T>, bytes: usize) -> Values<'a>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    Values::Int {
        value: Box::new(move |i| array.value(i).into()),
        bytes,
    }
}

fn session_zone(name: &str) -> Option<Zone> {
    match name.to_ascii_uppercase().as_str() {
        "UTC" | "ETC/UTC" | "GMT" | "Z" | "ZULU" | "UCT" | "ETC/GMT" => Some(Zone::Utc),
        _ => Tz::from_str(name).ok().map(Zone::Named),
    }
}

/// Writes values into one buffer, length-prefixed as DataRow fields are; arrow-pg's encoder
/// writes the columns this module leaves to it through the same buffer.
struct RowWriter(BytesMut);

impl arrow_pg::encoder::Encoder for RowWriter {
    type Item = ();

    fn encode_field<T>(&mut self, value: &T, pg: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let at = self.0.len();
        self.0.put_i32(-1);
        let is_null = if pg.format() == FieldFormat::Text {
            value.to_sql_text(pg.datatype(), &mut self.0, pg.format_options())?
        } else {
            value.to_sql(pg.datatype(), &mut self.0)?
        };
        if let IsNull::No = is_null {
            let length = (self.0.len() - at - 4) as i32;
            self.0[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        Ok(())
    }

    fn take_row(&mut self) {}
}

#[derive(Clone, Copy, PartialEq)]
enum Float {
    Four,
    Eight,
}

/// `float4out` / `float8out`: with extra_float_digits above 0 the shortest text that reads
/// back exactly, else `%.{6|15 + extra}g`; exponents as `e+20` or `e-05`, and "Infinity",
/// "-Infinity", "NaN", "-0".
fn write_float(value: f64, kind: Float, extra_digits: i8, out: &mut BytesMut) {
    if value.is_nan() {
        return out.put_slice(b"NaN");
    }
    if value.is_infinite() {
        return out.put_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
    }
    if value == 0.0 {
        return out.put_slice(if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        });
    }
    let type_digits: i32 = if kind == Float::Four { 6 } else { 15 };
    let mut ryu = ryu::Buffer::new();
    let formatted;
    let (text, threshold) = if extra_digits > 0 {
        let text = match kind {
            Float::Four => ryu.format_finite(value as f32),
            Float::Eight => ryu.format_finite(value),
        };
        (text, type_digits)
    } else {
        let precision = (type_digits + i32::from(extra_digits)).max(1);
        formatted = format!("{:.*e}", (precision - 1) as usize, value);
        (formatted.as_str(), precision)
    };
    let (digits, exponent) = decompose(text);
    if value < 0.0 {
        out.put_u8(b'-');
    }
    if exponent < -4 || exponent >= threshold {
        out.put_u8(digits[0]);
        if digits.len() > 1 {
            out.put_u8(b'.');
            out.put_slice(&digits[1..]);
        }
        out.put_u8(b'e');
        out.put_u8(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.put_u8(b'0');
        }
        out.put_slice(itoa::Buffer::new().format(magnitude).as_bytes());
    } else if exponent < 0 {
        out.put_slice(b"0.");
        for _ in 0..(-exponent - 1) {
            out.put_u8(b'0');
        }
        out.put_slice(&digits);
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.put_slice(&digits);
            for _ in digits.len()..whole {
                out.put_u8(b'0');
            }
        } else {
            out.put_slice(&digits[..whole]);
            out.put_u8(b'.');
            out.put_slice(&digits[whole..]);
        }
    }
}

/// The significant digits of a formatted non-zero float ("-1.50e3", "0.0001", "12.0") without
/// leading or trailing zeros, and the decimal exponent of the first: 1.5 x 10^3 is
/// ("15", 3). On the stack: this runs for every float of a text result.
fn decompose(text: &str) -> (Digits, i32) {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let mut digits = Digits::default();
    let mut point = None;
    for &c in mantissa.as_bytes() {
        match c {
            b'.' => point = Some(digits.len),
            b'0'..=b'9' if digits.len < digits.bytes.len() => {
                digits.bytes[digits.len] = c;
                digits.len += 1;
            }
            _ => {}
        }
    }
    let mut before_point = point.unwrap_or(digits.len) as i32;
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    digits.bytes.copy_within(leading..digits.len, 0);
    digits.len -= leading;
    before_point -= leading as i32;
    while digits.len > 0 && digits.bytes[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    (digits, before_point + exponent - 1)
}

/// Up to 40 decimal digits (a float's text has at most 17 significant ones, 18 with
/// `extra_float_digits` 3).
struct Digits {
    bytes: [u8; 40],
    len: usize,
}

impl Default for Digits {
    fn default() -> Digits {
        Digits {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl std::ops::Deref for Digits {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01; year 0 is 1 BC.
/// (Howard Hinnant's `civil_from_days`.)
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// ISO date, years before 1 written as PostgreSQL does (1 BC is "0001", the caller adds " BC").
fn write_date(year: i64, month: u32, day: u32, out: &mut BytesMut) {
    let shown = if year <= 0 { 1 - year } else { year };
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(shown).as_bytes();
    for _ in digits.len()..4 {
        out.put_u8(b'0');
    }
    out.put_slice(digits);
    out.put_u8(b'-');
    two_digits(month, out);
    out.put_u8(b'-');
    two_digits(day, out);
}

fn two_digits(value: u32, out: &mut BytesMut) {
    out.put_u8(b'0' + (value / 10) as u8);
    out.put_u8(b'0' + (value % 10) as u8);
}

/// `timestamp_out` / `timestamptz_out` in ISO style: "2024-01-01 00:00:01.5", and for
/// timestamptz the session zone's offset ("+00", "+05:30"). False when the offset would
/// overflow.
fn write_timestamp(micros: i64, zone: Option<&Zone>, out: &mut BytesMut) -> bool {
    let offset = zone.map(|z| z.offset_seconds(micros));
    let Some(local) = micros.checked_add(i64::from(offset.unwrap_or(0)) * 1_000_000) else {
        return false;
    };
    let (year, month, day) = civil_from_days(local.div_euclid(MICROS_PER_DAY));
    let in_day = local.rem_euclid(MICROS_PER_DAY);
    write_date(year, month, day, out);
    out.put_u8(b' ');
    let seconds = (in_day / 1_000_000) as u32;
    two_digits(seconds / 3_600, out);
    out.put_u8(b':');
    two_digits(seconds / 60 % 60, out);
    out.put_u8(b':');
    two_digits(seconds % 60, out);
    let fraction = (in_day % 1_000_000) as u32;
    if fraction != 0 {
        let mut digits = [b'0'; 6];
        let mut rest = fraction;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let len = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.put_u8(b'.');
        out.put_slice(&digits[..len]);
    }
    if let Some(offset) = offset {
        out.put_u8(if offset < 0 { b'-' } else { b'+' });
        let offset = offset.unsigned_abs();
        two_digits(offset / 3_600, out);
        if offset % 3_600 != 0 {
            out.put_u8(b':');
            two_digits(offset / 60 % 60, out);
            if offset % 60 != 0 {
                out.put_u8(b':');
                two_digits(offset % 60, out);
            }
        }
    }
    if year <= 0 {
        out.put_slice(b" BC");
    }
    true
}

/// The precision and scale DataFusion gives `numeric` declared without them.
const UNCONSTRAINED_NUMERIC: (u8, i8) = (38, 10);

/// `value` at `scale` with its trailing fraction zeros dropped: 12345.6789000000 is
/// 12345.6789, 2.0000000000 is 2. PostgreSQL keeps the scale a value was given (1.50 stays
/// 1.50); a Decimal128 column has one scale for all its values, so that is lost.
fn without_trailing_zeros(mut value: i128, mut scale: u32) -> (i128, u32) {
    while scale > 0 && value % 10 == 0 {
        value /= 10;
        scale -= 1;
    }
    (value, scale)
}

/// `numeric_out` for a value with a fixed scale: every fraction digit of the scale.
fn write_numeric_text(value: i128, scale: u32, out: &mut BytesMut) {
    if value < 0 {
        out.put_u8(b'-');
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value.unsigned_abs()).as_bytes();
    let scale = scale as usize;
    if scale == 0 {
        return out.put_slice(digits);
    }
    if digits.len() <= scale {
        out.put_slice(b"0.");
        for _ in digits.len()..scale {
            out.put_u8(b'0');
        }
        out.put_slice(digits);
    } else {
        let whole = digits.len() - scale;
        out.put_slice(&digits[..whole]);
        out.put_u8(b'.');
        out.put_slice(&digits[whole..]);
    }
}

/// `numeric_send`: base-10,000 digits with the decimal point on a digit boundary, a weight
/// (the power of 10,000 of the first digit), the sign and the display scale. False when the
/// aligned value does not fit in 128 bits.
fn write_numeric_binary(value: i128, scale: u32, out: &mut BytesMut) -> bool {
    const NEGATIVE: u16 = 0x4000;
    let pad = (4 - scale % 4) % 4;
    let Some(aligned) = value.unsigned_abs().checked_mul(10u128.pow(pad)) else {
        return false;
    };
    let fraction_digits = ((scale + pad) / 4) as i32;
    // Least significant first; a u128 has at most 39 decimal digits, 10 of base 10,000.
    let mut digits = [0i16; 10];
    let mut count = 0;
    let mut rest = aligned;
    while rest > 0 {
        digits[count] = (rest % 10_000) as i16;
        count += 1;
        rest /= 10_000;
    }
    let weight = if count == 0 {
        0
    } else {
        count as i32 - fraction_digits - 1
    };
    // Trailing zero digits are not sent.
    let zeros = digits[..count].iter().take_while(|&&d| d == 0).count();
    let sent = &digits[zeros..count];
    out.put_i16(sent.len() as i16);
    out.put_i16(weight as i16);
    out.put_u16(if value < 0 { NEGATIVE } else { 0 });
    out.put_i16(scale as i16);
    for digit in sent.iter().rev() {
        out.put_i16(*digit);
    }
    true
}

#[cfg(test)]
mod tests;
