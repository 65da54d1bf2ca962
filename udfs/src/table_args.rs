//! Argument checks shared by tenure's table functions.

use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;

/// Exactly `N` text literal arguments, named `names` in errors.
pub fn text_arguments<const N: usize>(
    function: &str,
    names: &[&str; N],
    exprs: &[Expr],
) -> Result<[String; N]> {
    if exprs.len() != N {
        return plan_err!(
            "{function} expects {N} argument{} ({}), got {}",
            if N == 1 { "" } else { "s" },
            names.join(", "),
            exprs.len()
        );
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, expr) in exprs.iter().enumerate() {
        match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => out[i] = s.clone(),
            _ => {
                return plan_err!(
                    "{function}: argument {} ({}) must be a text literal",
                    i + 1,
                    names[i]
                );
            }
        }
    }
    Ok(out)
}
