//! CREATE MODEL and DROP MODEL: read the training query, train on a blocking thread (not
//! the threads that run queries or serve clients), store the new version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use tenure_models::artifact::{CARD_FORMAT, fingerprint};
use tenure_models::{Kind, Model, ModelCard, Options};
use tenure_udfs::text_features::{TextFeatureOptions, TextFeatures};

use super::{Engine, Output, Progress, ProgressSender};
use crate::error::{Error, Result};
use crate::model_store::validate_name;
use crate::sql::{CreateModel, DropModel, ModelSource};

/// Sets the flag when dropped: a CREATE MODEL whose future is dropped (a cancelled query,
/// a closed connection) stops its training thread at the next mini-batch.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Trains (or imports) a model. The training query runs in `session`, so that what a
    /// client's role may not read stays unread (table functions in it check as the role).
    pub(super) async fn create_model(
        &self,
        session: &SessionContext,
        mut create: CreateModel,
        progress: Option<&ProgressSender>,
    ) -> Result<Output> {
        validate_name(&create.name)?;
        let kind = Kind::parse(&create.kind)?;
        // The configured device trains what neither OPTIONS nor the session sent elsewhere
        // (the CPU is the models' own default).
        if self.config.device != "cpu" {
            create.default_device(&self.config.device);
        }
        // TREATMENT is KIND uplift's; the model reads it as an option, and it is not a feature.
        if let Some(treatment) = create.treatment.clone() {
            if kind != Kind::Uplift {
                return Err(Error::invalid(format!(
                    "KIND {kind} takes no TREATMENT (only KIND uplift does)"
                )));
            }
            if create.options.iter().any(|(key, _)| key == "treatment") {
                return Err(Error::invalid(
                    "the treatment is given twice: as TREATMENT and in OPTIONS",
                ));
            }
            create.options.push(("treatment".to_string(), treatment));
        }
        // The text feature options are the engine's, not the kind's (it sees numbers); the
        // encoder is resolved before any data is read.
        let mut text_features = TextFeatureOptions::take(&mut create.options)?
            .map(|options| TextFeatures::new(options, kind, self.models.as_ref()))
            .transpose()?;
        // Bad options fail before any data is read, and before the TARGET check, which for
        // KIND sequence depends on the task option.
        tenure_models::check_options(kind, &mut Options::new(create.options.clone()))?;
        let query = match (&create.source, kind.is_imported()) {
            (ModelSource::Query(query), false) => query.clone(),
            (ModelSource::Files(directory), true) => {
                let directory = directory.clone();
                return self.import_model(create, kind, &directory).await;
            }
            (ModelSource::Query(_), true) => {
                return Err(Error::invalid(format!(
                    "KIND {kind} is imported, not trained: CREATE MODEL {} KIND {kind} FROM \
                     'directory'",
                    create.name
                )));
            }
            (ModelSource::Files(_), false) => {
                return Err(Error::invalid(format!(
                    "KIND {kind} is trained on a query (AS SELECT ...); only KIND text_encoder \
                     is imported FROM a directory"
                )));
            }
        };
        let target = match (kind.needs_target(&create.options), create.target.clone()) {
            (true, Some(target)) => Some(target),
            (true, None) => {
                return Err(Error::invalid(format!(
                    "KIND {kind} needs TARGET: the column to learn"
                )));
            }
            (false, Some(_)) if kind == Kind::Sequence => {
                return Err(Error::invalid(
                    "KIND sequence takes a TARGET only for task 'churn'; tasks 'next_item' and \
                     'embedding' learn from the events themselves",
                ));
            }
            (false, Some(_)) => {
                return Err(Error::invalid(format!("KIND {kind} takes no TARGET")));
            }
            (false, None) => None,
        };
        if create.if_not_exists && self.models.contains(&create.name) {
            return Ok(Output::command("CREATE MODEL"));
        }

        let started = Instant::now();
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = session.sql_with_options(&query, read_only).await?;
        let schema = frame.schema().as_arrow().clone();
        let mut options = create.options.clone();
        if let Some(unit) = time_unit_of(kind, &options, &schema) {
            options.push(("time_unit".to_string(), unit));
        }
        let batches = frame.collect().await?;
        let (data, mut features, dropped) =
            tenure_udfs::training::training_data(&batches, &schema, target.as_deref())?;
        if kind == Kind::Uplift
            && let Some((_, treatment)) = options.iter().find(|(key, _)| key == "treatment")
        {
            features.retain(|feature| &feature.name != treatment);
        }
        drop(batches);
        if let Some(text_features) = &mut text_features {
            text_features.choose_columns(&features)?;
        }
        // The card keeps the text options beside the kind's, the encoder pinned.
        let text_options: Vec<(String, String)> = text_features
            .iter()
            .flat_map(TextFeatures::card_options)
            .collect();
        if dropped > 0
            && let Some(progress) = progress
        {
            let _ = progress.send(Progress::Message(format!(
                "{dropped} rows with a NULL target were left out"
            )));
        }

        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let sender = progress.cloned();
        let name = create.name.clone();
        let trained = tokio::task::spawn_blocking(move || {
            let mut data = data;
            if let Some(text_features) = &text_features {
                if let Some(sender) = &sender {
                    let _ = sender.send(Progress::Message(
                        "embedding the text features' distinct texts".to_string(),
                    ));
                }
                text_features.encode(&mut data, &mut features, &cancel)?;
            }
            let mut options = Options::new(options);
            let mut on_epoch = |report: &tenure_models::EpochReport| {
                if let Some(sender) = &sender {
                    let _ = sender.send(Progress::Epoch {
                        model: name.clone(),
                        report: report.clone(),
                    });
                }
            };
            // The training data's fingerprint is hashed beside training, not before it.
            let (fingerprint, model) = std::thread::scope(|scope| {
                let fingerprint = scope.spawn(|| fingerprint(&data));
                let model = Model::train(kind, &data, &mut options, &mut on_epoch, &cancel);
                let fingerprint = fingerprint
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (fingerprint, model)
            });
            let model = model?;
            Ok::<_, Error>((
                model,
                fingerprint,
                options.as_map().clone(),
                data.rows(),
                features,
            ))
        })
        .await
        .map_err(|e| Error::invalid(format!("training failed: {e}")))?;
        let (model, fingerprint, mut options, rows, features) = trained?;
        options.extend(text_options);

        let metrics = model.metrics();
        let seconds = started.elapsed().as_secs_f64();
        let card = ModelCard {
            format: CARD_FORMAT,
            name: create.name.clone(),
            version: 0,
            kind,
            target,
            features,
            options,
            metrics: metrics.clone(),
            rows: rows as u64,
            seconds,
            fingerprint,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            weights_checksum: String::new(),
            spec: model.spec(),
        };
        let version = self.models.save(card, model)?;
        tracing::info!(model = %create.name, version, rows, seconds, "trained");
        created_model_row(&create.name, version, kind, rows as u64, seconds, &metrics)
    }

    pub(super) async fn drop_model(&self, drop: DropModel) -> Result<Output> {
        if self.models.drop_model(&drop.name)? || drop.if_exists {
            Ok(Output::command("DROP MODEL"))
        } else {
            Err(Error::NotFound {
                kind: "model",
                name: drop.name,
            })
        }
    }
}

