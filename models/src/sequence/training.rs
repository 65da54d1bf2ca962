//! Training a sequence model: the vocabulary from the training rows, the validation split,
//! mini-batches for each task (labelled histories; causal windows, or for the LSTM histories
//! cut before a known next event; masked events), early stopping on the validation loss and
//! the validation metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::batch::{Batch, History, Sample, row_ages};
use super::network::{Network, Noise, dropout};
use super::next_item::{
    CellBatch, FULL_SOFTMAX_MAX, HeldOut, LOGITS_PER_BATCH, SAMPLED_NEGATIVES, Window,
    choose_blend, held_out_last, sampled_outputs, score_cases, window_batch, windows,
};
use super::options::SequenceOptions;
use super::spec::{
    Architecture, MASK, SPECIAL_TOKENS, SequenceReport, SequenceSpec, Task, UNKNOWN, top_tokens,
};
use super::{SequenceInput, SequenceModel};
use crate::data::{TrainingData, random_split, stratified_split};
use crate::error::{Error, Result};
use crate::metrics::BinaryMetrics;
use crate::preprocess::FeatureColumn;
use crate::train::{EarlyStopping, EpochReport, weighted_bce_with_logits};

impl SequenceModel {
    /// Trains on `data`: an event list column, optionally an age list column, and for task
    /// churn the target. `on_epoch` sees each epoch; `cancel` stops at the next mini-batch.
    pub fn train(
        data: &TrainingData,
        options: &SequenceOptions,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<SequenceModel> {
        let started = Instant::now();
        let device = crate::compute::device(&options.device)?;
        let (events, ages) = training_columns(data)?;
        if options.task == Task::Churn && data.target.len() != events.len() {
            return Err(Error::data(
                "task churn needs TARGET: a boolean or 0/1 column, churned or not",
            ));
        }
        // Rows with a NULL event list carry no history to learn from.
        let rows: Vec<usize> = (0..events.len()).filter(|&i| events[i].is_some()).collect();
        let null_rows = (events.len() - rows.len()) as u64;
        if rows.is_empty() {
            return Err(Error::data(if events.is_empty() {
                "the training query returned no rows"
            } else {
                "every event list is NULL"
            }));
        }
        let labels: Vec<bool> = match options.task {
            Task::Churn => rows.iter().map(|&i| data.target[i]).collect(),
            _ => Vec::new(),
        };
        let (train, validation) = split_rows(rows.len(), &labels, options)?;

        // The vocabulary comes from what trains, most frequent first: the training rows, and
        // for next_item the validation rows but for the last token, which is held out.
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let next_item = options.task == Task::NextItem;
        let counted = train
            .iter()
            .map(|&r| (r, 0))
            .chain(validation.iter().filter(|_| next_item).map(|&r| (r, 1)));
        for (r, held_out) in counted {
            let list = events[rows[r]].as_ref().expect("non-NULL rows");
            for token in list[..list.len().saturating_sub(held_out)].iter().flatten() {
                *counts.entry(token.as_str()).or_default() += 1;
            }
        }
        let mut vocabulary: Vec<(&str, u64)> = counts.into_iter().collect();
        vocabulary.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        vocabulary.truncate(options.max_vocabulary);
        let popularity: Vec<u64> = match options.task {
            Task::NextItem => vocabulary.iter().map(|&(_, c)| c).collect(),
            _ => Vec::new(),
        };
        let vocabulary: Vec<String> = vocabulary.into_iter().map(|(t, _)| t.to_string()).collect();
        if vocabulary.is_empty() {
            return Err(Error::data(
                "the training event lists hold no tokens (all empty or NULL)",
            ));
        }
        let index: HashMap<&str, u32> = vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), (i + SPECIAL_TOKENS) as u32))
            .collect();
        let histories: Vec<History> = rows
            .iter()
            .map(|&row| {
                let list = events[row].as_ref().expect("non-NULL rows");
                let tokens: Vec<u32> = list
                    .iter()
                    .map(|t| {
                        t.as_deref()
                            .and_then(|t| index.get(t).copied())
                            .unwrap_or(UNKNOWN)
                    })
                    .collect();
                let ages = row_ages(ages.map(|a| a[row].as_deref()), tokens.len(), row)?;
                Ok(History { tokens, ages })
            })
            .collect::<Result<_>>()?;

        let mut spec = SequenceSpec {
            task: options.task,
            architecture: options.architecture,
            d_model: options.d_model,
            layers: options.layers,
            heads: options.heads,
            max_len: options.max_len,
            timed: ages.is_some(),
            vocabulary,
            causal: next_item && options.architecture == Architecture::Transformer,
            tied: next_item && options.architecture == Architecture::Transformer,
            exclude_seen: next_item && options.exclude_seen,
            popularity,
            popularity_blend: 0.0,
            training: SequenceReport {
                rows: rows.len() as u64,
                train_rows: train.len() as u64,
                validation_rows: validation.len() as u64,
                null_rows,
                best_epoch: 0,
                history: Vec::new(),
                metrics: Vec::new(),
                tokens_per_second: 0.0,
                seconds: 0.0,
            },
        };
        // next_item trains on the validation histories too, without their held-out last token.
        let (trained_rows, trained_histories) = if next_item {
            let mut trained = histories.clone();
            for &v in &validation {
                if let Some((prefix, _)) = held_out_last(&histories[v]) {
                    trained[v] = prefix;
                }
            }
            (
                (0..histories.len()).collect(),
                std::borrow::Cow::Owned(trained),
            )
        } else {
            (train.clone(), std::borrow::Cow::Borrowed(&histories))
        };
        let mut trainer = Trainer::new(&spec, options, &device, &trained_histories, &labels)?;
        let mut stopping = EarlyStopping::new(options.training.patience);
        let (mut tokens_seen, mut train_seconds) = (0usize, 0.0);
        for epoch in 1..=options.training.epochs {
            let epoch_started = Instant::now();
            let (train_loss, tokens) = trainer.epoch(&spec, &trained_rows, cancel)?;
            tokens_seen += tokens;
            train_seconds += epoch_started.elapsed().as_secs_f64();
            let snapshot = trainer.snapshot()?;
            let model = SequenceModel::new(spec.clone(), snapshot, device.clone())?;
            let evaluation = model.evaluate(&histories, &validation, &labels, options.seed)?;
            let report = EpochReport {
                epoch,
                epochs: options.training.epochs,
                train_loss,
                validation_loss: evaluation.loss,
                validation_auc: evaluation.auc,
                seconds: epoch_started.elapsed().as_secs_f64(),
            };
            on_epoch(&report);
            spec.training.history.push(report);
            if stopping.record(epoch, evaluation.loss, || Ok(model.weights))? {
                break;
            }
        }
        let (best_epoch, weights) = stopping.best();
        let mut model = SequenceModel::new(spec, weights, device)?;
        if next_item {
            let (cases, probabilities) = model.next_item_cases(&histories, &validation)?;
            model.spec.popularity_blend = choose_blend(&model.spec, &cases, &probabilities);
        }
        let evaluation = model.evaluate(&histories, &validation, &labels, options.seed)?;
        let report = &mut model.spec.training;
        report.best_epoch = best_epoch;
        report.metrics = evaluation.metrics;
        report.tokens_per_second = tokens_seen as f64 / train_seconds.max(1e-9);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Validation loss and metrics on the rows `validation` of `histories`.
    fn evaluate(
        &self,
        histories: &[History],
        validation: &[usize],
        labels: &[bool],
        seed: u64,
    ) -> Result<Evaluation> {
        let network = self.network();
        match self.spec.task {
            Task::Churn => {
                let input = SequenceInput {
                    histories: validation
                        .iter()
                        .map(|&i| Some(histories[i].clone()))
                        .collect(),
                };
                let scores: Vec<f64> = self
                    .chunked(&input, |batch, _| {
                        let logits =
                            network.head(&network.summary(batch, &mut None)?, &mut None)?;
                        let p = candle_nn::ops::sigmoid(&logits.flatten_all()?)?;
                        Ok(p.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
                    })?
                    .into_iter()
                    .map(|s| s.expect("no NULL rows"))
                    .collect();
                let y: Vec<bool> = validation.iter().map(|&i| labels[i]).collect();
                let metrics = BinaryMetrics::compute(&scores, &y, 0.5);
                Ok(Evaluation {
                    loss: metrics.log_loss,
                    auc: Some(metrics.roc_auc),
                    metrics: named(metrics.named()),
                })
            }
            Task::NextItem => {
                let (cases, probabilities) = self.next_item_cases(histories, validation)?;
                let scores = score_cases(
                    &self.spec,
                    &cases,
                    &probabilities,
                    self.spec.popularity_blend,
                );
                Ok(Evaluation {
                    loss: scores.log_loss,
                    auc: None,
                    metrics: scores.metrics,
                })
            }
            Task::Embedding => {
                // The same masks every epoch, so validation losses compare.
                let mut rng = StdRng::seed_from_u64(seed ^ 0x6d61_736b);
                let (mut loss, mut correct, mut masked) = (0.0, 0.0, 0.0);
                let mut rows: Vec<usize> = validation.to_vec();
                rows.sort_by_key(|&i| histories[i].len());
                for chunk in rows.chunks(256) {
                    let Some((batch, positions, targets)) =
                        masked_batch(&self.spec, histories, chunk, &mut rng, &self.device)?
                    else {
                        continue;
                    };
                    let logits = cell_logits(&network, &batch, &positions, &mut None)?;
                    let log_p =
                        candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
                    for (row, &target) in log_p.iter().zip(&targets) {
                        loss -= f64::from(row[target as usize]);
                        let best = top_tokens(row, 1)[0].0;
                        correct += f64::from(u8::from(best == target as usize));
                        masked += 1.0;
                    }
                }
                if masked == 0.0 {
                    return Err(Error::data(
                        "the validation histories hold no events to mask",
                    ));
                }
                Ok(Evaluation {
                    loss: loss / masked,
                    auc: None,
                    metrics: vec![
                        ("masked_accuracy".into(), correct / masked),
                        ("masked_log_loss".into(), loss / masked),
                        ("rows".into(), validation.len() as f64),
                    ],
                })
            }
        }
    }
}

