//! Small draws and formulas the simulation is made of: random variates, weighted picks,
//! ratings, payment mixes, and the seeds of independent random streams.

use rand::Rng;
use rand_distr::{Exp1, StandardNormal};

use super::clock::WINDOW_DAYS;
use super::params::*;

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub(crate) fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

pub(crate) fn exp1<R: Rng>(rng: &mut R) -> f64 {
    rng.sample::<f64, _>(Exp1)
}

pub(crate) fn normal<R: Rng>(rng: &mut R) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

/// Index drawn with probability proportional to `weights`.
pub(crate) fn pick<R: Rng>(rng: &mut R, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    // Rounding left `u` past the end: the last category that can be drawn.
    weights
        .iter()
        .rposition(|w| *w > 0.0)
        .unwrap_or(weights.len() - 1)
}

/// Index drawn from a cumulative distribution whose last entry is 1.
pub(crate) fn pick_cumulative<R: Rng>(rng: &mut R, cum: &[f64]) -> usize {
    let u = rng.random::<f64>();
    cum.partition_point(|&c| c <= u).min(cum.len() - 1)
}

/// Geometric count (failures before a stop) with the given mean, at most `cap`.
pub(crate) fn geometric<R: Rng>(rng: &mut R, mean: f64, cap: usize) -> usize {
    let go_on = mean / (1.0 + mean);
    let mut n = 0;
    while n < cap && rng.random::<f64>() < go_on {
        n += 1;
    }
    n
}

/// A country other than `home`, drawn by population.
pub(crate) fn other_country<R: Rng>(rng: &mut R, home: usize) -> usize {
    let mut weights = COUNTRY_WEIGHTS;
    weights[home] = 0.0;
    pick(rng, &weights)
}

/// Rating of a review of an item with defect rate `defect`.
pub(crate) fn draw_rating<R: Rng>(rng: &mut R, defect: f64) -> i32 {
    if rng.random::<f64>() < defect {
        if rng.random::<f64>() < 0.5 { 1 } else { 2 }
    } else {
        3 + pick(rng, &RATING_GOOD_PROBS) as i32
    }
}

/// Probability of `rating` for an item with defect rate `defect` (the law of `draw_rating`).
pub(crate) fn rating_prob(rating: i32, defect: f64) -> f64 {
    match rating {
        1 | 2 => defect / 2.0,
        3..=5 => (1.0 - defect) * RATING_GOOD_PROBS[(rating - 3) as usize],
        _ => 0.0,
    }
}

/// Contribution of an order's review to the dropout logit after it.
pub(crate) fn rating_shift(rating: Option<i32>) -> f64 {
    match rating {
        Some(r) if r <= 2 => DROPOUT_BETA_LOW_RATING,
        Some(5) => -DROPOUT_BETA_TOP_RATING,
        _ => 0.0,
    }
}

/// Dropout probability after the last purchase as seen at the cutoff when its review (if
/// any) has not arrived yet: the rule's probability averaged over "no review at all" and "a
/// review still on its way" with each possible rating.
pub(crate) fn pending_dropout(base_logit: f64, review_prob: f64, defect: f64, delta: f64) -> f64 {
    let still_pending = if delta <= REVIEW_DELAY_MIN_DAYS {
        1.0
    } else {
        (-(delta - REVIEW_DELAY_MIN_DAYS) / REVIEW_DELAY_MEAN_DAYS).exp()
    };
    let w_pending = review_prob * still_pending;
    let w_none = 1.0 - review_prob;
    let with_review: f64 = (1..=5)
        .map(|r| rating_prob(r, defect) * sigmoid(base_logit + rating_shift(Some(r))))
        .sum();
    (w_none * sigmoid(base_logit) + w_pending * with_review) / (w_none + w_pending)
}

