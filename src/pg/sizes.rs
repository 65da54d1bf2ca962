//! `pg_size_pretty`, which psql's `\dt+` and `\l+` and admin tools show sizes with. The sizes
//! themselves come from `tenure.table_sizes`: the server rewrites `pg_table_size(oid)`,
//! `pg_relation_size(oid)` and `pg_total_relation_size(oid)` to lookups in
//! pg_catalog.tenure_relation_sizes (datafusion-pg-catalog's return 0 for every table).

use std::sync::Arc;

use arrow::array::{AsArray, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let pretty: StringArray = arrays[0]
                .as_primitive::<Int64Type>()
                .iter()
                .map(|bytes| bytes.map(size_pretty))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(pretty)))
        }),
    ));
}

/// PostgreSQL 15's pg_size_pretty: bytes below 10 kB, then the largest of kB, MB, GB, TB
/// and PB that keeps the number below 20,480 before halving, rounded half away from zero
/// (dbsize.c's `size_pretty_units`).
pub fn size_pretty(bytes: i64) -> String {
    // (name, limit, rounded, unit bits)
    const UNITS: [(&str, u64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    let mut size = bytes;
    for (i, &(name, limit, rounded, bits)) in UNITS.iter().enumerate() {
        match UNITS.get(i + 1) {
            Some(&(_, _, next_rounded, next_bits)) if size.unsigned_abs() >= limit => {
                // Division, not a shift, so that negative sizes round as positive ones do.
                let shift = next_bits - bits - u32::from(next_rounded) + u32::from(rounded);
                size /= 1i64 << shift;
            }
            _ => {
                if rounded {
                    size = half_rounded(size);
                }
                return format!("{size} {name}");
            }
        }
    }
    unreachable!("the last unit always formats")
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_read_as_postgresql_prints_them() {
        // PostgreSQL's regression test (dbsize.out), both signs.
        for (bytes, pretty) in [
            (10, "10 bytes"),
            (1000, "1000 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (1_000_000, "977 kB"),
            (1_000_000_000, "954 MB"),
            (1_000_000_000_000, "931 GB"),
            (1_000_000_000_000_000, "909 TB"),
            (1_000_000_000_000_000_000, "888 PB"),
        ] {
            assert_eq!(size_pretty(bytes), pretty);
            assert_eq!(size_pretty(-bytes), format!("-{pretty}"));
        }
    }
}
