//! Experiments: `assign_variant(unit_id, experiment, arms)` puts a unit (a customer, a
//! session) into one arm of an A/B test, the same arm every time, on every machine and in
//! every release, without storing the assignment.
//!
//! The unit's text and the experiment's name are hashed together (FNV-1a, then
//! splitmix64's finaliser, which spreads FNV's weak low bits over the whole word) into a
//! number u in [0, 1); the unit gets the first arm whose cumulative weight exceeds u. So
//! the arms of one experiment are filled in proportion to their weights, and a unit's arm
//! in one experiment says nothing about its arm in another.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs::DOC_SECTION;
use crate::features::{is_text, sql_type_name};

/// How far the weights' sum may be from 1 (`'a:0.3333333333,b:0.6666666667'` is fine).
const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// A parsed arms list: each arm's name and the sum of the weights up to and including it.
#[derive(Debug, Clone, PartialEq)]
pub struct Arms(Vec<(String, f64)>);

impl Arms {
    /// Parses `'control:0.5,coupon:0.5'`: names with positive weights that sum to 1.
    pub fn parse(text: &str) -> std::result::Result<Arms, String> {
        let mut arms: Vec<(String, f64)> = Vec::new();
        let mut total = 0.0;
        for item in text.split(',') {
            let Some((name, weight)) = item.rsplit_once(':') else {
                return Err(format!(
                    "arm '{}' has no weight; write arms as 'name:weight,...', \
                     e.g. 'control:0.5,coupon:0.5'",
                    item.trim()
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("an arm of '{text}' has no name"));
            }
            if arms.iter().any(|(n, _)| n == name) {
                return Err(format!("arm '{name}' is listed twice"));
            }
            let weight: f64 = match weight.trim().parse() {
                Ok(w) if f64::is_finite(w) && w > 0.0 => w,
                _ => {
                    return Err(format!(
                        "arm '{name}' has weight '{}'; a weight is a number above 0",
                        weight.trim()
                    ));
                }
            };
            total += weight;
            arms.push((name.to_string(), total));
        }
        if (total - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(format!("the weights of '{text}' sum to {total}, not 1"));
        }
        Ok(Arms(arms))
    }

    /// The arm of the unit whose hash is `u` in [0, 1).
    pub fn pick(&self, u: f64) -> &str {
        let total = self.0.last().map_or(1.0, |(_, c)| *c);
        self.0
            .iter()
            .find(|(_, cumulative)| u * total < *cumulative)
            .or(self.0.last())
            .map_or("", |(name, _)| name.as_str())
    }
}

/// The unit's number in [0, 1) for `experiment`: 53 bits of the mixed hash.
pub fn unit_number(experiment: &str, unit: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in experiment
        .bytes()
        .chain(std::iter::once(0))
        .chain(unit.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AssignVariant {
    signature: Signature,
}

pub fn assign_variant() -> ScalarUDF {
    ScalarUDF::new_from_impl(AssignVariant {
        signature: Signature::any(3, Volatility::Immutable),
    })
}

static ASSIGN_VARIANT_DOC: std::sync::LazyLock<Documentation> = std::sync::LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The arm of an A/B test that a unit (a customer id, a session) belongs to: the same \
         for the same unit and experiment every time, on every machine and in every release, \
         with the arms filled in proportion to their weights and independent across \
         experiments. `arms` lists names with positive weights that sum to 1. NULL for a NULL \
         unit.",
        "assign_variant(unit_id, experiment, arms)",
    )
    .with_sql_example(
        "SELECT customer_id, assign_variant(customer_id, 'winback_2026', \
         'control:0.5,coupon:0.5') AS arm FROM customers",
    )
    .build()
});

