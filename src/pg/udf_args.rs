//! How the catalog functions (pg/catalog.rs, views.rs, format.rs) treat their arguments:
//! a call with only constant arguments answers with a constant, as DataFusion expects of a
//! function it folds, and with an array otherwise.

use datafusion::logical_expr::ColumnarValue;
use datafusion::scalar::ScalarValue;

/// The number of rows of a function's arguments: an array's length, or 1 for scalars only.
pub fn row_count(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// A function's `result`: a scalar when every argument was one, as DataFusion expects.
pub fn like_arguments(
    args: &[ColumnarValue],
    result: datafusion::arrow::array::ArrayRef,
) -> datafusion::common::Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?));
    }
    Ok(ColumnarValue::Array(result))
}
