//! The win-back campaign (rule 10 of the crate documentation): at the cutoff, a coupon to a random half of the customers
//! at risk, whose effect on their retention depends on their latent state.
//!
//! The campaign's outcome is drawn on top of the simulated world, which is the world without
//! the campaign: a control customer is retained exactly when they order again after the
//! cutoff; a coupon customer who would have churned is won back with probability
//! `won_back`, and one who would have stayed is pushed out with probability `pushed_out`.
//! So the true effect on P(retained) is `hazard * won_back - (1 - hazard) * pushed_out`,
//! with `hazard` the exact churn hazard of rule 6.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::draws::{sigmoid, stream_seed};

/// Customers whose last order (in `orders`) is at least this many days before the cutoff
/// are at risk.
pub(crate) const AT_RISK_DAYS: f64 = 30.0;
/// A coupon wins back `WON_BACK_BASE + WON_BACK_ENGAGED * sigmoid(engagement)` of those who
/// would have churned: more of the engaged customers.
const WON_BACK_BASE: f64 = 0.3;
const WON_BACK_ENGAGED: f64 = 0.3;
/// Customers whose last order earned a 1-2 star review are not won back; a contact pushes
/// this share of those who would have stayed away ("sleeping dogs").
const PUSHED_OUT: f64 = 0.4;
/// Mixed into the seed so the campaign's draws are a stream of their own, and the world
/// without the campaign is the same as before it existed.
const STREAM_SALT: u64 = 0x0c0b_0070_c0ff_ee01;

/// One customer's row of `public.winback_campaign` and their true effect.
pub(crate) struct WinbackRow {
    pub(crate) coupon: bool,
    pub(crate) retained: bool,
    /// The coupon's effect on P(retained): `truth.customers.coupon_uplift`.
    pub(crate) uplift: f64,
}

/// The campaign for one active legitimate customer, or None if they are not at risk.
/// `days_since_order` runs from their last order before the cutoff to the cutoff;
/// `last_rating` is the rating of that order's review if it arrived before the cutoff.
pub(crate) fn winback(
    seed: u64,
    id: i64,
    engagement: f64,
    hazard: f64,
    churned: bool,
    days_since_order: f64,
    last_rating: Option<i32>,
) -> Option<WinbackRow> {
    if days_since_order < AT_RISK_DAYS {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(stream_seed(seed ^ STREAM_SALT, id as u64));
    let coupon = rng.random::<f64>() < 0.5;
    let angry = matches!(last_rating, Some(rating) if rating <= 2);
    let (won_back, pushed_out) = if angry {
        (0.0, PUSHED_OUT)
    } else {
        (WON_BACK_BASE + WON_BACK_ENGAGED * sigmoid(engagement), 0.0)
    };
    let u: f64 = rng.random();
    let retained = match (coupon, churned) {
        (false, churned) => !churned,
        (true, true) => u < won_back,
        (true, false) => u >= pushed_out,
    };
    Some(WinbackRow {
        coupon,
        retained,
        uplift: hazard * won_back - (1.0 - hazard) * pushed_out,
    })
}
