//! The machinery every model-scoring scalar function shares: `fn(model, features...)`.
//!
//! At planning the model name must be a text literal; the model is resolved and the feature
//! arguments are checked against its card (count and types), so mistakes fail before any row
//! is read. At execution each batch becomes one feature matrix and one forward pass.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use tenure_models::Kind;

use crate::features::{FeatureBatch, check_arguments};
use crate::registry::{LoadedModel, ModelRegistry};

/// A scalar function that scores a model over feature arguments and returns float8.
#[derive(Debug)]
pub struct ScoringFunction {
    name: &'static str,
    /// Kinds this function can score; empty for any.
    kinds: &'static [Kind],
    registry: Arc<dyn ModelRegistry>,
    signature: Signature,
    documentation: Documentation,
}

impl ScoringFunction {
    pub fn new(
        name: &'static str,
        kinds: &'static [Kind],
        registry: Arc<dyn ModelRegistry>,
        documentation: Documentation,
    ) -> Self {
        ScoringFunction {
            name,
            kinds,
            registry,
            signature: Signature::variadic_any(Volatility::Stable),
            documentation,
        }
    }

    /// The model named by the first argument, which must be a text literal.
    fn model_from_literal(
        &self,
        literal: Option<&ScalarValue>,
    ) -> Result<Option<Arc<LoadedModel>>> {
        let reference = match literal {
            Some(ScalarValue::Utf8(r) | ScalarValue::Utf8View(r) | ScalarValue::LargeUtf8(r)) => r,
            Some(ScalarValue::Null) => return Ok(None),
            _ => {
                return plan_err!(
                    "{}: argument 1 (model) must be a text literal naming a model, such as '{}'",
                    self.name,
                    "churn"
                );
            }
        };
        let Some(reference) = reference else {
            return Ok(None);
        };
        let model = resolve(self.name, self.registry.as_ref(), reference)?;
        if !self.kinds.is_empty() && !self.kinds.contains(&model.card.kind) {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
            return plan_err!(
                "{}: model '{}' is of kind {}; {} scores {}",
                self.name,
                model.card.name,
                model.card.kind,
                self.name,
                kinds.join(", ")
            );
        }
        Ok(Some(model))
    }
}

/// Resolves `reference` through `registry`, prefixing errors with the function's name.
pub fn resolve(
    function: &str,
    registry: &dyn ModelRegistry,
    reference: &str,
) -> Result<Arc<LoadedModel>> {
    registry
        .model(reference)
        .or_else(|message| plan_err!("{function}: {message}"))
}

impl PartialEq for ScoringFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for ScoringFunction {}

impl Hash for ScoringFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for ScoringFunction {
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
        if args.arg_fields.is_empty() {
            return plan_err!("{}: expects a model name and its features", self.name);
        }
        if let Some(model) = self.model_from_literal(args.scalar_arguments[0])? {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            check_arguments(self.name, &model.card, &types)?;
        }
        Ok(Arc::new(Field::new(self.name, DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let model = match &args.args[0] {
            ColumnarValue::Scalar(literal) => self.model_from_literal(Some(literal))?,
            ColumnarValue::Array(_) => {
                return exec_err!("{}: argument 1 (model) must be a text literal", self.name);
            }
        };
        let Some(model) = model else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)));
        };
        // The card may have changed since planning (a new version): check again, cheaply.
        let types: Vec<DataType> = args.args[1..].iter().map(|a| a.data_type()).collect();
        check_arguments(self.name, &model.card, &types)?;
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let batch = FeatureBatch::new(self.name, &model.card, &arrays)?;
        let scores = batch
            .with_values(|values| model.model.predict(values))
            .or_else(|e| exec_err!("{}: {e}", self.name))?;
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(scores))))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}
