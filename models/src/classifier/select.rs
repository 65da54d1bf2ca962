//! `model = 'auto'`: stratified k-fold cross-validation over the families and a small grid,
//! the best mean held-out ROC AUC refitted on every row, for as many epochs (trees) as early
//! stopping chose on average in its folds. The model's validation metrics are its
//! out-of-fold predictions'.
//!
//! Candidates run cheapest first: logistic regression, trees of 7 and of 31 leaves, the MLP,
//! and last a blend (the mean log-odds) of the best network and the best trees, scored from
//! their out-of-fold predictions. A time budget stops the search between folds; candidates it
//! cut short are reported with the folds they finished and are not chosen.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::options::CANDIDATES;
use super::{Classifier, ClassifierOptions, Family, logit, validate};
use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::gbdt::{GbdtOptions, sigmoid};
use crate::metrics::{BinaryMetrics, calibration_table, roc_auc};
use crate::train::EpochReport;

/// One candidate's cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// e.g. 'gbdt_31_leaves', 'logistic', 'mlp_64_32'.
    pub name: String,
    /// Held-out ROC AUC of each fold finished.
    pub fold_auc: Vec<f64>,
    #[serde(with = "crate::metrics::nan_as_null")]
    pub mean_auc: f64,
    /// NaN with a single fold finished.
    #[serde(with = "crate::metrics::nan_as_null")]
    pub sd_auc: f64,
    pub seconds: f64,
    /// Whether this candidate was refitted as the model.
    pub chosen: bool,
}

/// The candidates, cheapest first.
fn candidates(options: &ClassifierOptions) -> Vec<(String, ClassifierOptions)> {
    let defaults = GbdtOptions::defaults();
    let trees = |leaves: usize, learning_rate: f64| {
        let mut o = options.with_family(Family::Gbdt);
        o.gbdt.grow.num_leaves = leaves;
        o.gbdt.grow.learning_rate = learning_rate;
        o.gbdt.patience = defaults.patience;
        o
    };
    let mut mlp = options.with_family(Family::Mlp);
    mlp.hidden = vec![64, 32];
    let all = [
        options.with_family(Family::Logistic),
        trees(7, 0.05),
        trees(31, 0.05),
        mlp,
    ];
    CANDIDATES
        .iter()
        .zip(all)
        .filter(|(name, _)| {
            options.candidates.is_empty() || options.candidates.iter().any(|c| c == *name)
        })
        .map(|(name, o)| (name.to_string(), o))
        .collect()
}

/// Each row's fold: every class's rows shuffled and dealt round-robin.
fn stratified_folds(target: &[bool], folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xf01d_5eed);
    let mut fold = vec![0; target.len()];
    for class in [false, true] {
        let mut rows: Vec<usize> = (0..target.len()).filter(|&i| target[i] == class).collect();
        rows.shuffle(&mut rng);
        for (i, row) in rows.into_iter().enumerate() {
            fold[row] = i % folds;
        }
    }
    fold
}

