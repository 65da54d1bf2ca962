//! Rule-based lifecycle functions: `rfm_segment` and `lifecycle_stage`. No model; the rules
//! are documented here and in README, and pinned by sql/slt/lifecycle.slt at each boundary.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use crate::docs::DOC_SECTION;
use crate::features::sql_type_name;

/// The eleven RFM segments, from recency score r and the mean fm = (f + m) / 2 of the
/// frequency and monetary scores (all 1 to 5, 5 best). Rules in order, first match wins:
///
/// | segment | r | fm |
/// | --- | --- | --- |
/// | Champions | 4-5 | ≥ 4 |
/// | Loyal Customers | 3-5 | ≥ 3 |
/// | Can't Lose Them | 1 | ≥ 4 |
/// | At Risk | 1-2 | ≥ 3 |
/// | Potential Loyalist | 4-5 | ≥ 2 |
/// | New Customers | 5 | < 2 |
/// | Promising | 4 | < 2 |
/// | Need Attention | 3 | ≥ 2 |
/// | About To Sleep | 3 | < 2 |
/// | Hibernating | 2, or 1 with fm ≥ 2 | < 3 |
/// | Lost | 1 | < 2 |
pub fn rfm_segment_name(r: u8, f: u8, m: u8) -> &'static str {
    let fm = f64::from(f + m) / 2.0;
    match r {
        4..=5 if fm >= 4.0 => "Champions",
        3..=5 if fm >= 3.0 => "Loyal Customers",
        1 if fm >= 4.0 => "Can't Lose Them",
        1..=2 if fm >= 3.0 => "At Risk",
        4..=5 if fm >= 2.0 => "Potential Loyalist",
        5 => "New Customers",
        4 => "Promising",
        3 if fm >= 2.0 => "Need Attention",
        3 => "About To Sleep",
        2 => "Hibernating",
        _ if fm >= 2.0 => "Hibernating",
        _ => "Lost",
    }
}

/// Scalar argument values as f64 columns, with planning-time type checks.
fn numeric_columns(args: &ScalarFunctionArgs, count: usize) -> Result<Vec<ArrayRef>> {
    args.args[..count]
        .iter()
        .map(|a| cast(&a.to_array(args.number_rows)?, &DataType::Float64).map_err(Into::into))
        .collect()
}

fn check_numeric(function: &str, names: &[&str], types: &[&DataType]) -> Result<()> {
    for (i, (name, data_type)) in names.iter().zip(types).enumerate() {
        if !(data_type.is_numeric() || **data_type == DataType::Null) {
            return plan_err!(
                "{function}: argument {} ({name}) must be a number, got {}",
                i + 1,
                sql_type_name(data_type)
            );
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmSegment {
    signature: Signature,
}

pub fn rfm_segment() -> ScalarUDF {
    ScalarUDF::new_from_impl(RfmSegment {
        signature: Signature::any(3, Volatility::Immutable),
    })
}

static RFM_SEGMENT_DOC: std::sync::LazyLock<Documentation> = std::sync::LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The standard RFM segment name (Champions, Loyal Customers, Potential Loyalist, New \
         Customers, Promising, Need Attention, About To Sleep, At Risk, Can't Lose Them, \
         Hibernating, Lost) of recency, frequency and monetary scores 1-5 (5 best), e.g. from \
         ntile(5). NULL if a score is NULL; an error for a score outside 1-5.",
        "rfm_segment(r_score, f_score, m_score)",
    )
    .with_sql_example(
        "SELECT rfm_segment(ntile(5) OVER (ORDER BY last_order), ntile(5) OVER (ORDER BY orders), \
         ntile(5) OVER (ORDER BY spend)) FROM customers",
    )
    .build()
});

impl ScalarUDFImpl for RfmSegment {
    fn name(&self) -> &str {
        "rfm_segment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let types: Vec<&DataType> = arg_types.iter().collect();
        check_numeric("rfm_segment", &["r_score", "f_score", "m_score"], &types)?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let columns = numeric_columns(&args, 3)?;
        let scores: Vec<_> = columns
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect();
        let names = ["r_score", "f_score", "m_score"];
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let mut values = [0u8; 3];
            let mut null = false;
            for (i, column) in scores.iter().enumerate() {
                if column.is_null(row) {
                    null = true;
                    continue;
                }
                let v = column.value(row);
                if !(1.0..=5.0).contains(&v) || v.fract() != 0.0 {
                    return exec_err!(
                        "rfm_segment: {} must be a whole number from 1 to 5, got {v}",
                        names[i]
                    );
                }
                values[i] = v as u8;
            }
            out.push((!null).then(|| rfm_segment_name(values[0], values[1], values[2])));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&RFM_SEGMENT_DOC)
    }
}

