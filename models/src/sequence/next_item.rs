//! Task next_item's training windows and validation.
//!
//! A Transformer learns SASRec's way (Kang & McAuley 2018): attention is causal, so in one
//! forward pass every event's state predicts the event after it, and the summary token
//! predicts the one after the last. A history longer than `max_len` is cut into windows that
//! together predict every token after its first, so nothing a small data set holds is wasted.
//! (An LSTM still learns from one random cut per history and epoch.)
//!
//! Validation holds out the last token of the validation histories; their earlier tokens still
//! train. Rankings leave out the tokens the history already has (exclude_seen), over the
//! whole vocabulary, for the model and for the popularity baseline alike; the popularity
//! blend's β is the one of a small grid that ranks the held-out tokens best.

use std::collections::HashMap;

use candle_core::Device;
use rand::Rng;

use super::batch::{Batch, History, Sample};
use super::spec::{SPECIAL_TOKENS, SequenceSpec, UNKNOWN, top_tokens};
use crate::error::Result;

/// How many top tokens HR and NDCG look at.
pub(super) const TOP_K: usize = 10;

/// Vocabularies up to this size train with the full softmax; larger ones with a sampled one.
pub(super) const FULL_SOFTMAX_MAX: usize = 4096;

/// Random negatives of a sampled softmax, beside the batch's own targets.
pub(super) const SAMPLED_NEGATIVES: usize = 256;

/// Logits one training batch may hold (cells x outputs).
pub(super) const LOGITS_PER_BATCH: usize = 4 << 20;

/// β values the popularity blend chooses from (0: the model alone).
const BLENDS: [f64; 7] = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];

/// A batch and, for the cells ([row * length + step]) that have a known target, the flat
/// cell indices and the target tokens.
pub(super) type CellBatch = (Batch, Vec<u32>, Vec<u32>);

/// One causal training window of a history: the events `start..end`, each predicting the
/// token after it, then the summary token predicting the token at `end`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) row: usize,
    start: usize,
    end: usize,
}

