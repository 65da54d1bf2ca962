//! `model_features(model)`: the model's features in order, with their type, permutation
//! importance (the drop in validation ROC AUC when the feature is shuffled) and, for boosted
//! trees, the mean |SHAP value| over validation rows (log-odds). A text feature's values are
//! summed over its components: the permutation importances of its components one by one, an
//! upper bound of its mean |SHAP|.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use tenure_models::{Model, ModelSpec};

use crate::features::model_columns;
use crate::model_arg::resolve;
use crate::registry::ModelRegistry;
use crate::table_args::{call_schema, text_arguments};

#[derive(Debug)]
pub struct ModelFeatures {
    pub registry: Arc<dyn ModelRegistry>,
}

impl TableFunctionImpl for ModelFeatures {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [reference] = text_arguments::<1>("model_features", &["model"], args.exprs())?;
        crate::access::check_model(args.session(), &reference)?;
        let model = resolve("model_features", self.registry.as_ref(), &reference)?;
        // A text feature's importance is its components' sum.
        let per_feature = |values: &[(String, f64)]| -> Vec<Option<f64>> {
            model
                .card
                .features
                .iter()
                .map(|f| {
                    model_columns(f)
                        .iter()
                        .map(|column| {
                            values
                                .iter()
                                .find(|(name, _)| name == column)
                                .map(|(_, v)| *v)
                        })
                        .sum()
                })
                .collect()
        };
        let (importance, mean_abs_shap) = match (&model.model, &model.card.spec) {
            (Model::Classifier(_), ModelSpec::Classifier(spec)) => (
                per_feature(&spec.training.importance),
                per_feature(&spec.training.shap_importance),
            ),
            // The BTYD models have no feature importance: every input is structural.
            _ => (
                vec![None; model.card.features.len()],
                vec![None; model.card.features.len()],
            ),
        };
        let features = &model.card.features;
        let schema = call_schema(
            Schema::new(vec![
                Field::new("position", DataType::UInt32, false),
                Field::new("feature", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("importance", DataType::Float64, true),
                Field::new("mean_abs_shap", DataType::Float64, true),
            ]),
            format!("model_features({reference:?})"),
        );
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt32Array::from_iter_values(1..=features.len() as u32)),
                Arc::new(StringArray::from_iter_values(
                    features.iter().map(|f| &f.name),
                )),
                Arc::new(StringArray::from_iter_values(
                    features.iter().map(|f| &f.sql_type),
                )),
                Arc::new(StringArray::from_iter_values(
                    features.iter().map(|f| f.kind.to_string()),
                )),
                Arc::new(Float64Array::from(importance)),
                Arc::new(Float64Array::from(mean_abs_shap)),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