impl SequenceModel {
    /// The held-out last token of each validation history with the model's next-token
    /// probabilities for the rest of it.
    fn next_item_cases(
        &self,
        histories: &[History],
        validation: &[usize],
    ) -> Result<(Vec<HeldOut>, Vec<Vec<f32>>)> {
        let cases: Vec<HeldOut> = validation
            .iter()
            .filter_map(|&i| held_out_last(&histories[i]))
            .collect();
        if cases.is_empty() {
            return Err(Error::data(
                "no validation history has two or more known events to hold one out",
            ));
        }
        let input = SequenceInput {
            histories: cases.iter().map(|(h, _)| Some(h.clone())).collect(),
        };
        let network = self.network();
        let probabilities = self
            .chunked(&input, |batch, _| {
                let logits = network.head(&network.summary(batch, &mut None)?, &mut None)?;
                Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
            })?
            .into_iter()
            .map(|p| p.expect("no NULL rows"))
            .collect();
        Ok((cases, probabilities))
    }
}

struct Evaluation {
    loss: f64,
    auc: Option<f64>,
    metrics: Vec<(String, f64)>,
}

fn named(pairs: Vec<(&'static str, f64)>) -> Vec<(String, f64)> {
    pairs.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

type TextLists<'a> = &'a [Option<Vec<Option<String>>>];
type NumberLists<'a> = &'a [Option<Vec<f64>>];

/// The event list column and the optional age list column of the training data.
fn training_columns(data: &TrainingData) -> Result<(TextLists<'_>, Option<NumberLists<'_>>)> {
    let usage = "KIND sequence trains on a list of event tokens (e.g. array_agg(event_type \
                 ORDER BY event_time)), optionally followed by a list of each event's age in \
                 days, and for task churn the TARGET";
    let names: Vec<&str> = data.features.iter().map(|(n, _)| n.as_str()).collect();
    match data.features.as_slice() {
        [(_, FeatureColumn::TextList(events))] => Ok((events, None)),
        [
            (_, FeatureColumn::TextList(events)),
            (_, FeatureColumn::NumberList(ages)),
        ] => Ok((events, Some(ages))),
        _ => Err(Error::data(format!(
            "{usage}; the query returned {} column{} ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ))),
    }
}

/// Train and validation row numbers: stratified by label for churn, random otherwise.
fn split_rows(
    rows: usize,
    labels: &[bool],
    options: &SequenceOptions,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if rows < 2 {
        return Err(Error::data(format!(
            "{rows} usable row; training needs at least 2 (one to validate on)"
        )));
    }
    if options.task == Task::Churn {
        let positives = labels.iter().filter(|&&y| y).count();
        if positives == 0 || positives == labels.len() {
            return Err(Error::data(format!(
                "the target has a single class ({} in all {} rows); churn needs both",
                positives > 0,
                labels.len()
            )));
        }
        if positives < 2 || labels.len() - positives < 2 {
            return Err(Error::data(
                "each class needs at least 2 rows to split into training and validation",
            ));
        }
        return Ok(stratified_split(
            labels,
            options.training.validation_fraction,
            options.seed,
        ));
    }
    Ok(random_split(
        rows,
        options.training.validation_fraction,
        1,
        &mut StdRng::seed_from_u64(options.seed ^ 0x5eed_5911_7000_0001),
    ))
}

/// A batch of histories with about 15% of events (at least one per non-empty row) replaced by
/// the mask token; returns the flat positions ([row * length + step]) and the original tokens.
/// None when no row has an event.
fn masked_batch(
    spec: &SequenceSpec,
    histories: &[History],
    rows: &[usize],
    rng: &mut StdRng,
    device: &Device,
) -> Result<Option<CellBatch>> {
    let mut masked: Vec<Vec<u32>> = Vec::with_capacity(rows.len());
    let mut picks: Vec<Vec<usize>> = Vec::with_capacity(rows.len());
    for &i in rows {
        let h = &histories[i];
        let n = h.len().min(spec.max_len);
        let skip = h.len() - n;
        let mut tokens = h.tokens[skip..].to_vec();
        let mut chosen: Vec<usize> = (0..n).filter(|_| rng.random::<f32>() < 0.15).collect();
        if chosen.is_empty() && n > 0 {
            chosen.push(rng.random_range(0..n));
        }
        for &k in &chosen {
            tokens[k] = MASK;
        }
        masked.push(tokens);
        picks.push(chosen);
    }
    if picks.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let samples: Vec<Sample<'_>> = rows
        .iter()
        .zip(&masked)
        .map(|(&i, tokens)| {
            let h = &histories[i];
            let skip = h.len() - tokens.len();
            Sample {
                tokens,
                ages: h.ages.as_deref().map(|a| &a[skip..]),
                reference: 0.0,
            }
        })
        .collect();
    let batch = Batch::new(&samples, spec.max_len, device)?;
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    for (r, (&i, chosen)) in rows.iter().zip(&picks).enumerate() {
        let h = &histories[i];
        let n = masked[r].len();
        let skip = h.len() - n;
        let start = r * batch.length + batch.length - 1 - n;
        for &k in chosen {
            positions.push((start + k) as u32);
            targets.push(h.tokens[skip + k]);
        }
    }
    Ok(Some((batch, positions, targets)))
}

/// Final states at the flat cells `positions` ([row * length + step]), [cells, D].
fn cell_states(
    network: &Network<'_>,
    batch: &Batch,
    positions: &[u32],
    noise: &mut Option<Noise<'_>>,
) -> Result<Tensor> {
    let states = network.encode(batch, noise, false)?;
    let flat = states.reshape((batch.rows * batch.length, network.spec.d_model))?;
    let index = Tensor::from_vec(positions.to_vec(), positions.len(), flat.device())?;
    Ok(flat.index_select(&index, 0)?)
}

/// Token logits at the flat cells `positions`, [cells, V].
fn cell_logits(
    network: &Network<'_>,
    batch: &Batch,
    positions: &[u32],
    noise: &mut Option<Noise<'_>>,
) -> Result<Tensor> {
    network.head(&cell_states(network, batch, positions, noise)?, noise)
}

/// The training state: variables, optimiser, generator.
struct Trainer<'a> {
    vars: Vec<(String, Var)>,
    weights: HashMap<String, Tensor>,
    optimizer: AdamW,
    rng: StdRng,
    options: &'a SequenceOptions,
    device: &'a Device,
    histories: &'a [History],
    labels: &'a [bool],
}

impl<'a> Trainer<'a> {
    fn new(
        spec: &SequenceSpec,
        options: &'a SequenceOptions,
        device: &'a Device,
        histories: &'a [History],
        labels: &'a [bool],
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut vars = Vec::new();
        for (name, shape) in spec.shapes() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.ends_with("ln.weight")
                || name.contains(".ln") && name.ends_with(".weight")
            {
                vec![1.0; n]
            } else if shape.len() == 2 && !name.contains('.') {
                // Embedding tables.
                (0..n).map(|_| rng.random_range(-0.1f32..=0.1)).collect()
            } else {
                let bound = 1.0 / (shape[shape.len() - 1] as f32).sqrt();
                (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
            };
            vars.push((name, Var::from_vec(values, shape.as_slice(), device)?));
        }
        let optimizer = AdamW::new(
            vars.iter().map(|(_, v)| v.clone()).collect(),
            options.training.adamw(),
        )?;
        let weights = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        Ok(Trainer {
            vars,
            weights,
            optimizer,
            rng,
            options,
            device,
            histories,
            labels,
        })
    }

    /// Independent copies of the current weights.
    fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// Mini-batches of `size` items of similar length, in random order: items are shuffled,
    /// sorted by length within spans of 32 batches, cut into batches, and the batches shuffled.
    fn batches<T: Clone>(
        &mut self,
        items: &[T],
        size: usize,
        length: impl Fn(&T) -> usize,
    ) -> Vec<Vec<T>> {
        let mut order = items.to_vec();
        order.shuffle(&mut self.rng);
        let mut batches = Vec::new();
        for span in order.chunks_mut(size * 32) {
            span.sort_by_key(|item| length(item).min(self.options.max_len));
            batches.extend(span.chunks(size).map(<[T]>::to_vec));
        }
        batches.shuffle(&mut self.rng);
        batches
    }

    /// One pass of a causal next_item model over the windows of the histories `train`, every
    /// cell predicting its next token; returns the mean loss and the tokens processed.
    fn causal_epoch(
        &mut self,
        spec: &SequenceSpec,
        train: &[usize],
        cancel: &AtomicBool,
    ) -> Result<(f64, usize)> {
        let all: Vec<Window> = windows(self.histories, train, spec.max_len);
        let vocabulary = spec.vocabulary_size();
        let full = vocabulary <= FULL_SOFTMAX_MAX;
        // A batch's logits are cells x outputs (the vocabulary, or for a sampled softmax about
        // the cells plus the negatives): keep them to LOGITS_PER_BATCH numbers. Larger
        // buffers are fresh pages the kernel zeroes; a profile of 64 M-number batches spent a
        // quarter of the time there.
        let mean_cells =
            all.iter().map(|w| w.len() + 1).sum::<usize>() as f64 / all.len().max(1) as f64;
        let budget = LOGITS_PER_BATCH as f64;
        let cells = if full {
            budget / vocabulary as f64
        } else {
            let n = SAMPLED_NEGATIVES as f64;
            ((n * n + 4.0 * budget).sqrt() - n) / 2.0
        };
        let size = ((cells / mean_cells) as usize).clamp(1, self.options.training.batch_size);
        let (mut loss_sum, mut count, mut tokens) = (0.0, 0.0, 0usize);
        for batch_windows in self.batches(&all, size, Window::len) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let Some((batch, cells, targets)) =
                window_batch(self.histories, &batch_windows, spec.max_len, self.device)?
            else {
                continue;
            };
            let network = Network {
                spec,
                weights: &self.weights,
                cpu_lstm: None,
                fused: true,
            };
            let (outputs, targets) = if full {
                (None, targets)
            } else {
                let (outputs, targets) = sampled_outputs(&targets, vocabulary, &mut self.rng);
                (Some(outputs), targets)
            };
            let mut noise = Some(Noise {
                rng: &mut self.rng,
                rate: self.options.dropout as f32,
            });
            let logits = match outputs {
                None => cell_logits(&network, &batch, &cells, &mut noise)?,
                Some(outputs) => {
                    let states = dropout(
                        &cell_states(&network, &batch, &cells, &mut noise)?,
                        &mut noise,
                    )?;
                    let outputs = Tensor::from_vec(outputs.clone(), outputs.len(), self.device)?;
                    let w = network.w("head.weight")?.index_select(&outputs, 0)?;
                    let b = network.w("head.bias")?.index_select(&outputs, 0)?;
                    match crate::kernels::fused::linear(&states, &w, &b, false)? {
                        Some(logits) => logits,
                        None => states.matmul(&w.t()?)?.broadcast_add(&b)?,
                    }
                }
            };
            let n = targets.len();
            let targets = Tensor::from_vec(targets, n, self.device)?;
            let loss = crate::kernels::cross_entropy::cross_entropy(&logits, &targets)?;
            self.optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * n as f64;
            count += n as f64;
            tokens += batch.token_count;
        }
        Ok((loss_sum / count.max(1.0), tokens))
    }

    /// One pass over `train`; returns the mean training loss and the tokens processed.
    fn epoch(
        &mut self,
        spec: &SequenceSpec,
        train: &[usize],
        cancel: &AtomicBool,
    ) -> Result<(f64, usize)> {
        if spec.causal {
            return self.causal_epoch(spec, train, cancel);
        }
        let (mut loss_sum, mut count, mut tokens) = (0.0, 0.0, 0usize);
        let histories = self.histories;
        let size = self.options.training.batch_size;
        for rows in self.batches(train, size, |&i| histories[i].len()) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let network = Network {
                spec,
                weights: &self.weights,
                cpu_lstm: None,
                fused: true,
            };
            let rate = self.options.dropout as f32;
            let (loss, n, batch_tokens) = match spec.task {
                Task::Churn => {
                    let samples: Vec<Sample<'_>> = rows
                        .iter()
                        .map(|&i| Sample {
                            tokens: &self.histories[i].tokens,
                            ages: self.histories[i].ages.as_deref(),
                            reference: 0.0,
                        })
                        .collect();
                    let batch = Batch::new(&samples, spec.max_len, self.device)?;
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = network
                        .head(&network.summary(&batch, &mut noise)?, &mut noise)?
                        .flatten_all()?;
                    let y: Vec<f32> = rows
                        .iter()
                        .map(|&i| f32::from(u8::from(self.labels[i])))
                        .collect();
                    let y = Tensor::from_vec(y, rows.len(), self.device)?;
                    let w = Tensor::ones(rows.len(), DType::F32, self.device)?;
                    let loss = (weighted_bce_with_logits(&logits, &y, &w)? / rows.len() as f64)?;
                    (loss, rows.len(), batch.token_count)
                }
                Task::NextItem => {
                    // Cut each history at a random point with a known next token.
                    let mut cuts = Vec::new();
                    for &i in &rows {
                        let h = &self.histories[i];
                        let known: Vec<usize> =
                            (1..h.len()).filter(|&k| h.tokens[k] != UNKNOWN).collect();
                        if let Some(&k) = known.choose(&mut self.rng) {
                            cuts.push((i, k));
                        }
                    }
                    if cuts.is_empty() {
                        continue;
                    }
                    let samples: Vec<Sample<'_>> = cuts
                        .iter()
                        .map(|&(i, k)| {
                            let h = &self.histories[i];
                            Sample {
                                tokens: &h.tokens[..k],
                                ages: h.ages.as_deref().map(|a| &a[..k]),
                                reference: h.ages.as_ref().map_or(0.0, |a| a[k]),
                            }
                        })
                        .collect();
                    let batch = Batch::new(&samples, spec.max_len, self.device)?;
                    let targets: Vec<u32> = cuts
                        .iter()
                        .map(|&(i, k)| self.histories[i].tokens[k])
                        .collect();
                    let targets = Tensor::from_vec(targets, cuts.len(), self.device)?;
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = network.head(&network.summary(&batch, &mut noise)?, &mut noise)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
                    (loss, cuts.len(), batch.token_count)
                }
                Task::Embedding => {
                    let Some((batch, positions, targets)) =
                        masked_batch(spec, self.histories, &rows, &mut self.rng, self.device)?
                    else {
                        continue;
                    };
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = cell_logits(&network, &batch, &positions, &mut noise)?;
                    let n = targets.len();
                    let targets = Tensor::from_vec(targets, n, self.device)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
                    (loss, n, batch.token_count)
                }
            };
            self.optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * n as f64;
            count += n as f64;
            tokens += batch_tokens;
        }
        Ok((loss_sum / count.max(1.0), tokens))
    }
}