pub(super) fn train(
    data: &TrainingData,
    options: &ClassifierOptions,
    on_epoch: &mut dyn FnMut(&EpochReport),
    cancel: &AtomicBool,
) -> Result<Classifier> {
    validate(data, options)?;
    let rows = data.rows();
    let positives = data.target.iter().filter(|&&y| y).count();
    let rarest = positives.min(rows - positives);
    let k = options.folds;
    // Each held-out fold needs both classes, and each training part enough of each to split.
    if rarest < 2 * k {
        return Err(Error::data(format!(
            "folds = {k} needs at least {} rows of each class, and the target is {} in only \
             {rarest} rows; lower folds or choose a model ('logistic', 'mlp' or 'gbdt')",
            2 * k,
            positives == rarest
        )));
    }
    let started = Instant::now();
    let fold_of = stratified_folds(&data.target, k, options.seed);
    let folds: Vec<(Vec<usize>, TrainingData)> = (0..k)
        .map(|fold| {
            let (train, held): (Vec<usize>, Vec<usize>) =
                (0..rows).partition(|&r| fold_of[r] != fold);
            let held_out = data.subset(&held, &data.target);
            (train, held_out)
        })
        .collect();
    let mut scores = Vec::new();
    let mut runs: Vec<CandidateRun> = Vec::new();
    let mut members: Option<(usize, usize)> = None;
    'candidates: for (name, candidate) in candidates(options) {
        let candidate_started = Instant::now();
        let mut run = CandidateRun {
            out_of_fold: vec![f64::NAN; rows],
            models: Vec::new(),
        };
        let mut fold_auc = Vec::new();
        for (fold, (train, held_out)) in folds.iter().enumerate() {
            // The first candidate always finishes (one candidate must), unless its first
            // fold alone overruns the budget, which is an error below.
            let first_candidate = scores.is_empty();
            let first_fold = first_candidate && fold_auc.is_empty();
            if let Some(budget) = options.time_budget
                && !first_candidate
                && started.elapsed().as_secs_f64() > budget
            {
                scores.push(score(name, fold_auc, candidate_started));
                runs.push(run);
                break 'candidates;
            }
            let model = Classifier::train(
                &data.subset(train, &data.target),
                &candidate,
                on_epoch,
                cancel,
            )?;
            let p = held_out.score(|values| model.predict(values))?;
            fold_auc.push(roc_auc(&p, &held_out.target));
            for (row, p) in (0..rows).filter(|&r| fold_of[r] == fold).zip(p) {
                run.out_of_fold[row] = p;
            }
            run.models.push(model);
            if let Some(budget) = options.time_budget
                && first_fold
                && started.elapsed().as_secs_f64() > budget
            {
                return Err(Error::option(format!(
                    "time_budget = {budget} seconds is too short to cross-validate one \
                     candidate (one fold of '{name}' took {:.1} s); raise it, or choose a model",
                    started.elapsed().as_secs_f64()
                )));
            }
        }
        scores.push(score(name, fold_auc, candidate_started));
        runs.push(run);
    }

    // A blend of the best network (logistic or MLP) and the best trees, scored on the same
    // folds from the out-of-fold predictions: no extra training.
    let mut tried = candidates(options);
    let best_of = |family: &[Family]| {
        scores
            .iter()
            .enumerate()
            .filter(|(i, s)| s.fold_auc.len() == k && family.contains(&tried[*i].1.family))
            .max_by(|a, b| a.1.mean_auc.total_cmp(&b.1.mean_auc))
            .map(|(i, _)| i)
    };
    if let (Some(a), Some(b)) = (
        best_of(&[Family::Logistic, Family::Mlp]),
        best_of(&[Family::Gbdt]),
    ) {
        let blend_started = Instant::now();
        let out_of_fold: Vec<f64> = runs[a]
            .out_of_fold
            .iter()
            .zip(&runs[b].out_of_fold)
            .map(|(&p, &q)| sigmoid((logit(p) + logit(q)) / 2.0))
            .collect();
        let fold_auc = (0..k)
            .map(|fold| {
                let rows: Vec<usize> = (0..rows).filter(|&r| fold_of[r] == fold).collect();
                let p: Vec<f64> = rows.iter().map(|&r| out_of_fold[r]).collect();
                let y: Vec<bool> = rows.iter().map(|&r| data.target[r]).collect();
                roc_auc(&p, &y)
            })
            .collect();
        let models = runs[a]
            .models
            .iter()
            .zip(&runs[b].models)
            .map(|(m, n)| Classifier::blend(vec![m.clone(), n.clone()], m.spec.training.clone()))
            .collect();
        let name = format!("blend_{}_{}", scores[a].name, scores[b].name);
        let mut blend = score(name.clone(), fold_auc, blend_started);
        blend.seconds += scores[a].seconds + scores[b].seconds;
        scores.push(blend);
        runs.push(CandidateRun {
            out_of_fold,
            models,
        });
        let mut options = options.with_family(Family::Blend);
        options.hidden.clear();
        tried.push((name, options));
        members = Some((a, b));
    }

    // The best mean held-out AUC among the candidates that finished every fold; ties go to
    // the cheaper one (tried earlier).
    let best = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.fold_auc.len() == k)
        .fold(None::<(usize, f64)>, |best, (i, s)| match best {
            Some((_, auc)) if auc >= s.mean_auc => best,
            _ => Some((i, s.mean_auc)),
        })
        .map(|(i, _)| i)
        .expect("the first candidate finishes every fold or training fails");
    scores[best].chosen = true;
    let run = &runs[best];
    let mut model = if tried[best].1.family == Family::Blend {
        let (a, b) = members.expect("a blend was tried");
        let refitted = [a, b]
            .into_iter()
            .map(|i| refit(data, &tried[i].1, &runs[i], on_epoch, cancel))
            .collect::<Result<Vec<_>>>()?;
        let training = refitted[0].spec.training.clone();
        Classifier::blend(refitted, training)
    } else {
        refit(data, &tried[best].1, run, on_epoch, cancel)?
    };

    if let Some((a, b)) = members.filter(|_| tried[best].1.family == Family::Blend) {
        for (member, i) in model.members.iter_mut().zip([a, b]) {
            adopt_cross_validation(member, &runs[i], &folds, data, options)?;
        }
        model.spec.members = model.members.iter().map(|m| m.spec.clone()).collect();
    }
    adopt_cross_validation(&mut model, &runs[best], &folds, data, options)?;
    model.spec.training.seconds = started.elapsed().as_secs_f64();
    model.spec.selection = scores;
    Ok(model)
}

