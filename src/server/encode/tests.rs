use std::sync::Arc;

use super::*;
use arrow::array::{
    BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt32Array,
};
use chrono::Datelike;
use pgwire::api::results::FieldFormat;

fn fields(batch: &RecordBatch, format: FieldFormat, options: FormatOptions) -> Vec<FieldInfo> {
    let format = match format {
        FieldFormat::Text => pgwire::api::portal::Format::UnifiedText,
        FieldFormat::Binary => pgwire::api::portal::Format::UnifiedBinary,
    };
    crate::server::encode::pg_fields(batch.schema_ref(), &format, Some(Arc::new(options))).unwrap()
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

// 3.14159 is a value to print, not an approximation of pi.
#[allow(clippy::approx_constant)]
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

/// `numeric` without a declared precision (Decimal128(38, 10)) drops the zeros of the fixed
/// scale, as PostgreSQL writes `12345.6789::numeric`.
#[test]
fn unconstrained_numerics_are_not_padded() {
    let array: ArrayRef = Arc::new(
        Decimal128Array::from(vec![
            Some(123_456_789_000_000),
            Some(20_000_000_000),
            Some(-5_000_000_000),
            Some(0),
            Some(1),
        ])
        .with_precision_and_scale(38, 10)
        .unwrap(),
    );
    assert_eq!(
        column_text(array, FormatOptions::default()),
        strings(&["12345.6789", "2", "-0.5", "0", "0.0000000001"])
    );
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
fn ours_and_arrow_pgs(batch: &RecordBatch, format: FieldFormat) -> [Vec<Vec<Option<Vec<u8>>>>; 2] {
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