impl ScalarUDFImpl for AssignVariant {
    fn name(&self) -> &str {
        "assign_variant"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (i, name) in [(1, "experiment"), (2, "arms")] {
            let data_type = &arg_types[i];
            if !is_text(data_type) {
                return plan_err!(
                    "assign_variant: argument {} ({name}) must be text, got {}",
                    i + 1,
                    sql_type_name(data_type)
                );
            }
        }
        if matches!(
            arg_types[0],
            DataType::List(_) | DataType::Struct(_) | DataType::Map(..)
        ) {
            return plan_err!(
                "assign_variant: argument 1 (unit_id) must be a scalar value, got {}",
                sql_type_name(&arg_types[0])
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
            .collect::<Result<Vec<_>>>()?;
        let [units, experiments, arm_lists] = [0, 1, 2].map(|i| texts[i].as_string::<i32>());
        // The arms are one literal in practice: parsed once, again only when they change.
        let mut parsed: Option<(&str, Arms)> = None;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if units.is_null(row) {
                out.push(None);
                continue;
            }
            if experiments.is_null(row) || arm_lists.is_null(row) {
                return exec_err!("assign_variant: the experiment and its arms must not be NULL");
            }
            let arm_text = arm_lists.value(row);
            if parsed.as_ref().is_none_or(|(text, _)| *text != arm_text) {
                match Arms::parse(arm_text) {
                    Ok(arms) => parsed = Some((arm_text, arms)),
                    Err(message) => return exec_err!("assign_variant: {message}"),
                }
            }
            let arms = &parsed.as_ref().expect("parsed above").1;
            let u = unit_number(experiments.value(row), units.value(row));
            out.push(Some(arms.pick(u).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&ASSIGN_VARIANT_DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_parse_with_clear_errors() {
        let arms = Arms::parse("control:0.5, coupon : 0.3,call:0.2").unwrap();
        assert_eq!(arms.pick(0.0), "control");
        assert_eq!(arms.pick(0.4999), "control");
        assert_eq!(arms.pick(0.5), "coupon");
        assert_eq!(arms.pick(0.7999), "coupon");
        assert_eq!(arms.pick(0.9999), "call");
        for (text, error) in [
            ("control", "has no weight"),
            (":1", "has no name"),
            ("a:0.5,a:0.5", "listed twice"),
            ("a:-0.5,b:1.5", "a weight is a number above 0"),
            ("a:NaN,b:1", "a weight is a number above 0"),
            ("a:0.5,b:0.6", "sum to 1.1, not 1"),
        ] {
            let message = Arms::parse(text).unwrap_err();
            assert!(message.contains(error), "{text}: {message}");
        }
    }

    /// The same unit lands in the same arm in every release: these are pinned.
    #[test]
    fn assignments_are_stable() {
        let arms = Arms::parse("control:0.5,coupon:0.5").unwrap();
        let assigned: Vec<&str> = ["1", "2", "3", "4", "5", "6", "7", "8"]
            .iter()
            .map(|unit| arms.pick(unit_number("winback", unit)))
            .collect();
        assert_eq!(assigned, PINNED);
    }

    const PINNED: [&str; 8] = [
        "coupon", "control", "coupon", "coupon", "control", "control", "coupon", "coupon",
    ];

    /// A million ids fill each arm within its binomial bounds (five standard deviations),
    /// and a unit's arm in one experiment tells nothing of its arm in another.
    #[test]
    fn arms_fill_by_weight_and_experiments_are_independent() {
        let arms = Arms::parse("control:0.5,coupon:0.3,call:0.2").unwrap();
        let n = 1_000_000;
        let mut counts = [0usize; 3];
        let mut both_control = 0usize;
        for id in 0..n {
            let unit = id.to_string();
            let first = arms.pick(unit_number("winback", &unit));
            let second = arms.pick(unit_number("onboarding", &unit));
            let index = ["control", "coupon", "call"]
                .iter()
                .position(|a| *a == first)
                .unwrap();
            counts[index] += 1;
            if first == "control" && second == "control" {
                both_control += 1;
            }
        }
        let within = |count: usize, p: f64| {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            (count as f64 - n as f64 * p).abs() < 5.0 * sd
        };
        for (count, p) in counts.iter().zip([0.5, 0.3, 0.2]) {
            assert!(within(*count, p), "{counts:?}");
        }
        assert!(
            within(both_control, 0.25),
            "{both_control} of {n} in control twice"
        );
    }
}