/// `candidate` trained on every row, as long as its fold models trained on average (their
/// early stopping chose that on held-out rows).
fn refit(
    data: &TrainingData,
    candidate: &ClassifierOptions,
    run: &CandidateRun,
    on_epoch: &mut dyn FnMut(&EpochReport),
    cancel: &AtomicBool,
) -> Result<Classifier> {
    let mean_best = run
        .models
        .iter()
        .map(|m| m.spec.training.best_epoch as f64)
        .sum::<f64>()
        / run.models.len() as f64;
    let length = (mean_best.round() as usize).max(1);
    let mut chosen = candidate.clone();
    chosen.refit = true;
    chosen.training.epochs = length;
    chosen.training.patience = length;
    chosen.gbdt.trees = length;
    chosen.gbdt.patience = length;
    Classifier::train(data, &chosen, on_epoch, cancel)
}

/// Gives a refitted `model`, which has no held-out rows, the folds' validation figures:
/// metrics and calibration from the out-of-fold predictions of every row, importance as the
/// mean over the fold models of their importance on the fold they did not see.
fn adopt_cross_validation(
    model: &mut Classifier,
    run: &CandidateRun,
    folds: &[(Vec<usize>, TrainingData)],
    data: &TrainingData,
    options: &ClassifierOptions,
) -> Result<()> {
    let k = folds.len() as f64;
    let shap_importance = if model.members.is_empty() {
        mean_of(run.models.iter().map(|m| &m.spec.training.shap_importance))
    } else {
        blend_mean_abs_contributions(run, folds, data)?
    };
    let training = &mut model.spec.training;
    training.validation = BinaryMetrics::compute(&run.out_of_fold, &data.target, options.threshold);
    training.calibration = calibration_table(&run.out_of_fold, &data.target);
    training.validation_rows = data.rows() as u64;
    let mut importance = vec![0.0; data.features.len()];
    for (fold_model, (_, held_out)) in run.models.iter().zip(folds) {
        let drops = permutation_importance(fold_model, held_out, options.seed)?;
        for (total, drop) in importance.iter_mut().zip(drops) {
            *total += drop / k;
        }
    }
    training.importance = data
        .features
        .iter()
        .map(|(name, _)| name.clone())
        .zip(importance)
        .collect();
    training.shap_importance = shap_importance;
    Ok(())
}

