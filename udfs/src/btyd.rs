//! The BTYD functions: `p_alive`, `expected_purchases`, `purchase_probability` (bgnbd),
//! `expected_spend` (gamma_gamma) and `clv` (both).
//!
//! They share one shape, [`ModelFormula`]: one or more model literals, then numeric arguments,
//! evaluated row by row in f64 over whole batches. A NULL argument gives NULL; so does input
//! the model is not defined for (negative values, a fractional frequency, recency greater
//! than t), the rule lifetimes enforces with an error, here per row so one bad customer does
//! not fail a dashboard.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use tenure_models::btyd::{BgNbd, GammaGamma, clv};
use tenure_models::{Kind, Model};

use crate::docs::DOC_SECTION;
use crate::features::sql_type_name;
use crate::model_arg::ModelArg;
use crate::registry::ModelRegistry;

/// Computes one row from the models and the row's numeric arguments; NaN means NULL.
type Formula = fn(&[&Model], &[f64]) -> f64;

/// A scalar function `name(model..., numbers...) -> float8`.
#[derive(Debug)]
pub struct ModelFormula {
    name: &'static str,
    /// The kind each leading model argument must be.
    models: &'static [Kind],
    /// Those arguments, one per kind in `models`.
    model_args: Vec<ModelArg>,
    /// The numeric arguments after the models, by name.
    arguments: &'static [&'static str],
    formula: Formula,
    registry: Arc<dyn ModelRegistry>,
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for ModelFormula {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for ModelFormula {}

impl Hash for ModelFormula {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ModelFormula {
    fn usage(&self) -> String {
        let mut names: Vec<&str> = if self.models.len() == 1 {
            vec!["model"]
        } else {
            self.models.iter().map(|k| k.name()).collect()
        };
        names.extend(self.arguments);
        format!("{}({})", self.name, names.join(", "))
    }
}

impl ScalarUDFImpl for ModelFormula {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let expected = self.models.len() + self.arguments.len();
        if args.arg_fields.len() != expected {
            return plan_err!(
                "{} expects {expected} arguments, {}; got {}",
                self.name,
                self.usage(),
                args.arg_fields.len()
            );
        }
        for (arg, literal) in self.model_args.iter().zip(args.scalar_arguments) {
            arg.resolve_literal(self.registry.as_ref(), *literal)?;
        }
        for (offset, name) in self.arguments.iter().enumerate() {
            let data_type = args.arg_fields[self.models.len() + offset].data_type();
            if !(data_type.is_numeric() || *data_type == DataType::Null) {
                return plan_err!(
                    "{}: argument {} ({name}) must be a number, got {}",
                    self.name,
                    self.models.len() + offset + 1,
                    sql_type_name(data_type)
                );
            }
        }
        Ok(Arc::new(Field::new(self.name, DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut models = Vec::with_capacity(self.models.len());
        for (arg, value) in self.model_args.iter().zip(&args.args) {
            match arg.resolve_value(self.registry.as_ref(), value)? {
                Some(model) => models.push(model),
                None => return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None))),
            }
        }
        let models: Vec<&Model> = models.iter().map(|m| &m.model).collect();
        let numbers: Vec<ArrayRef> = args.args[self.models.len()..]
            .iter()
            .map(|a| cast(&a.to_array(rows)?, &DataType::Float64).map_err(Into::into))
            .collect::<Result<_>>()?;
        let columns: Vec<&[f64]> = numbers
            .iter()
            .map(|a| a.as_primitive::<Float64Type>().values().as_ref())
            .collect();
        let nulls = numbers.iter().fold(None, |acc, a| {
            NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
        });
        let mut row = vec![0.0; columns.len()];
        let values: Vec<f64> = (0..rows)
            .map(|i| {
                for (slot, column) in row.iter_mut().zip(&columns) {
                    *slot = column[i];
                }
                (self.formula)(&models, &row)
            })
            .collect();
        // NaN (input the model is not defined for) becomes NULL, as do NULL inputs.
        let defined = NullBuffer::from_iter(values.iter().map(|v| !v.is_nan()));
        let nulls = NullBuffer::union(nulls.as_ref(), Some(&defined));
        let array = Float64Array::new(ScalarBuffer::from(values), nulls);
        Ok(ColumnarValue::Array(Arc::new(array)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

fn bgnbd(model: &Model) -> &BgNbd {
    match model {
        Model::Bgnbd(m) => m,
        // The kind is checked before any formula runs.
        _ => unreachable!("a bgnbd model"),
    }
}

fn gamma_gamma(model: &Model) -> &GammaGamma {
    match model {
        Model::GammaGamma(m) => m,
        _ => unreachable!("a gamma_gamma model"),
    }
}

fn formula(
    registry: Arc<dyn ModelRegistry>,
    name: &'static str,
    models: &'static [Kind],
    arguments: &'static [&'static str],
    formula: Formula,
    documentation: Documentation,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(ModelFormula {
        name,
        models,
        model_args: models
            .iter()
            .enumerate()
            .map(|(i, &kind)| ModelArg::nth(name, i + 1, kind))
            .collect(),
        arguments,
        formula,
        registry,
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}

const RULE: &str = "NULL when an argument is NULL or the input is not valid for the model: \
                    negative values, a fractional frequency, or recency greater than t.";

pub fn p_alive(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let doc = Documentation::builder(
        DOC_SECTION,
        format!(
            "Probability that the customer is still alive (has not dropped out), from a bgnbd \
             model. It is 1 for every customer without a repeat purchase (frequency = 0), by \
             construction of BG/NBD, so read it together with frequency. {RULE}"
        ),
        "p_alive(model, frequency, recency, t)",
    )
    .with_argument("model", "text literal: a bgnbd model, or name@version")
    .with_argument(
        "frequency",
        "repeat purchases (purchase periods after the first)",
    )
    .with_argument(
        "recency",
        "time from the first to the last purchase, in the model's time unit",
    )
    .with_argument(
        "t",
        "time from the first purchase to the end of observation",
    )
    .with_sql_example("SELECT customer_id, p_alive('bg', frequency, recency, t) FROM rfm")
    .build();
    formula(
        registry,
        "p_alive",
        &[Kind::Bgnbd],
        &["frequency", "recency", "t"],
        |m, v| bgnbd(m[0]).p_alive(v[0], v[1], v[2]),
        doc,
    )
}

pub fn expected_purchases(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let doc = Documentation::builder(
        DOC_SECTION,
        format!(
            "Expected purchases of the customer over the next `horizon` time units (the \
             model's time unit), from a bgnbd model. {RULE}"
        ),
        "expected_purchases(model, horizon, frequency, recency, t)",
    )
    .with_argument("model", "text literal: a bgnbd model")
    .with_argument("horizon", "how far ahead, in the model's time unit")
    .with_sql_example(
        "SELECT customer_id, expected_purchases('bg', 52, frequency, recency, t) FROM rfm",
    )
    .build();
    formula(
        registry,
        "expected_purchases",
        &[Kind::Bgnbd],
        &["horizon", "frequency", "recency", "t"],
        |m, v| bgnbd(m[0]).expected_purchases(v[0], v[1], v[2], v[3]),
        doc,
    )
}

pub fn purchase_probability(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let doc = Documentation::builder(
        DOC_SECTION,
        "Probability that a customer just acquired makes exactly n purchases in their first \
         `horizon` time units, from a bgnbd model; NULL for n not a whole number ≥ 0 or a \
         horizon not > 0.",
        "purchase_probability(model, n, horizon)",
    )
    .with_argument("model", "text literal: a bgnbd model")
    .with_sql_example(
        "SELECT n, purchase_probability('bg', n, 52) FROM generate_series(0, 10) AS s(n)",
    )
    .build();
    formula(
        registry,
        "purchase_probability",
        &[Kind::Bgnbd],
        &["n", "horizon"],
        |m, v| bgnbd(m[0]).purchase_probability(v[0], v[1]),
        doc,
    )
}

pub fn expected_spend(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let doc = Documentation::builder(
        DOC_SECTION,
        "Expected value of the customer's transactions, from a gamma_gamma model: their mean \
         repeat-transaction value shrunk towards the population mean; the population mean for \
         frequency = 0. NULL for a negative or fractional frequency, or a monetary value not > 0 \
         with frequency > 0.",
        "expected_spend(model, frequency, monetary_value)",
    )
    .with_argument("model", "text literal: a gamma_gamma model")
    .with_argument(
        "monetary_value",
        "the mean value of the customer's repeat transactions",
    )
    .build();
    formula(
        registry,
        "expected_spend",
        &[Kind::GammaGamma],
        &["frequency", "monetary_value"],
        |m, v| gamma_gamma(m[0]).expected_spend(v[0], v[1]),
        doc,
    )
}

pub fn clv_function(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let doc = Documentation::builder(
        DOC_SECTION,
        format!(
            "Customer lifetime value over the next `months` months: for each month, expected \
             spend (gamma_gamma) times expected purchases in that month (bgnbd), discounted by \
             monthly_discount per month; lifetimes' customer_lifetime_value. A month is 30 days \
             or 4.345 weeks in the bgnbd model's time unit. months must be a whole number ≥ 0. \
             {RULE}"
        ),
        "clv(bgnbd, gamma_gamma, frequency, recency, t, monetary_value, months, monthly_discount)",
    )
    .with_argument("bgnbd", "text literal: a bgnbd model")
    .with_argument("gamma_gamma", "text literal: a gamma_gamma model")
    .with_sql_example(
        "SELECT customer_id, clv('bg', 'gg', frequency, recency, t, monetary_value, 12, 0.01) FROM rfm",
    )
    .build();
    formula(
        registry,
        "clv",
        &[Kind::Bgnbd, Kind::GammaGamma],
        &[
            "frequency",
            "recency",
            "t",
            "monetary_value",
            "months",
            "monthly_discount",
        ],
        |m, v| {
            clv(
                bgnbd(m[0]),
                gamma_gamma(m[1]),
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
            )
        },
        doc,
    )
}