/// CREATE MODEL's one result row: what was trained (or imported) and its metrics.
pub(super) fn created_model_row(
    name: &str,
    version: u32,
    kind: Kind,
    rows: u64,
    seconds: f64,
    metrics: &[(String, f64)],
) -> Result<Output> {
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![name.to_string()])),
        Arc::new(Int32Array::from(vec![version as i32])),
        Arc::new(StringArray::from(vec![kind.name()])),
        Arc::new(Int64Array::from(vec![rows as i64])),
        Arc::new(Float64Array::from(vec![
            (seconds * 1000.0).round() / 1000.0,
        ])),
    ];
    // Supervised and sequence kinds report metrics on the validation rows; the others
    // report their fit (parameters, log-likelihood) or shape under the metric's own name.
    let prefix = if kind.reports_validation() {
        "validation_"
    } else {
        ""
    };
    for (metric, value) in metrics.iter().filter(|(m, _)| m != "rows") {
        fields.push(Field::new(
            format!("{prefix}{metric}"),
            DataType::Float64,
            true,
        ));
        columns.push(Arc::new(Float64Array::from(vec![
            (!value.is_nan()).then_some(*value),
        ])));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Output::Rows(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter([Ok(batch)]),
    ))))
}

/// The time unit a bgnbd model inherits when OPTIONS do not name one: the unit rfm_summary
/// measured recency and T in, carried in the columns' metadata.
fn time_unit_of(kind: Kind, options: &[(String, String)], schema: &Schema) -> Option<String> {
    if kind != Kind::Bgnbd
        || options
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("time_unit"))
    {
        return None;
    }
    schema
        .fields()
        .iter()
        .find_map(|f| {
            f.metadata()
                .get(tenure_udfs::rfm_summary::TIME_UNIT_METADATA)
        })
        .cloned()
}