/// Payment mix of a customer's preferred method: apple_pay on Apple-heavy mobile, bank
/// transfers in Germany and the Netherlands, cash on delivery in Poland and Italy.
pub(crate) fn payment_weights(country: usize, device: usize) -> [f64; 6] {
    let mut w = PAYMENT_WEIGHTS;
    if device == MOBILE {
        w[APPLE_PAY] *= 2.0;
    }
    if device == DESKTOP {
        w[CARD] *= 1.2;
        w[APPLE_PAY] *= 0.3;
    }
    match COUNTRIES[country] {
        "DE" | "NL" => w[BANK_TRANSFER] *= 3.0,
        "PL" | "IT" => w[CASH_ON_DELIVERY] *= 2.5,
        "US" | "GB" => w[PAYPAL] *= 1.2,
        _ => {}
    }
    w
}

/// Cumulative category distribution of each taste cluster.
pub(crate) fn taste_tables() -> [[f64; N_CATEGORIES]; N_CLUSTERS] {
    let mut tables = [[0.0; N_CATEGORIES]; N_CLUSTERS];
    for (k, cluster) in CLUSTERS.iter().enumerate() {
        let preferred_total: f64 = PREFERRED_WEIGHTS.iter().sum();
        let other_share: f64 = (0..N_CATEGORIES)
            .filter(|c| !cluster.preferred.contains(c))
            .map(|c| CATEGORY_SHARE[c])
            .sum();
        let mut total = 0.0;
        for (c, slot) in tables[k].iter_mut().enumerate() {
            total += match cluster.preferred.iter().position(|&p| p == c) {
                Some(rank) => PREFERRED_WEIGHTS[rank],
                None => (1.0 - preferred_total) * CATEGORY_SHARE[c] / other_share,
            };
            *slot = total;
        }
        tables[k][N_CATEGORIES - 1] = 1.0;
    }
    tables
}

/// Seed of an independent random stream: SplitMix64 of the seed mixed with the stream number.
pub(crate) fn stream_seed(seed: u64, stream: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    splitmix(seed ^ splitmix(stream))
}

/// Signup time: exponential density with scale `SIGNUP_DECAY_DAYS` truncated to the window.
pub(crate) fn sample_signup<R: Rng>(rng: &mut R) -> f64 {
    let u = rng.random::<f64>();
    let tail = (-WINDOW_DAYS / SIGNUP_DECAY_DAYS).exp();
    let t = -SIGNUP_DECAY_DAYS * (1.0 - u * (1.0 - tail)).ln();
    t.clamp(0.0, WINDOW_DAYS - 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_law_sums_to_one() {
        for defect in [0.03, 0.2, 0.63] {
            let total: f64 = (1..=5).map(|r| rating_prob(r, defect)).sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn pending_dropout_lies_between_the_branches() {
        let base = -2.0;
        let low = sigmoid(base - DROPOUT_BETA_TOP_RATING);
        let high = sigmoid(base + DROPOUT_BETA_LOW_RATING);
        for delta in [0.0, 1.0, 5.0, 30.0] {
            let p = pending_dropout(base, 0.3, 0.2, delta);
            assert!(p > low && p < high, "{p}");
        }
        // Long after the purchase a missing review means there was none.
        assert!((pending_dropout(base, 0.3, 0.2, 200.0) - sigmoid(base)).abs() < 1e-9);
    }

    #[test]
    fn taste_tables_are_cumulative_and_favour_preferred_categories() {
        let tables = taste_tables();
        for (k, table) in tables.iter().enumerate() {
            assert!((table[N_CATEGORIES - 1] - 1.0).abs() < 1e-12);
            assert!(table.windows(2).all(|w| w[0] <= w[1]));
            let first = CLUSTERS[k].preferred[0];
            let share = table[first] - if first == 0 { 0.0 } else { table[first - 1] };
            assert!((share - PREFERRED_WEIGHTS[0]).abs() < 1e-9);
        }
    }

    #[test]
    fn stream_seeds_differ() {
        assert_ne!(stream_seed(42, 0), stream_seed(42, 1));
        assert_ne!(stream_seed(42, 0), stream_seed(43, 0));
    }
}