/// The thresholds of `lifecycle_stage`, overridable per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageThresholds {
    /// Orders that make a customer converted (a repeat buyer).
    pub conversion_orders: f64,
    /// Orders from which a customer is retained.
    pub retention_orders: f64,
    /// Orders from which a customer is loyal.
    pub loyalty_orders: f64,
    /// Days without activity after which a customer is at risk.
    pub at_risk_days: f64,
    /// Days without activity after which a customer has churned.
    pub churned_days: f64,
    /// P(alive) below which a repeat customer is at risk.
    pub at_risk_p_alive: f64,
    /// P(alive) below which a repeat customer has churned.
    pub churned_p_alive: f64,
}

impl Default for StageThresholds {
    fn default() -> Self {
        StageThresholds {
            conversion_orders: 2.0,
            retention_orders: 3.0,
            loyalty_orders: 5.0,
            at_risk_days: 90.0,
            churned_days: 180.0,
            at_risk_p_alive: 0.5,
            churned_p_alive: 0.2,
        }
    }
}

impl StageThresholds {
    /// Defaults overridden by 'name = value, ...'.
    pub fn parse(text: &str) -> std::result::Result<StageThresholds, String> {
        let mut t = StageThresholds::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("'{pair}' is not name = value"));
            };
            let key = key.trim().to_ascii_lowercase();
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{key} must be a number, got '{}'", value.trim()))?;
            let slot = match key.as_str() {
                "conversion_orders" => &mut t.conversion_orders,
                "retention_orders" => &mut t.retention_orders,
                "loyalty_orders" => &mut t.loyalty_orders,
                "at_risk_days" => &mut t.at_risk_days,
                "churned_days" => &mut t.churned_days,
                "at_risk_p_alive" => &mut t.at_risk_p_alive,
                "churned_p_alive" => &mut t.churned_p_alive,
                _ => {
                    return Err(format!(
                        "unknown threshold {key}; thresholds: conversion_orders, \
                         retention_orders, loyalty_orders, at_risk_days, churned_days, \
                         at_risk_p_alive, churned_p_alive"
                    ));
                }
            };
            *slot = value;
        }
        if !(1.0 < t.conversion_orders
            && t.conversion_orders <= t.retention_orders
            && t.retention_orders <= t.loyalty_orders)
        {
            return Err("need 1 < conversion_orders <= retention_orders <= loyalty_orders".into());
        }
        if !(0.0 <= t.at_risk_days && t.at_risk_days <= t.churned_days) {
            return Err("need 0 <= at_risk_days <= churned_days".into());
        }
        if !(0.0 <= t.churned_p_alive
            && t.churned_p_alive <= t.at_risk_p_alive
            && t.at_risk_p_alive <= 1.0)
        {
            return Err("need 0 <= churned_p_alive <= at_risk_p_alive <= 1".into());
        }
        Ok(t)
    }
}

