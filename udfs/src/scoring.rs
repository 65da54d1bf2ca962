//! The machinery every model-scoring scalar function shares: `fn(model, features...)`,
//! returning a score (float8), a segment number (int4) or a segment name (text).
//!
//! At planning the model name must be a text literal; the model is resolved and the feature
//! arguments are checked against its card (count and types), so mistakes fail before any row
//! is read. At execution each batch becomes one feature matrix and one forward pass.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, StringArray};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use tenure_models::Kind;

use crate::features::{FeatureBatch, check_arguments};
use crate::model_arg::ModelArg;
use crate::registry::ModelRegistry;

// Public here as well: the registry lookup behind every model argument, for other crates.
pub use crate::model_arg::resolve;

/// What a scoring function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreOutput {
    /// The model's score, float8 (NULL where it is NaN).
    Score,
    /// The segment number, int4.
    Segment,
    /// The segment's name, text.
    SegmentName,
}

impl ScoreOutput {
    fn data_type(self) -> DataType {
        match self {
            ScoreOutput::Score => DataType::Float64,
            ScoreOutput::Segment => DataType::Int32,
            ScoreOutput::SegmentName => DataType::Utf8,
        }
    }
}

/// A scalar function that scores a model over feature arguments.
#[derive(Debug)]
pub struct ScoringFunction {
    name: &'static str,
    output: ScoreOutput,
    /// The model argument, of the kinds this function can score (any when none are given).
    model: ModelArg,
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
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let model = ModelArg::new(name, kinds)
            .not_literal("(model) must be a text literal naming a model, such as 'churn'")
            .wrong_kind(format!("{name} scores {}", names.join(", ")));
        ScoringFunction {
            name,
            output: ScoreOutput::Score,
            model,
            registry,
            signature: Signature::variadic_any(Volatility::Stable),
            documentation,
        }
    }

    /// The same function returning `output` instead of a float8 score.
    pub fn with_output(mut self, output: ScoreOutput) -> Self {
        self.output = output;
        self
    }
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
        Ok(self.output.data_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.is_empty() {
            return plan_err!("{}: expects a model name and its features", self.name);
        }
        if let Some(model) = self
            .model
            .resolve_literal(self.registry.as_ref(), args.scalar_arguments[0])?
        {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            check_arguments(self.name, &model.card, &types)?;
        }
        Ok(Arc::new(Field::new(
            self.name,
            self.output.data_type(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                self.output.data_type(),
            )?));
        };
        // The card may have changed since planning (a new version): check again, cheaply.
        let types: Vec<DataType> = args.args[1..].iter().map(|a| a.data_type()).collect();
        check_arguments(self.name, &model.card, &types)?;
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let batch = FeatureBatch::new(self.name, &model.card, self.registry.as_ref(), &arrays)?;
        let array: ArrayRef = match self.output {
            ScoreOutput::Score => {
                let scores = batch
                    .with_values(|values| model.model.predict(values))
                    .or_else(|e| exec_err!("{}: {e}", self.name))?;
                Arc::new(nan_as_null(scores))
            }
            ScoreOutput::Segment | ScoreOutput::SegmentName => {
                let segments = batch
                    .with_values(|values| model.model.segments(values))
                    .or_else(|e| exec_err!("{}: {e}", self.name))?;
                if self.output == ScoreOutput::Segment {
                    Arc::new(Int32Array::from_iter(
                        segments.into_iter().map(|s| s.map(|s| s as i32)),
                    ))
                } else {
                    let names = model.model.segment_names().unwrap_or_default();
                    Arc::new(StringArray::from_iter(segments.into_iter().map(|s| {
                        s.and_then(|s| names.get(s as usize)).map(String::as_str)
                    })))
                }
            }
        };
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

/// Scores as float8, NaN (input the model is not defined for) as NULL; no copy when there
/// is none.
pub fn nan_as_null(scores: Vec<f64>) -> Float64Array {
    if !scores.iter().any(|v| v.is_nan()) {
        return Float64Array::from(scores);
    }
    let valid = NullBuffer::from_iter(scores.iter().map(|v| !v.is_nan()));
    Float64Array::new(ScalarBuffer::from(scores), Some(valid))
}