/// Held-out rows of each fold whose explanations give a blend's mean |contribution|.
const BLEND_EXPLAINED_ROWS: usize = 1_000;

/// A blend's mean |explain() contribution| per feature, in log-odds: on up to
/// BLEND_EXPLAINED_ROWS held-out rows of each fold, by the fold's blend, averaged over the
/// folds. A blend's explanation is the mean of its members' (TreeSHAP for the trees,
/// integrated gradients for a network), so this is the blend's own figure, not a mean of its
/// members' figures.
fn blend_mean_abs_contributions(
    run: &CandidateRun,
    folds: &[(Vec<usize>, TrainingData)],
    data: &TrainingData,
) -> Result<Vec<(String, f64)>> {
    let mut totals = vec![0.0; data.features.len()];
    for (fold_model, (_, held_out)) in run.models.iter().zip(folds) {
        let rows: Vec<usize> = (0..held_out.rows().min(BLEND_EXPLAINED_ROWS)).collect();
        let sample = held_out.subset(&rows, &held_out.target);
        let explanation = sample.with_values(|values| fold_model.explain(values))?;
        let n = explanation.contributions.len().max(1) as f64 * folds.len() as f64;
        for row in &explanation.contributions {
            for (total, c) in totals.iter_mut().zip(row) {
                *total += c.abs() / n;
            }
        }
    }
    Ok(data
        .features
        .iter()
        .map(|(name, _)| name.clone())
        .zip(totals)
        .collect())
}

/// One candidate's fold models and the prediction for each row from the model that did not
/// train on it.
struct CandidateRun {
    out_of_fold: Vec<f64>,
    models: Vec<Classifier>,
}

/// The drop in ROC AUC on `held_out` when each feature's values are shuffled.
fn permutation_importance(
    model: &Classifier,
    held_out: &TrainingData,
    seed: u64,
) -> Result<Vec<f64>> {
    let base = roc_auc(&held_out.score(|v| model.predict(v))?, &held_out.target);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1a9_0a7a);
    let mut order: Vec<usize> = (0..held_out.rows()).collect();
    let mut shuffled = held_out.clone();
    (0..held_out.features.len())
        .map(|f| {
            order.shuffle(&mut rng);
            shuffled.features[f].1 = held_out.features[f].1.select(&order);
            let auc = roc_auc(&shuffled.score(|v| model.predict(v))?, &held_out.target);
            shuffled.features[f].1.clone_from(&held_out.features[f].1);
            Ok(base - auc)
        })
        .collect()
}

/// The mean per feature of the fold models' (name, value) lists; empty when they are.
fn mean_of<'a>(lists: impl Iterator<Item = &'a Vec<(String, f64)>>) -> Vec<(String, f64)> {
    let lists: Vec<&Vec<(String, f64)>> = lists.filter(|l| !l.is_empty()).collect();
    let Some(first) = lists.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let mean = lists.iter().map(|l| l[i].1).sum::<f64>() / lists.len() as f64;
            (name.clone(), mean)
        })
        .collect()
}

fn score(name: String, fold_auc: Vec<f64>, started: Instant) -> CandidateScore {
    let n = fold_auc.len() as f64;
    let mean = fold_auc.iter().sum::<f64>() / n.max(1.0);
    let variance = if fold_auc.len() > 1 {
        fold_auc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        f64::NAN
    };
    CandidateScore {
        name,
        mean_auc: if fold_auc.is_empty() { f64::NAN } else { mean },
        sd_auc: variance.sqrt(),
        fold_auc,
        seconds: started.elapsed().as_secs_f64(),
        chosen: false,
    }
}