/// The lifecycle stage of one customer; None when orders or the inactivity the rules need is
/// NULL or negative (days_since_signup is read only for a customer without orders).
///
/// Inactivity is the days since the last order, or since signup for a customer who has not
/// ordered. In order:
/// 1. inactive more than churned_days: churned; more than at_risk_days: at_risk;
/// 2. with p_alive and a repeat purchase (orders ≥ 2): p_alive below churned_p_alive:
///    churned; below at_risk_p_alive: at_risk. BG/NBD gives p_alive = 1 to every customer
///    without a repeat purchase, so p_alive is not read for them;
/// 3. by orders: 0 acquisition, 1 activation, conversion_orders conversion, retention_orders
///    retention, loyalty_orders loyalty.
pub fn lifecycle_stage_of(
    days_since_signup: Option<f64>,
    orders: Option<f64>,
    days_since_last_order: Option<f64>,
    p_alive: Option<f64>,
    t: &StageThresholds,
) -> Option<&'static str> {
    let orders = orders.filter(|o| *o >= 0.0 && o.is_finite())?;
    let inactive = if orders == 0.0 {
        days_since_signup?
    } else {
        days_since_last_order?
    };
    if inactive.is_nan() || inactive < 0.0 {
        return None;
    }
    if inactive > t.churned_days {
        return Some("churned");
    }
    if inactive > t.at_risk_days {
        return Some("at_risk");
    }
    if orders >= 2.0
        && let Some(p) = p_alive.filter(|p| (0.0..=1.0).contains(p))
    {
        if p < t.churned_p_alive {
            return Some("churned");
        }
        if p < t.at_risk_p_alive {
            return Some("at_risk");
        }
    }
    Some(if orders >= t.loyalty_orders {
        "loyalty"
    } else if orders >= t.retention_orders {
        "retention"
    } else if orders >= t.conversion_orders {
        "conversion"
    } else if orders >= 1.0 {
        "activation"
    } else {
        "acquisition"
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LifecycleStage {
    signature: Signature,
}

pub fn lifecycle_stage() -> ScalarUDF {
    ScalarUDF::new_from_impl(LifecycleStage {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

const STAGE_ARGUMENTS: [&str; 4] = [
    "days_since_signup",
    "orders",
    "days_since_last_order",
    "p_alive",
];

static LIFECYCLE_STAGE_DOC: std::sync::LazyLock<Documentation> = std::sync::LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The customer's lifecycle stage: acquisition (signed up, no order), activation (one \
         order), conversion (second order), retention (third), loyalty (fifth and more), \
         at_risk (no activity for more than 90 days, or p_alive < 0.5 with a repeat purchase) \
         or churned (more than 180 days, or p_alive < 0.2). Thresholds are overridable with a \
         last text argument such as 'at_risk_days = 60, churned_days = 120'. NULL when orders, \
         or the days the rules need (since the last order, or since signup without an \
         order), are NULL or negative.",
        "lifecycle_stage(days_since_signup, orders, days_since_last_order [, p_alive [, thresholds]])",
    )
    .with_sql_example(
        "SELECT lifecycle_stage(current_date - signup_date, orders, current_date - last_order) \
         FROM customers",
    )
    .build()
});

impl LifecycleStage {
    fn thresholds(arg: Option<&ScalarValue>) -> Result<StageThresholds> {
        match arg {
            None => Ok(StageThresholds::default()),
            Some(
                ScalarValue::Utf8(Some(t))
                | ScalarValue::Utf8View(Some(t))
                | ScalarValue::LargeUtf8(Some(t)),
            ) => {
                StageThresholds::parse(t).or_else(|e| plan_err!("lifecycle_stage: thresholds: {e}"))
            }
            Some(_) => plan_err!(
                "lifecycle_stage: argument 5 (thresholds) must be a text literal such as \
                 'at_risk_days = 60'"
            ),
        }
    }
}

impl ScalarUDFImpl for LifecycleStage {
    fn name(&self) -> &str {
        "lifecycle_stage"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let count = args.arg_fields.len();
        if !(3..=5).contains(&count) {
            return plan_err!(
                "lifecycle_stage expects 3 to 5 arguments (days_since_signup, orders, \
                 days_since_last_order [, p_alive [, thresholds]]), got {count}"
            );
        }
        let numeric = count.min(4);
        let types: Vec<&DataType> = args.arg_fields[..numeric]
            .iter()
            .map(|f| f.data_type())
            .collect();
        check_numeric("lifecycle_stage", &STAGE_ARGUMENTS[..numeric], &types)?;
        if count == 5 {
            Self::thresholds(args.scalar_arguments[4])?;
        }
        Ok(Arc::new(Field::new(
            "lifecycle_stage",
            DataType::Utf8,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let thresholds = match args.args.get(4) {
            Some(ColumnarValue::Scalar(s)) => Self::thresholds(Some(s))?,
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("lifecycle_stage: thresholds must be a text literal");
            }
            None => StageThresholds::default(),
        };
        let columns = numeric_columns(&args, args.args.len().min(4))?;
        let values: Vec<_> = columns
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect();
        let at = |c: usize, row: usize| -> Option<f64> {
            values
                .get(c)
                .and_then(|v| (!v.is_null(row)).then(|| v.value(row)))
        };
        let stages: StringArray = (0..args.number_rows)
            .map(|row| {
                lifecycle_stage_of(at(0, row), at(1, row), at(2, row), at(3, row), &thresholds)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(stages)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&LIFECYCLE_STAGE_DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rfm_cell_has_one_of_the_eleven_segments() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    seen.insert(rfm_segment_name(r, f, m));
                }
            }
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
        assert_eq!(rfm_segment_name(5, 5, 5), "Champions");
        assert_eq!(rfm_segment_name(1, 1, 1), "Lost");
        assert_eq!(rfm_segment_name(1, 5, 5), "Can't Lose Them");
        assert_eq!(rfm_segment_name(5, 1, 1), "New Customers");
    }

    #[test]
    fn thresholds_parse_and_reject_nonsense() {
        let t = StageThresholds::parse("at_risk_days = 60, churned_days=120").unwrap();
        assert_eq!((t.at_risk_days, t.churned_days), (60.0, 120.0));
        assert!(
            StageThresholds::parse("churned_days = 30")
                .unwrap_err()
                .contains("at_risk_days <= churned_days")
        );
        assert!(
            StageThresholds::parse("colour = 1")
                .unwrap_err()
                .contains("unknown threshold colour")
        );
    }
}
