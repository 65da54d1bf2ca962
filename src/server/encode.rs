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
    UInt32Type,
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
            DataType::Decimal128(_, scale) if *scale >= 0 => Values::Numeric {
                array: array.as_primitive(),
                scale: *scale as u32,
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
            (Values::Text(value), _) => {
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
            (Values::Numeric { array, scale }, false) => {
                write_numeric_text(array.value(row), *scale, buf);
                true
            }
            (Values::Numeric { array, scale }, true) => {
                write_numeric_binary(array.value(row), *scale, buf)
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
        Int32Array, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampNanosecondArray, TimestampSecondArray, UInt32Array,
    };
    use chrono::Datelike;
    use pgwire::api::results::FieldFormat;

    fn fields(batch: &RecordBatch, format: FieldFormat, options: FormatOptions) -> Vec<FieldInfo> {
        let format = match format {
            FieldFormat::Text => pgwire::api::portal::Format::UnifiedText,
            FieldFormat::Binary => pgwire::api::portal::Format::UnifiedBinary,
        };
        arrow_pg::datatypes::arrow_schema_to_pg_fields(
            batch.schema_ref(),
            &format,
            Some(Arc::new(options)),
        )
        .unwrap()
    }

    /// Each field of each row, as the client receives it (None for NULL).
    fn values(rows: &[DataRow]) -> Vec<Vec<Option<Vec<u8>>>> {
        rows.iter()
            .map(|row| {
                let mut data = &row.data[..];
                (0..row.field_count)
                    .map(|_| {
                        let len = i32::from_be_bytes(data[..4].try_into().unwrap());
                        data = &data[4..];
                        (len >= 0).then(|| {
                            let (value, rest) = data.split_at(len as usize);
                            data = rest;
                            value.to_vec()
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn text(rows: &[DataRow]) -> Vec<Vec<Option<String>>> {
        values(rows)
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
                    .collect()
            })
            .collect()
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn column_text(array: ArrayRef, options: FormatOptions) -> Vec<Option<String>> {
        let batch = batch(vec![("c", array)]);
        let fields = fields(&batch, FieldFormat::Text, options);
        text(&data_rows(&fields, &batch).unwrap())
            .into_iter()
            .map(|mut row| row.remove(0))
            .collect()
    }

    fn strings(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn floats_read_as_postgresql_prints_them() {
        // Expected text from PostgreSQL 15.18 (`SELECT x::float8`), extra_float_digits 1.
        let float8 = [
            1.0,
            0.5,
            1e20,
            1.5e-5,
            123456789012345678.0,
            0.0001,
            1e15,
            1e14,
            123456789012345.0,
            1234567890123456.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.00012,
            f64::MAX,
            5e-324,
            0.1 + 0.2,
            -2.5,
        ];
        let expected = [
            "1",
            "0.5",
            "1e+20",
            "1.5e-05",
            "1.2345678901234568e+17",
            "0.0001",
            "1e+15",
            "100000000000000",
            "123456789012345",
            "1.234567890123456e+15",
            "-0",
            "Infinity",
            "-Infinity",
            "NaN",
            "0.00012",
            "1.7976931348623157e+308",
            "5e-324",
            "0.30000000000000004",
            "-2.5",
        ];
        let array: ArrayRef = Arc::new(Float64Array::from(float8.to_vec()));
        assert_eq!(
            column_text(array.clone(), FormatOptions::default()),
            strings(&expected)
        );
        // SET extra_float_digits = 0: %.15g.
        let mut options = FormatOptions::default();
        options.extra_float_digits = 0;
        assert_eq!(
            column_text(
                Arc::new(Float64Array::from(vec![
                    0.1 + 0.2,
                    1e15,
                    123456789012345678.0,
                    1.0
                ])),
                options
            ),
            strings(&["0.3", "1e+15", "1.23456789012346e+17", "1"])
        );
        let float4 = [1.0f32, 1e6, 123456.0, 1234567.0, 1e-4, 1e-5, 3.14159, 1e38];
        assert_eq!(
            column_text(
                Arc::new(Float32Array::from(float4.to_vec())),
                FormatOptions::default()
            ),
            strings(&[
                "1",
                "1e+06",
                "123456",
                "1.234567e+06",
                "0.0001",
                "1e-05",
                "3.14159",
                "1e+38"
            ])
        );
    }

    #[test]
    fn times_read_as_postgresql_prints_them() {
        // "YYYY-MM-DD HH:MM:SS[.ffffff]" in microseconds since 1970.
        let micros = |text: &str| {
            let (date, time) = text.split_once(' ').unwrap();
            let (seconds, fraction) = time.split_once('.').unwrap_or((time, ""));
            let ymd: Vec<u32> = date.split('-').map(|p| p.parse().unwrap()).collect();
            let date = chrono::NaiveDate::from_ymd_opt(ymd[0] as i32, ymd[1], ymd[2]).unwrap();
            let time = chrono::NaiveTime::parse_from_str(seconds, "%H:%M:%S").unwrap();
            let fraction: i64 = format!("{fraction:0<6}").parse().unwrap();
            date.and_time(time).and_utc().timestamp_micros() + fraction
        };
        let stamps = vec![
            Some(micros("2024-01-01 00:00:01")),
            Some(micros("2024-01-01 00:00:01.5")),
            Some(micros("2024-01-01 00:00:01.123456")),
            Some(micros("1969-12-31 23:59:59.999999")),
            Some(micros("12345-01-01 00:00:00")),
            None,
        ];
        let naive: ArrayRef = Arc::new(TimestampMicrosecondArray::from(stamps.clone()));
        let mut expected = strings(&[
            "2024-01-01 00:00:01",
            "2024-01-01 00:00:01.5",
            "2024-01-01 00:00:01.123456",
            "1969-12-31 23:59:59.999999",
            "12345-01-01 00:00:00",
        ]);
        expected.push(None);
        assert_eq!(column_text(naive, FormatOptions::default()), expected);

        // 57 BC, from PostgreSQL's `'0044-03-15 12:00'::timestamp - interval '100 years'`.
        let bc = chrono::NaiveDate::from_ymd_opt(-56, 3, 15)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        assert_eq!(
            column_text(
                Arc::new(TimestampSecondArray::from(vec![bc])),
                FormatOptions::default()
            ),
            strings(&["0057-03-15 12:00:00 BC"])
        );
        let days = |y, m, d| {
            (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days() as i32
        };
        assert_eq!(
            column_text(
                Arc::new(Date32Array::from(vec![
                    days(1, 1, 1),
                    days(0, 12, 31),
                    days(2024, 2, 29)
                ])),
                FormatOptions::default()
            ),
            strings(&["0001-01-01", "0001-12-31 BC", "2024-02-29"])
        );

        // timestamptz shows the session's zone, whatever the column's.
        let zoned = |zone: &str, text: &str| {
            let array: ArrayRef = Arc::new(
                TimestampNanosecondArray::from(vec![micros(text) * 1_000]).with_timezone("+02:00"),
            );
            let mut options = FormatOptions::default();
            options.time_zone = zone.to_string();
            column_text(array, options).remove(0).unwrap()
        };
        assert_eq!(
            zoned("UTC", "2024-01-01 00:00:01.25"),
            "2024-01-01 00:00:01.25+00"
        );
        assert_eq!(
            zoned("Asia/Kolkata", "2024-01-01 00:00:01.25"),
            "2024-01-01 05:30:01.25+05:30"
        );
        assert_eq!(
            zoned("America/New_York", "2024-07-01 00:00:00"),
            "2024-06-30 20:00:00-04"
        );
    }

    #[test]
    fn numerics_keep_their_scale() {
        let array: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(1250), Some(-5), Some(0), None, Some(123_456_789)])
                .with_precision_and_scale(12, 2)
                .unwrap(),
        );
        let mut expected = strings(&["12.50", "-0.05", "0.00"]);
        expected.push(None);
        expected.push(Some("1234567.89".into()));
        assert_eq!(column_text(array, FormatOptions::default()), expected);
    }

    /// A batch of every type this module writes, with NULLs and edge values.
    fn all_types() -> RecordBatch {
        let n = 300;
        let ints: Vec<Option<i64>> = (0..n)
            .map(|i| {
                (i % 7 != 3).then(|| match i % 5 {
                    0 => i64::MIN + i,
                    1 => i64::MAX - i,
                    _ => (i * 7919 - 1_000_000) * (i % 13),
                })
            })
            .collect();
        let floats: Vec<Option<f64>> = (0..n)
            .map(|i| (i % 11 != 5).then(|| ((i as f64) - 150.0) * 1.37e-3_f64.powi((i % 9) as i32)))
            .collect();
        let text: Vec<Option<String>> = (0..n)
            .map(|i| (i % 6 != 1).then(|| format!("customer-{i} \"q\" ,{{x}}")))
            .collect();
        RecordBatch::try_from_iter(vec![
            (
                "b",
                Arc::new(BooleanArray::from(
                    (0..n)
                        .map(|i| (i % 4 != 0).then_some(i % 3 == 0))
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "i16",
                Arc::new(Int16Array::from(
                    ints.iter().map(|v| v.map(|v| v as i16)).collect::<Vec<_>>(),
                )),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(
                    ints.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
                )),
            ),
            ("i64", Arc::new(Int64Array::from(ints.clone()))),
            (
                "u32",
                Arc::new(UInt32Array::from(
                    ints.iter().map(|v| v.map(|v| v as u32)).collect::<Vec<_>>(),
                )),
            ),
            ("f64", Arc::new(Float64Array::from(floats.clone()))),
            (
                "f32",
                Arc::new(Float32Array::from(
                    floats
                        .iter()
                        .map(|v| v.map(|v| v as f32))
                        .collect::<Vec<_>>(),
                )),
            ),
            ("s", Arc::new(StringArray::from(text.clone()))),
            ("sv", Arc::new(StringViewArray::from(text))),
            (
                "d",
                Arc::new(Date32Array::from(
                    ints.iter()
                        .map(|v| v.map(|v| (v % 1_000_000) as i32))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(
                    ints.iter()
                        .map(|v| v.map(|v| v % 10_000_000_000_000_000))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "n",
                Arc::new(
                    Decimal128Array::from(
                        ints.iter()
                            .map(|v| v.map(|v| i128::from(v) * 1_000_003))
                            .collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(38, 7)
                    .unwrap(),
                ),
            ),
            (
                "n0",
                Arc::new(
                    Decimal128Array::from(
                        ints.iter()
                            .map(|v| v.map(|v| v as i128 / 3))
                            .collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(20, 0)
                    .unwrap(),
                ),
            ),
        ])
        .unwrap()
    }

    /// `batch`'s fields as this module and as arrow-pg write them, in `format`.
    fn ours_and_arrow_pgs(
        batch: &RecordBatch,
        format: FieldFormat,
    ) -> [Vec<Vec<Option<Vec<u8>>>>; 2] {
        let fields = fields(batch, format, FormatOptions::default());
        let ours = values(&data_rows(&fields, batch).unwrap());
        let theirs: Vec<DataRow> = arrow_pg::encode_recordbatch(Arc::new(fields), batch.clone())
            .map(|row| row.unwrap())
            .collect();
        [ours, values(&theirs)]
    }

    #[test]
    fn binary_values_equal_arrow_pgs() {
        let batch = all_types();
        let [ours, theirs] = ours_and_arrow_pgs(&batch, FieldFormat::Binary);
        assert_eq!(ours.len(), 300);
        for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            for (col, (a, b)) in a.iter().zip(b).enumerate() {
                let name = batch.schema().field(col).name().clone();
                if name.starts_with('n') {
                    // rust_decimal may keep trailing zero digits that numeric_send drops, and
                    // it sends zero with scale 0 where PostgreSQL keeps the column's scale:
                    // compare the values the client decodes.
                    let (a, b) = (
                        a.as_deref().map(decode_numeric),
                        b.as_deref().map(decode_numeric),
                    );
                    match (a, b) {
                        (Some(a), Some(b)) if a.1 == "0" => assert_eq!(a.1, b.1, "row {row}"),
                        (a, b) => assert_eq!(a, b, "row {row} column {name}"),
                    }
                } else {
                    assert_eq!(a, b, "row {row} column {name}");
                }
            }
        }
    }

    /// A binary numeric as (sign, digits as text, display scale), the way a client reads it.
    fn decode_numeric(bytes: &[u8]) -> (u16, String, i16) {
        let word = |i: usize| i16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        let (count, weight, sign, scale) = (word(0), word(1), word(2) as u16, word(3));
        let mut value: i128 = 0;
        for i in 0..count as usize {
            value = value * 10_000 + i128::from(word(4 + i));
        }
        // value x 10,000^(weight - count + 1), shown with `scale` fraction digits.
        let exponent = 4 * (i32::from(weight) - i32::from(count) + 1) + i32::from(scale);
        let scaled = if exponent >= 0 {
            value * 10i128.pow(exponent as u32)
        } else {
            value / 10i128.pow((-exponent) as u32)
        };
        (sign, scaled.to_string(), scale)
    }

    #[test]
    fn text_values_equal_arrow_pgs_where_it_follows_postgresql() {
        // Integers, booleans, strings, dates and numerics: arrow-pg already writes what
        // PostgreSQL does; floats and time stamps are checked against PostgreSQL above.
        let batch = all_types();
        let [ours, theirs] = ours_and_arrow_pgs(&batch, FieldFormat::Text);
        let compared = ["b", "i16", "i32", "i64", "u32", "s", "sv", "n", "n0"];
        for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            for (col, (a, b)) in a.iter().zip(b).enumerate() {
                let name = batch.schema().field(col).name().clone();
                if compared.contains(&name.as_str()) {
                    assert_eq!(a, b, "row {row} column {name}");
                }
            }
        }
        // Dates agree with chrono's.
        for (row, values) in ours.iter().enumerate() {
            let d = batch
                .column(9)
                .as_primitive::<arrow::datatypes::Date32Type>();
            if let (Some(ours), false) = (&values[9], d.is_null(row)) {
                let date =
                    chrono::NaiveDate::from_num_days_from_ce_opt(d.value(row) + 719_163).unwrap();
                let expected = if date.year_ce().0 {
                    date.format("%Y-%m-%d").to_string()
                } else {
                    format!("{:04}-{} BC", date.year_ce().1, date.format("%m-%d"))
                };
                assert_eq!(String::from_utf8_lossy(ours), expected, "row {row}");
            }
        }
    }

    #[test]
    fn other_types_go_through_arrow_pg() {
        use arrow::array::ListArray;
        use arrow::datatypes::Int32Type;
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
        ]));
        let batch = batch(vec![
            ("l", list),
            (
                "i",
                Arc::new(Int32Array::from(vec![Some(7), None])) as ArrayRef,
            ),
        ]);
        let fields = fields(&batch, FieldFormat::Text, FormatOptions::default());
        assert_eq!(
            text(&data_rows(&fields, &batch).unwrap()),
            vec![
                vec![Some("{1,NULL,3}".to_string()), Some("7".to_string())],
                vec![None, None],
            ]
        );
    }
}
