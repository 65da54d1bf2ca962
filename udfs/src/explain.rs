//! `explain(model, features...)`: why the model scored this row as it did — a list of
//! (feature, contribution) in log-odds, led by `(baseline)`. Baseline plus contributions is
//! the row's log-odds: exactly for boosted trees (TreeSHAP values; the baseline is the mean
//! training log-odds) and logistic regression (weight times standardised value; the baseline
//! is the all-means input's), approximately for an MLP (integrated gradients, 32 steps). An
//! MLP runs a backward pass per row, so it is meant for a few rows, not a whole table.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, ListArray, StringArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use tenure_models::{Classifier, Kind, Model};

use crate::docs::DOC_SECTION;
use crate::features::{FeatureBatch, check_arguments, model_columns};
use crate::model_arg::ModelArg;
use crate::registry::{LoadedModel, ModelRegistry};

const FUNCTION: &str = "explain";

#[derive(Debug)]
struct Explain {
    registry: Arc<dyn ModelRegistry>,
    model: ModelArg,
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for Explain {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}
impl Eq for Explain {}
impl Hash for Explain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        FUNCTION.hash(state);
    }
}

fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("contribution", DataType::Float64, false),
    ])
}

fn return_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(entry_fields()),
        false,
    )))
}

/// The classifier inside `model`, whose kind its [`ModelArg`] checked: explain covers the
/// classifier kinds only.
fn explained(model: &LoadedModel) -> &Classifier {
    match &model.model {
        Model::Classifier(classifier) => classifier,
        _ => unreachable!("the model argument admits only classifiers"),
    }
}

impl ScalarUDFImpl for Explain {
    fn name(&self) -> &str {
        FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(return_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.is_empty() {
            return plan_err!("{FUNCTION}: expects a model name and its features");
        }
        if let Some(model) = self
            .model
            .resolve_literal(self.registry.as_ref(), args.scalar_arguments[0])?
        {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            check_arguments(FUNCTION, &model.card, &types)?;
        }
        Ok(Arc::new(Field::new(FUNCTION, return_type(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(return_type())?));
        };
        let classifier = explained(&model);
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let batch = FeatureBatch::new(FUNCTION, &model.card, self.registry.as_ref(), &arrays)?;
        let explanation = batch
            .with_values(|values| classifier.explain(values))
            .or_else(|e| exec_err!("{FUNCTION}: {e}"))?;

        let per_row = model.card.features.len() + 1;
        let mut names = Vec::with_capacity(rows * per_row);
        let mut values = Vec::with_capacity(rows * per_row);
        // A text feature's contribution is its components' sum: the explanations add up, so
        // the sum is the text's share of the log-odds.
        let widths: Vec<usize> = model
            .card
            .features
            .iter()
            .map(|f| model_columns(f).len())
            .collect();
        for contributions in &explanation.contributions {
            names.push("(baseline)");
            values.push(explanation.baseline);
            let mut columns = contributions.iter();
            for (feature, width) in model.card.features.iter().zip(&widths) {
                names.push(feature.name.as_str());
                values.push(columns.by_ref().take(*width).sum());
            }
        }
        let entries = StructArray::new(
            entry_fields(),
            vec![
                Arc::new(StringArray::from(names)) as ArrayRef,
                Arc::new(Float64Array::from(values)),
            ],
            None,
        );
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Struct(entry_fields()), false)),
            OffsetBuffer::from_lengths(std::iter::repeat_n(per_row, rows)),
            Arc::new(entries),
            None,
        );
        Ok(ColumnarValue::Array(Arc::new(list)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

pub fn explain(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "Per-feature contributions (log-odds) to one prediction, led by (baseline); they add \
         up to the prediction's log-odds. Exact for boosted trees (TreeSHAP) and logistic \
         regression, integrated gradients for an MLP, the members' mean for a blend.",
        "explain(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a model name, or name@version")
    .with_argument("features", "the model's features, in training order")
    .with_sql_example("SELECT unnest(explain('churn', tenure_days, orders, spend)) FROM features WHERE customer_id = 42")
    .build();
    ScalarUDF::new_from_impl(Explain {
        registry,
        model: ModelArg::new(FUNCTION, &[Kind::ChurnClassifier, Kind::RiskClassifier])
            .wrong_kind("explain supports churn_classifier and risk_classifier models"),
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}