impl Window {
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Windows of at most `max_len` events over the histories `rows`, the last ending at each
/// history's last token, each earlier one ending where the next begins.
pub(super) fn windows(histories: &[History], rows: &[usize], max_len: usize) -> Vec<Window> {
    let mut out = Vec::new();
    for &row in rows {
        let mut end = histories[row].len().saturating_sub(1);
        while end >= 1 {
            let start = end.saturating_sub(max_len);
            out.push(Window { row, start, end });
            end = start;
        }
    }
    out
}

/// The windows as one batch with each cell's next token; None when no target is known.
pub(super) fn window_batch(
    histories: &[History],
    windows: &[Window],
    max_len: usize,
    device: &Device,
) -> Result<Option<CellBatch>> {
    let samples: Vec<Sample<'_>> = windows
        .iter()
        .map(|w| {
            let h = &histories[w.row];
            Sample {
                tokens: &h.tokens[w.start..w.end],
                ages: h.ages.as_deref().map(|a| &a[w.start..w.end]),
                // Ages count back from the predicted event, as at scoring time from now.
                reference: h.ages.as_ref().map_or(0.0, |a| a[w.end]),
            }
        })
        .collect();
    let batch = Batch::new(&samples, max_len, device)?;
    let (mut cells, mut targets) = (Vec::new(), Vec::new());
    for (r, w) in windows.iter().enumerate() {
        let tokens = &histories[w.row].tokens;
        let first = r * batch.length + batch.length - 1 - w.len();
        // Event k predicts token start + k + 1; the summary (k = len) predicts token end.
        for k in 0..=w.len() {
            let target = tokens[(w.start + k + 1).min(w.end)];
            if target != UNKNOWN {
                cells.push((first + k) as u32);
                targets.push(target);
            }
        }
    }
    Ok((!cells.is_empty()).then_some((batch, cells, targets)))
}

/// The output tokens of a sampled softmax and the targets as positions among them: every
/// distinct target of the batch (so the batch's other targets are each other's negatives,
/// sampled by popularity) and SAMPLED_NEGATIVES or a few more draws, uniform over the
/// vocabulary (the vocabulary is larger than FULL_SOFTMAX_MAX, so the draws soon find new ones).
pub(super) fn sampled_outputs(
    targets: &[u32],
    vocabulary_size: usize,
    rng: &mut impl Rng,
) -> (Vec<u32>, Vec<u32>) {
    let mut position: HashMap<u32, u32> = HashMap::new();
    let mut outputs = Vec::new();
    let mut add = |token: u32, outputs: &mut Vec<u32>| {
        *position.entry(token).or_insert_with(|| {
            outputs.push(token);
            (outputs.len() - 1) as u32
        })
    };
    let targets: Vec<u32> = targets.iter().map(|&t| add(t, &mut outputs)).collect();
    // A multiple of 16 outputs where the vocabulary has them, so that the fused CPU linear
    // layer computes the logits.
    let tokens = vocabulary_size - SPECIAL_TOKENS;
    let mut draws = 0;
    while outputs.len() < tokens && (draws < SAMPLED_NEGATIVES || !outputs.len().is_multiple_of(16))
    {
        add(
            rng.random_range(SPECIAL_TOKENS as u32..vocabulary_size as u32),
            &mut outputs,
        );
        draws += 1;
    }
    (outputs, targets)
}

/// A validation case: a history and the token held out after it.
pub(super) type HeldOut = (History, u32);

/// The history without its last known token, and that token; None when fewer than two events
/// or the last is unknown.
pub(super) fn held_out_last(history: &History) -> Option<HeldOut> {
    let n = history.len();
    let target = *history.tokens.last()?;
    if n < 2 || target == UNKNOWN {
        return None;
    }
    let ages = history.ages.as_ref();
    let reference = ages.map_or(0.0, |a| a[n - 1]);
    Some((
        History {
            tokens: history.tokens[..n - 1].to_vec(),
            ages: ages.map(|a| a[..n - 1].iter().map(|x| x - reference).collect()),
        },
        target,
    ))
}

/// The ranking metrics of next-token predictions on held-out cases.
pub(super) struct NextItemScores {
    pub(super) log_loss: f64,
    pub(super) metrics: Vec<(String, f64)>,
    ndcg: f64,
}

/// HR@10 and NDCG@10 of the model (blended by `blend`) and of popularity, and the model's
/// log loss, on `cases` (history, held-out token) with the model's `probabilities`.
pub(super) fn score_cases(
    spec: &SequenceSpec,
    cases: &[HeldOut],
    probabilities: &[Vec<f32>],
    blend: f64,
) -> NextItemScores {
    let mut popular = vec![0f32; spec.vocabulary_size()];
    for (p, &count) in popular[SPECIAL_TOKENS..].iter_mut().zip(&spec.popularity) {
        *p = count as f32;
    }
    let (mut loss, mut hits, mut ndcg, mut pop_hits, mut pop_ndcg) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut scores = Vec::new();
    for ((history, target), p) in cases.iter().zip(probabilities) {
        loss -= f64::from(p[*target as usize].max(1e-12)).ln();
        for (base, blend, hit, gain) in [
            (p, blend, &mut hits, &mut ndcg),
            (&popular, 0.0, &mut pop_hits, &mut pop_ndcg),
        ] {
            scores.clone_from(base);
            spec.next_token_scores(&mut scores, &history.tokens, blend);
            let mut top = top_tokens(&scores, TOP_K);
            // Seen tokens (-1) are no recommendation, as in recommend().
            top.retain(|&(_, score)| score >= 0.0);
            if let Some(rank) = top.iter().position(|&(i, _)| i == *target as usize) {
                *hit += 1.0;
                *gain += 1.0 / (rank as f64 + 2.0).log2();
            }
        }
    }
    let n = cases.len() as f64;
    NextItemScores {
        log_loss: loss / n,
        ndcg: ndcg / n,
        metrics: vec![
            ("hr_at_10".into(), hits / n),
            ("ndcg_at_10".into(), ndcg / n),
            ("popularity_hr_at_10".into(), pop_hits / n),
            ("popularity_ndcg_at_10".into(), pop_ndcg / n),
            ("log_loss".into(), loss / n),
            ("popularity_blend".into(), blend),
            ("rows".into(), n),
        ],
    }
}

/// The β of the grid whose blend ranks the held-out tokens best (NDCG@10; the smallest of
/// equals).
pub(super) fn choose_blend(
    spec: &SequenceSpec,
    cases: &[HeldOut],
    probabilities: &[Vec<f32>],
) -> f64 {
    let mut best = (f64::NEG_INFINITY, 0.0);
    for blend in BLENDS {
        let ndcg = score_cases(spec, cases, probabilities, blend).ndcg;
        if ndcg > best.0 + 1e-12 {
            best = (ndcg, blend);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::sequence::spec::{Architecture, SequenceReport, Task};

    fn history(tokens: &[u32]) -> History {
        History {
            tokens: tokens.to_vec(),
            ages: None,
        }
    }

    #[test]
    fn windows_predict_every_token_after_the_first_once() {
        let long: Vec<u32> = (0..23).map(|i| SPECIAL_TOKENS as u32 + i % 7).collect();
        let histories = vec![
            history(&long),
            history(&[5]),
            history(&[5, 6]),
            history(&[]),
        ];
        let all = windows(&histories, &[0, 1, 2, 3], 5);
        // 22 targets in windows of at most 5 inputs, one window for the pair, none otherwise.
        assert_eq!(all.iter().filter(|w| w.row == 0).count(), 5);
        assert_eq!(all.iter().filter(|w| w.row == 2).count(), 1);
        assert!(all.iter().all(|w| w.row == 0 || w.row == 2 && w.len() == 1));
        let (batch, cells, targets) = window_batch(&histories, &all, 5, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(batch.rows, all.len());
        // Each window's events predict their successors and its summary the window's end
        // (which its last event predicts too): 22 + 1 targets over the long history's windows.
        let mut predicted: Vec<usize> = Vec::new();
        for w in all.iter().filter(|w| w.row == 0) {
            predicted.extend(w.start + 1..=w.end);
        }
        predicted.sort_unstable();
        assert_eq!(predicted, (1..23).collect::<Vec<_>>());
        assert_eq!(cells.len(), targets.len());
        assert_eq!(
            targets.len(),
            all.iter().map(|w| w.len() + 1).sum::<usize>()
        );
        // The long history cycles through 7 tokens, so each of its event cells' targets is the
        // cell's token's successor; summary cells (one a window) predict the window's end.
        let tokens = batch
            .tokens
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        let successor = |t: u32| SPECIAL_TOKENS as u32 + (t - SPECIAL_TOKENS as u32 + 1) % 7;
        let mut summaries = 0;
        for (&cell, &target) in cells.iter().zip(&targets) {
            let input = tokens[cell as usize];
            if input == crate::sequence::spec::SUMMARY {
                summaries += 1;
            } else if (cell as usize) < 5 * batch.length {
                assert_eq!(target, successor(input), "cell {cell}");
            }
        }
        assert_eq!(summaries, all.len());
    }

    #[test]
    fn sampled_outputs_hold_every_target_and_fill_to_sixteen() {
        let targets = [10u32, 12, 10, 9000, 12];
        let (outputs, positions) = sampled_outputs(&targets, 10_000, &mut StdRng::seed_from_u64(1));
        assert!(outputs.len() >= SAMPLED_NEGATIVES && outputs.len() % 16 == 0);
        for (&t, &p) in targets.iter().zip(&positions) {
            assert_eq!(outputs[p as usize], t);
        }
        let mut distinct = outputs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), outputs.len());
        assert!(outputs.iter().all(|&o| o as usize >= SPECIAL_TOKENS));
    }

    #[test]
    fn scores_leave_out_seen_tokens_and_blend_by_history_length() {
        let spec = SequenceSpec {
            task: Task::NextItem,
            architecture: Architecture::Transformer,
            d_model: 4,
            layers: 1,
            heads: 1,
            max_len: 5,
            timed: false,
            vocabulary: vec!["a".into(), "b".into(), "c".into()],
            causal: true,
            tied: true,
            exclude_seen: true,
            popularity: vec![6, 3, 1],
            popularity_blend: 2.0,
            training: SequenceReport {
                rows: 0,
                train_rows: 0,
                validation_rows: 0,
                null_rows: 0,
                best_epoch: 0,
                history: Vec::new(),
                metrics: Vec::new(),
                tokens_per_second: 0.0,
                seconds: 0.0,
            },
        };
        let (a, b, c) = (4u32, 5, 6);
        // The model prefers c; popularity a.
        let model = [0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.7];
        // Two known events (b twice; the unknown token does not count) and β = 2: weights 1/2
        // model, 1/2 popularity; b left out.
        let mut p = model.to_vec();
        spec.next_token_scores(&mut p, &[b, UNKNOWN, b], 2.0);
        assert!((p[a as usize] - (0.5 * 0.1 + 0.5 * 0.6)).abs() < 1e-6);
        assert!((p[c as usize] - (0.5 * 0.7 + 0.5 * 0.1)).abs() < 1e-6);
        assert_eq!(p[b as usize], -1.0);
        // No blend: the model alone.
        let mut p = model.to_vec();
        spec.next_token_scores(&mut p, &[b], 0.0);
        assert_eq!(p[c as usize], 0.7);
        // The blend on the validation cases: popularity's favourite held out after [b] ranks
        // first only with popularity's help.
        let cases = vec![(history(&[b]), a)];
        let blend = choose_blend(&spec, &cases, &[model.to_vec()]);
        assert_eq!(blend, 2.0);
    }
}
