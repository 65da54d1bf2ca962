//! Customer lifetime value from a BG/NBD and a Gamma-Gamma model.

use super::bgnbd::{self, BgNbd};
use super::gamma_gamma::GammaGamma;

/// Customer lifetime value as lifetimes' `customer_lifetime_value` defines it: the sum over
/// the next `months` months of expected spend × expected purchases in that month, discounted
/// by `monthly_discount` per month. NaN when any input is not valid: months must be a whole
/// number ≥ 0 and monthly_discount > -1.
#[allow(clippy::too_many_arguments)]
pub fn clv(
    purchases: &BgNbd,
    spend: &GammaGamma,
    x: f64,
    recency: f64,
    age: f64,
    monetary: f64,
    months: f64,
    monthly_discount: f64,
) -> f64 {
    if !(months >= 0.0) || months.fract() != 0.0 || !months.is_finite() {
        return f64::NAN;
    }
    if !(monthly_discount > -1.0) || !monthly_discount.is_finite() {
        return f64::NAN;
    }
    if !bgnbd::valid_input(x, recency, age) {
        return f64::NAN;
    }
    let per_transaction = spend.expected_spend(x, monetary);
    let per_month = purchases.time_unit.per_month();
    let mut value = 0.0;
    let mut previous = 0.0;
    for month in 1..=(months as u64) {
        let cumulative = purchases.expected_purchases(month as f64 * per_month, x, recency, age);
        value +=
            per_transaction * (cumulative - previous) / (1.0 + monthly_discount).powi(month as i32);
        previous = cumulative;
    }
    if months > 0.0 && !per_transaction.is_finite() {
        return f64::NAN;
    }
    value
}
