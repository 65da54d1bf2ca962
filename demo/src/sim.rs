//! The per-customer simulation: the latent processes described in the module documentation
//! of `demo`, run one chunk of customers at a time into plain column vectors.
//!
//! Everything a chunk produces depends only on the seed, the chunk index and the catalog, so
//! chunks can run on any thread in any order. Ids inside a chunk are local (orders, events and
//! sessions count from 0); `lib.rs` shifts them when it stitches the chunks together in order.

use std::ops::Range;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Gamma};

use super::campaign;
use super::catalog::Catalog;
use super::chunk::*;
use super::clock::{
    self, CUTOFF_T, Clock, HORIZON_DAYS, MICROS_PER_DAY, MICROS_PER_HOUR, MICROS_PER_MINUTE,
    MICROS_PER_SECOND, WINDOW_DAYS,
};
use super::draws::*;
use super::params::*;

// --- Per-customer working state -------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum BrowseKind {
    /// Views only.
    Browse,
    /// A search followed by views.
    Search,
    /// Searches that lead to no view.
    FailedSearch,
    /// Views and an add_to_cart, then the session ends without a purchase.
    Abandon,
}

/// A browsing session (no purchase) at latent time `t`.
struct BrowseSession {
    t: f64,
    kind: BrowseKind,
}

/// A legitimate purchase, with what the dropout draw after it depended on.
struct Purchase {
    t: f64,
    /// 1 for the first purchase, 2 for the first repeat purchase, ...
    k: u32,
    /// The dropout logit before the review's contribution.
    base_logit: f64,
    /// Latent time and rating of the review, if the order gets one.
    review: Option<(f64, i32)>,
    /// Defect rate of the reviewed item (the order's first line).
    defect: f64,
}

#[derive(Clone, Copy)]
struct Line {
    item: u32,
    qty: i32,
    cents: i64,
}

struct OrderDraft {
    time_us: i64,
    lines: Range<usize>,
    discount_cents: i64,
    payment: u8,
    ship: u8,
    fraud: u8,
}

enum SessionPlan {
    Browse(BrowseKind),
    /// Index into `Scratch::orders`.
    Purchase(usize),
    Review {
        item: u32,
        rating: i32,
    },
}

struct PlannedSession {
    /// Wall-clock time of the session's last event.
    anchor_us: i64,
    /// Creation order, to break ties deterministically.
    seq: u32,
    plan: SessionPlan,
}

/// One event of a session being built: (event type, item, rating).
type SessionEvent = (u8, Option<u32>, Option<i32>);

#[derive(Clone, Copy)]
struct EventDraft {
    time_us: i64,
    kind: u8,
    item: Option<u32>,
    rating: Option<i32>,
    session: u32,
}

/// Buffers reused from customer to customer.
#[derive(Default)]
struct Scratch {
    browse: Vec<BrowseSession>,
    purchases: Vec<Purchase>,
    lines: Vec<Line>,
    orders: Vec<OrderDraft>,
    sessions: Vec<PlannedSession>,
    session_events: Vec<SessionEvent>,
    events: Vec<EventDraft>,
}

impl Scratch {
    fn clear(&mut self) {
        self.browse.clear();
        self.purchases.clear();
        self.lines.clear();
        self.orders.clear();
        self.sessions.clear();
        self.session_events.clear();
        self.events.clear();
    }

    fn plan(&mut self, anchor_us: i64, plan: SessionPlan) {
        let seq = self.sessions.len() as u32;
        self.sessions.push(PlannedSession {
            anchor_us,
            seq,
            plan,
        });
    }

    /// Records an order over `lines`, with a coupon of `discount_share` of its gross value.
    fn push_order(
        &mut self,
        time_us: i64,
        lines: Range<usize>,
        discount_share: f64,
        payment: usize,
        ship: usize,
        fraud: u8,
    ) {
        let gross: i64 = self.lines[lines.clone()]
            .iter()
            .map(|l| l.qty as i64 * l.cents)
            .sum();
        let discount_cents = (gross as f64 * discount_share).round() as i64;
        self.orders.push(OrderDraft {
            time_us,
            lines,
            discount_cents,
            payment: payment as u8,
            ship: ship as u8,
            fraud,
        });
    }
}

/// What a customer is like, as far as the session and order details are concerned.
struct Profile {
    id: i64,
    country: usize,
    cluster: usize,
    engagement: f64,
    signup_t: f64,
    /// No event happens before the start of the signup day.
    floor_us: i64,
}

/// Behavioural habits of a legitimate customer.
struct Habits {
    visit_rate: f64,
    abandon: f64,
    failed_search: f64,
    review_prob: f64,
    payment: usize,
}

impl Habits {
    fn browse_kind<R: Rng>(&self, rng: &mut R) -> BrowseKind {
        let u = rng.random::<f64>();
        if u < self.failed_search {
            BrowseKind::FailedSearch
        } else if u < self.failed_search + self.abandon {
            BrowseKind::Abandon
        } else if rng.random::<f64>() < SEARCH_SHARE {
            BrowseKind::Search
        } else {
            BrowseKind::Browse
        }
    }
}

/// What a basket should look like.
struct Basket<'t> {
    taste: &'t [f64; N_CATEGORIES],
    /// A category that wins the draw with the given probability before the taste is asked.
    bias: Option<(usize, f64)>,
    planned: usize,
    max_lines: usize,
    max_qty: i32,
}

/// The truth row of one customer.
struct TruthRow {
    purchase_rate: Option<f64>,
    dropout_prob: Option<f64>,
    spend_mean: Option<f64>,
    churn_hazard: Option<f64>,
    churned: Option<bool>,
    churned_at: Option<i64>,
}

/// Abandoned carts and failed searches among the last `PATTERN_WINDOW` browsing sessions.
fn recent_patterns(browse: &[BrowseSession]) -> (usize, usize) {
    let recent = &browse[browse.len().saturating_sub(PATTERN_WINDOW)..];
    let abandoned = recent
        .iter()
        .filter(|b| b.kind == BrowseKind::Abandon)
        .count();
    let failed = recent
        .iter()
        .filter(|b| b.kind == BrowseKind::FailedSearch)
        .count();
    (abandoned, failed)
}

// --- The simulation -------------------------------------------------------------------------

/// The shared, read-only part of the simulation.
pub(crate) struct Sim<'a> {
    catalog: &'a Catalog,
    clock: Clock,
    taste: [[f64; N_CATEGORIES]; N_CLUSTERS],
    /// lambda ~ Gamma(r, scale 1 / alpha).
    lambda: Gamma<f64>,
    /// p ~ Beta(a, b).
    dropout: Beta<f64>,
    /// nu ~ Gamma(q, scale 1 / gamma).
    nu: Gamma<f64>,
    /// Gamma(p, 1); an order value is a draw divided by the customer's nu.
    spend: Gamma<f64>,
    seed: u64,
}

impl<'a> Sim<'a> {
    pub(crate) fn new(catalog: &'a Catalog, seed: u64) -> Result<Self> {
        Ok(Sim {
            catalog,
            clock: Clock::new(),
            taste: taste_tables(),
            lambda: Gamma::new(BGNBD_R, 1.0 / BGNBD_ALPHA)
                .context("demo: purchase-rate distribution")?,
            dropout: Beta::new(BGNBD_A, BGNBD_B).context("demo: dropout distribution")?,
            nu: Gamma::new(GG_Q, 1.0 / GG_GAMMA).context("demo: spend-rate distribution")?,
            spend: Gamma::new(GG_P, 1.0).context("demo: order-value distribution")?,
            seed,
        })
    }

    /// Simulates customers `first_id .. first_id + count` with the random stream of chunk
    /// `chunk_index`.
    pub(crate) fn chunk(&self, chunk_index: u64, first_id: i64, count: usize) -> ChunkOut {
        let mut rng = StdRng::seed_from_u64(stream_seed(self.seed, chunk_index));
        let mut out = ChunkOut::default();
        let mut scratch = Scratch::default();
        for i in 0..count {
            self.customer(&mut rng, first_id + i as i64, &mut scratch, &mut out);
        }
        out
    }

    fn customer(&self, rng: &mut StdRng, id: i64, s: &mut Scratch, out: &mut ChunkOut) {
        s.clear();
        let channel = pick(rng, &CHANNEL_WEIGHTS);
        let country = pick(rng, &COUNTRY_WEIGHTS);
        let device = pick(rng, &DEVICE_WEIGHTS);
        let age = pick(rng, &AGE_WEIGHTS);
        let signup_t = sample_signup(rng);
        let cluster = {
            let mut weights = [0.0; N_CLUSTERS];
            for (weight, c) in weights.iter_mut().zip(&CLUSTERS) {
                let age_lift = if c.ages.contains(&age) {
                    CLUSTER_AGE_LIFT
                } else {
                    1.0
                };
                let device_lift = if c.device == device {
                    CLUSTER_DEVICE_LIFT
                } else {
                    1.0
                };
                *weight = c.weight * age_lift * device_lift;
            }
            pick(rng, &weights)
        };
        let engagement = CHANNEL_ENGAGEMENT[channel] + normal(rng);
        let fraudster = rng.random::<f64>() < FRAUD_ACCOUNT_SHARE;

        out.customers.id.push(id);
        out.customers.signup_day.push(clock::epoch_day(signup_t));
        out.customers.channel.push(channel as u8);
        out.customers.country.push(country as u8);
        out.customers.device.push(device as u8);
        out.customers.age_band.push(age as u8);

        let profile = Profile {
            id,
            country,
            cluster,
            engagement,
            signup_t,
            floor_us: clock::day_start_us(signup_t.floor() as i64),
        };
        let truth = if fraudster {
            out.stats.fraud_accounts += 1;
            self.fraud_account(rng, &profile, s)
        } else {
            self.legit(rng, &profile, device, s, &mut out.stats)
        };

        out.truth.purchase_rate.push(truth.purchase_rate);
        out.truth.dropout_prob.push(truth.dropout_prob);
        out.truth.spend_mean.push(truth.spend_mean);
        out.truth.taste_cluster.push(cluster as i32);
        out.truth.engagement.push(engagement);
        out.truth.churn_hazard.push(truth.churn_hazard);
        out.truth.churned.push(truth.churned);
        out.truth.churned_at.push(truth.churned_at);
        let winback = match (fraudster, truth.churn_hazard, truth.churned) {
            (false, Some(hazard), Some(churned)) => s
                .purchases
                .iter()
                .rfind(|q| q.t < CUTOFF_T)
                .and_then(|last| {
                    let rating = last.review.filter(|(t, _)| *t < CUTOFF_T).map(|(_, r)| r);
                    // Days since the last order in `orders` (a takeover's included), as
                    // churn_features reads them, so the mart can tell who was at risk.
                    let cutoff = clock::cutoff_us();
                    let last_order = s.orders.iter().map(|o| o.time_us).filter(|t| *t < cutoff);
                    let days = (cutoff - last_order.max()?) as f64 / MICROS_PER_DAY as f64;
                    campaign::winback(self.seed, id, engagement, hazard, churned, days, rating)
                }),
            _ => None,
        };
        out.truth
            .coupon_uplift
            .push(winback.as_ref().map(|w| w.uplift));
        if let Some(w) = winback {
            out.winback.customer_id.push(id);
            out.winback.coupon.push(w.coupon);
            out.winback.retained.push(w.retained);
        }

        self.emit(rng, &profile, s, out);
    }

    /// A legitimate customer: BG/NBD purchases with behaviour-driven dropout, Gamma-Gamma
    /// spend, browsing, reviews and the occasional account takeover.
    fn legit(
        &self,
        rng: &mut StdRng,
        p: &Profile,
        device: usize,
        s: &mut Scratch,
        stats: &mut ChunkStats,
    ) -> TruthRow {
        let lambda = self.lambda.sample(rng).max(1e-9);
        let dropout = self.dropout.sample(rng).clamp(1e-6, 1.0 - 1e-6);
        let nu = self.nu.sample(rng).max(1e-9);
        let spend_mean = GG_P / nu;
        let e = p.engagement;
        let habits = Habits {
            visit_rate: BROWSE_RATE_BASE * (BROWSE_RATE_ENGAGEMENT * e).exp(),
            abandon: sigmoid(
                ABANDON_LOGIT_BASE + ABANDON_LOGIT_ENGAGEMENT * e + ABANDON_LOGIT_SD * normal(rng),
            )
            .min(ABANDON_MAX),
            failed_search: sigmoid(
                FAILED_SEARCH_LOGIT_BASE
                    + FAILED_SEARCH_LOGIT_ENGAGEMENT * e
                    + FAILED_SEARCH_LOGIT_SD * normal(rng),
            )
            .min(FAILED_SEARCH_MAX),
            review_prob: sigmoid(REVIEW_LOGIT_BASE + REVIEW_LOGIT_ENGAGEMENT * e),
            payment: pick(rng, &payment_weights(p.country, device)),
        };
        let customer_logit = logit(dropout) - DROPOUT_BETA_ENGAGEMENT * e;

        // The signup itself is a visit.
        let kind = habits.browse_kind(rng);
        s.browse.push(BrowseSession {
            t: p.signup_t,
            kind,
        });

        let first_wait = if rng.random::<f64>() < QUICK_FIRST_PROB {
            exp1(rng) * QUICK_FIRST_MEAN_DAYS
        } else {
            exp1(rng) / lambda
        };
        let mut t_prev = p.signup_t;
        let mut t = p.signup_t + first_wait;
        let mut dead_at = None;
        let mut k = 0u32;
        loop {
            if t >= WINDOW_DAYS {
                self.browse_alive(rng, &habits, t_prev, WINDOW_DAYS, s);
                break;
            }
            self.browse_alive(rng, &habits, t_prev, t, s);
            k += 1;

            let order = self.legit_order(rng, p, &habits, nu, t, s);
            let first_item = s.lines[s.orders[order].lines.start].item;
            let defect = self.catalog.defect[first_item as usize];
            let review = if rng.random::<f64>() < habits.review_prob {
                let rating = draw_rating(rng, defect);
                let t_review = t + REVIEW_DELAY_MIN_DAYS + exp1(rng) * REVIEW_DELAY_MEAN_DAYS;
                if t_review < WINDOW_DAYS {
                    s.plan(
                        self.clock.to_us(t_review),
                        SessionPlan::Review {
                            item: first_item,
                            rating,
                        },
                    );
                }
                Some((t_review, rating))
            } else {
                None
            };
            let (abandoned, failed) = recent_patterns(&s.browse);
            let base_logit = customer_logit
                + DROPOUT_BETA_ABANDONED_CART * abandoned as f64
                + DROPOUT_BETA_FAILED_SEARCH * failed as f64;
            s.purchases.push(Purchase {
                t,
                k,
                base_logit,
                review,
                defect,
            });

            self.maybe_takeover(rng, p, spend_mean, t, s);

            // BG/NBD: no dropout after the first purchase, a draw after every repeat purchase.
            if k >= 2 {
                let p_k = sigmoid(base_logit + rating_shift(review.map(|(_, r)| r)));
                stats.dropout_sum += p_k;
                stats.dropout_draws += 1;
                if rng.random::<f64>() < p_k {
                    dead_at = Some(t);
                    self.browse_dead(rng, &habits, t, s);
                    break;
                }
            }
            t_prev = t;
            t += exp1(rng) / lambda;
        }

        let (churn_hazard, churned) = self.churn_truth(p, lambda, &habits, s);
        TruthRow {
            purchase_rate: Some(lambda),
            dropout_prob: Some(dropout),
            spend_mean: Some(spend_mean),
            churn_hazard,
            churned,
            churned_at: dead_at.map(|t| self.clock.to_us(t)),
        }
    }

    /// Visits of a live customer in `[from, to)`: a Poisson process with the visit rate.
    fn browse_alive(&self, rng: &mut StdRng, habits: &Habits, from: f64, to: f64, s: &mut Scratch) {
        let mut t = from;
        loop {
            t += exp1(rng) / habits.visit_rate;
            if t >= to {
                return;
            }
            let kind = habits.browse_kind(rng);
            s.browse.push(BrowseSession { t, kind });
        }
    }

    /// Visits after a dropout at `dead_at`: a Poisson process whose rate fades as
    /// exp(-(t - dead_at) / tau), drawn by inverting its cumulative intensity.
    fn browse_dead(&self, rng: &mut StdRng, habits: &Habits, dead_at: f64, s: &mut Scratch) {
        let mass = habits.visit_rate * DEAD_BROWSE_TAU_DAYS;
        let mut cumulative = 0.0;
        loop {
            cumulative += exp1(rng);
            if cumulative >= mass {
                return;
            }
            let t = dead_at - DEAD_BROWSE_TAU_DAYS * (1.0 - cumulative / mass).ln();
            if t >= WINDOW_DAYS {
                return;
            }
            let kind = habits.browse_kind(rng);
            s.browse.push(BrowseSession { t, kind });
        }
    }

    /// `churn_hazard` and `churned` of a legitimate customer.
    ///
    /// Given everything up to the cutoff, the customer is either dead (dropped out right after
    /// the last purchase x) or alive and silent since. The posterior odds of "dead" are
    /// p_x * L_dead / ((1 - p_x) * exp(-lambda * delta) * L_alive), where delta is the time from
    /// purchase x to the cutoff and L_dead / L_alive the likelihoods of the visits seen in
    /// between (fading after a dropout, steady while alive). A dead customer never buys again;
    /// a live one buys within the horizon with probability 1 - exp(-lambda * horizon).
    fn churn_truth(
        &self,
        p: &Profile,
        lambda: f64,
        habits: &Habits,
        s: &Scratch,
    ) -> (Option<f64>, Option<bool>) {
        if p.signup_t >= CUTOFF_T {
            return (None, None);
        }
        let Some(x) = s.purchases.iter().rposition(|q| q.t < CUTOFF_T) else {
            return (None, None);
        };
        let last = &s.purchases[x];
        let churned = x + 1 == s.purchases.len();
        let p_dead = if last.k < 2 {
            // No dropout draw follows the first purchase.
            0.0
        } else {
            let delta = CUTOFF_T - last.t;
            let p_x = match last.review {
                Some((t_review, rating)) if t_review < CUTOFF_T => {
                    sigmoid(last.base_logit + rating_shift(Some(rating)))
                }
                _ => pending_dropout(last.base_logit, habits.review_prob, last.defect, delta),
            };
            let tau = DEAD_BROWSE_TAU_DAYS;
            let rate = habits.visit_rate;
            // log(L_dead / L_alive) for the visits in (t_x, cutoff).
            let mut log_ratio = rate * delta - rate * tau * (1.0 - (-delta / tau).exp());
            for b in s.browse.iter().filter(|b| b.t > last.t && b.t < CUTOFF_T) {
                log_ratio -= (b.t - last.t) / tau;
            }
            let log_dead = p_x.ln() + log_ratio;
            let log_alive = (1.0 - p_x).ln() - lambda * delta;
            1.0 / (1.0 + (log_alive - log_dead).exp())
        };
        let hazard = p_dead + (1.0 - p_dead) * (-HORIZON_DAYS * lambda).exp();
        (Some(hazard), Some(churned))
    }

    /// A legitimate order at latent time `t`; returns its index in `s.orders`.
    fn legit_order(
        &self,
        rng: &mut StdRng,
        p: &Profile,
        habits: &Habits,
        nu: f64,
        t: f64,
        s: &mut Scratch,
    ) -> usize {
        // Gamma-Gamma: the order value after the coupon.
        let value = self.spend.sample(rng) / nu;
        let discount = if rng.random::<f64>() < DISCOUNT_PROB {
            DISCOUNT_LEVELS[rng.random_range(0..DISCOUNT_LEVELS.len())]
        } else {
            0.0
        };
        let basket = Basket {
            taste: &self.taste[p.cluster],
            bias: None,
            planned: 1 + geometric(rng, EXTRA_LINES_MEAN, MAX_LINES - 1),
            max_lines: MAX_LINES,
            max_qty: 3,
        };
        let lines = self.fill_lines(rng, &basket, value / (1.0 - discount), s);
        let payment = if rng.random::<f64>() < PAYMENT_LOYALTY {
            habits.payment
        } else {
            pick(rng, &PAYMENT_WEIGHTS)
        };
        let ship = if rng.random::<f64>() < GIFT_ABROAD_PROB {
            other_country(rng, p.country)
        } else {
            p.country
        };
        s.push_order(
            self.clock.to_us(t),
            lines,
            discount,
            payment,
            ship,
            FRAUD_NONE,
        );
        s.orders.len() - 1
    }

    /// Fills a basket worth `gross` (before any coupon) and returns its range in `s.lines`.
    ///
    /// Lines are popular items of the taste's categories picked near the value still to fill;
    /// then one price factor per order (clamped to [`PRICE_FACTOR_MIN`, `PRICE_FACTOR_MAX`])
    /// scales the list prices so the basket hits `gross`.
    fn fill_lines(
        &self,
        rng: &mut StdRng,
        basket: &Basket<'_>,
        gross: f64,
        s: &mut Scratch,
    ) -> Range<usize> {
        let start = s.lines.len();
        let mut remaining = gross;
        for i in 0..basket.max_lines {
            let left = basket.planned.saturating_sub(i).max(1) as f64;
            let category = match basket.bias {
                Some((category, prob)) if rng.random::<f64>() < prob => category,
                _ => pick_cumulative(rng, basket.taste),
            };
            let item = self
                .catalog
                .sample_near_price(category, remaining / left, rng);
            if s.lines[start..].iter().any(|l| l.item == item) {
                continue;
            }
            let price = self.catalog.price[item as usize];
            let qty = ((remaining / left / price).round() as i32).clamp(1, basket.max_qty);
            remaining -= qty as f64 * price;
            // Cents are set below, once the price factor is known.
            s.lines.push(Line {
                item,
                qty,
                cents: 0,
            });
            if remaining < BASKET_STOP_SHARE * gross {
                break;
            }
        }
        if s.lines.len() == start {
            let category = pick_cumulative(rng, basket.taste);
            s.lines.push(Line {
                item: self.catalog.sample(category, rng),
                qty: 1,
                cents: 0,
            });
        }
        let list: f64 = s.lines[start..]
            .iter()
            .map(|l| l.qty as f64 * self.catalog.price[l.item as usize])
            .sum();
        let factor = (gross / list).clamp(PRICE_FACTOR_MIN, PRICE_FACTOR_MAX);
        for line in &mut s.lines[start..] {
            line.cents =
                ((self.catalog.price[line.item as usize] * factor * 100.0).round() as i64).max(1);
        }
        start..s.lines.len()
    }

    /// With a small probability, a legitimate purchase at `t` (before the cutoff) is followed by
    /// an account takeover: a burst of 1-4 large orders within hours, mostly at night, shipped
    /// abroad and paid with gift cards.
    fn maybe_takeover(
        &self,
        rng: &mut StdRng,
        p: &Profile,
        spend_mean: f64,
        t: f64,
        s: &mut Scratch,
    ) {
        // Bursts end before the cutoff so that the churn label stays "no order after the
        // cutoff" in the public tables.
        if t >= CUTOFF_T - 1.0 || rng.random::<f64>() >= ATO_PROB_PER_ORDER {
            return;
        }
        let start = t + ATO_DELAY_MIN_DAYS + exp1(rng) * ATO_DELAY_MEAN_DAYS;
        if start >= CUTOFF_T - 1.0 {
            return;
        }
        let mut time_us = if rng.random::<f64>() < ATO_NIGHT_PROB {
            clock::night_us(start, rng)
        } else {
            self.clock.to_us(start)
        };
        let ship = if rng.random::<f64>() < ATO_ABROAD_PROB {
            other_country(rng, p.country)
        } else {
            p.country
        };
        let n = rng.random_range(1..=4);
        for _ in 0..n {
            let value = (spend_mean * rng.random_range(3.0..8.0)).max(150.0);
            let basket = Basket {
                taste: &self.taste[p.cluster],
                bias: Some((ELECTRONICS, 0.6)),
                planned: rng.random_range(2..=5),
                max_lines: MAX_LINES,
                max_qty: 3,
            };
            let lines = self.fill_lines(rng, &basket, value, s);
            let payment = pick(rng, &ATO_PAYMENT_WEIGHTS);
            if time_us < clock::cutoff_us() {
                s.push_order(time_us, lines, 0.0, payment, ship, FRAUD_TAKEOVER);
            }
            time_us += rng.random_range(5 * MICROS_PER_MINUTE..90 * MICROS_PER_MINUTE);
        }
    }

    /// An account opened by a fraudster: orders within a day of the signup, then nothing.
    /// Cash-out accounts place 1-4 large many-item orders; card testers 4-10 tiny ones minutes
    /// apart.
    fn fraud_account(&self, rng: &mut StdRng, p: &Profile, s: &mut Scratch) -> TruthRow {
        let card_testing = rng.random::<f64>() < CARD_TESTING_SHARE;
        let first_t = p.signup_t + rng.random_range(0.01..1.0);
        let abroad = if card_testing { 0.3 } else { 0.7 };
        let ship = if rng.random::<f64>() < abroad {
            other_country(rng, p.country)
        } else {
            p.country
        };
        let night_prob = if card_testing { 0.4 } else { 0.6 };
        let night = rng.random::<f64>() < night_prob;
        let mut time_us = if night {
            clock::night_us(first_t, rng)
        } else {
            self.clock.to_us(first_t)
        };
        let n = if card_testing {
            rng.random_range(4..=10)
        } else {
            rng.random_range(1..=4)
        };
        let end_us = clock::end_us();
        for _ in 0..n {
            let (value, basket, payment, pattern, step) = if card_testing {
                let category = CHEAP_CATEGORIES[rng.random_range(0..CHEAP_CATEGORIES.len())];
                let basket = Basket {
                    taste: &self.taste[p.cluster],
                    bias: Some((category, 1.0)),
                    planned: 1,
                    max_lines: 1,
                    max_qty: 1,
                };
                let payment = if rng.random::<f64>() < 0.8 {
                    CARD
                } else {
                    PAYPAL
                };
                let step = rng.random_range(MICROS_PER_MINUTE..10 * MICROS_PER_MINUTE);
                (
                    rng.random_range(1.0..12.0),
                    basket,
                    payment,
                    FRAUD_CARD_TESTING,
                    step,
                )
            } else {
                let basket = Basket {
                    taste: &self.taste[p.cluster],
                    bias: Some((ELECTRONICS, 0.7)),
                    planned: rng.random_range(3..=6),
                    max_lines: MAX_LINES,
                    max_qty: 3,
                };
                let payment = pick(rng, &FRAUD_ACCOUNT_PAYMENT_WEIGHTS);
                let step = rng.random_range(MICROS_PER_HOUR..18 * MICROS_PER_HOUR);
                (
                    rng.random_range(250.0..1200.0),
                    basket,
                    payment,
                    FRAUD_NEW_ACCOUNT,
                    step,
                )
            };
            let lines = self.fill_lines(rng, &basket, value, s);
            if time_us < end_us {
                s.push_order(time_us, lines, 0.0, payment, ship, pattern);
            }
            time_us += step;
        }
        // An account active before the cutoff stops at the cutoff, so its label is certain.
        let cutoff = clock::cutoff_us();
        let active = p.signup_t < CUTOFF_T && s.orders.iter().any(|o| o.time_us < cutoff);
        if active {
            s.orders.retain(|o| o.time_us < cutoff);
        }
        TruthRow {
            purchase_rate: None,
            dropout_prob: None,
            spend_mean: None,
            churn_hazard: active.then_some(1.0),
            churned: active.then_some(true),
            churned_at: s.orders.iter().map(|o| o.time_us).max(),
        }
    }

    /// Turns the customer's orders, visits and reviews into rows: orders in time order, then
    /// sessions in time order, each a short run of events ending at its anchor time.
    fn emit(&self, rng: &mut StdRng, p: &Profile, s: &mut Scratch, out: &mut ChunkOut) {
        s.orders.sort_by_key(|o| o.time_us);
        let first_order = out.orders.customer_id.len();
        for (i, o) in s.orders.iter().enumerate() {
            let local = (first_order + i) as u32;
            let lines = &s.lines[o.lines.clone()];
            let gross: i64 = lines.iter().map(|l| l.qty as i64 * l.cents).sum();
            out.orders.customer_id.push(p.id);
            out.orders.time.push(o.time_us);
            out.orders
                .amount
                .push((gross - o.discount_cents) as f64 / 100.0);
            out.orders.discount.push(o.discount_cents as f64 / 100.0);
            out.orders.payment.push(o.payment);
            out.orders
                .item_count
                .push(lines.iter().map(|l| l.qty).sum());
            out.orders.shipping_country.push(o.ship);
            out.orders.fraud.push(o.fraud);
            for (n, line) in lines.iter().enumerate() {
                out.lines.order.push(local);
                out.lines.line_no.push(n as i32 + 1);
                out.lines.item_id.push(line.item as i64 + 1);
                out.lines.quantity.push(line.qty);
                out.lines.unit_price.push(line.cents as f64 / 100.0);
            }
            let seq = s.sessions.len() as u32;
            s.sessions.push(PlannedSession {
                anchor_us: o.time_us,
                seq,
                plan: SessionPlan::Purchase(i),
            });
        }
        for b in &s.browse {
            let seq = s.sessions.len() as u32;
            let anchor_us = self.clock.to_us(b.t);
            s.sessions.push(PlannedSession {
                anchor_us,
                seq,
                plan: SessionPlan::Browse(b.kind),
            });
        }
        s.sessions.sort_by_key(|x| (x.anchor_us, x.seq));

        let first_session = out.sessions;
        for (n, session) in s.sessions.iter().enumerate() {
            s.session_events.clear();
            self.session_events(
                rng,
                p,
                &session.plan,
                &s.orders,
                &s.lines,
                &mut s.session_events,
            );
            // Events run backwards from the anchor, a few seconds to minutes apart, and never
            // before the signup day.
            let mut time = session.anchor_us;
            let count = s.session_events.len();
            let start = s.events.len();
            for (j, &(kind, item, rating)) in s.session_events.iter().rev().enumerate() {
                if j > 0 {
                    let gap = 10.0 + exp1(rng) * 50.0;
                    time = (time - (gap * MICROS_PER_SECOND as f64) as i64).max(p.floor_us);
                }
                s.events.push(EventDraft {
                    time_us: time,
                    kind,
                    item,
                    rating,
                    session: first_session + n as u32,
                });
            }
            s.events[start..start + count].reverse();
        }
        out.sessions += s.sessions.len() as u32;

        // Sessions may overlap by a few minutes; a stable sort keeps each session's order.
        s.events.sort_by_key(|e| e.time_us);
        for e in &s.events {
            out.events.customer_id.push(p.id);
            out.events.time.push(e.time_us);
            out.events.kind.push(e.kind);
            out.events.item_id.push(e.item.map(|i| i as i64 + 1));
            out.events.session.push(e.session);
            out.events.rating.push(e.rating);
        }
    }

    /// The events of one session in order: (event type, item, rating).
    fn session_events(
        &self,
        rng: &mut StdRng,
        p: &Profile,
        plan: &SessionPlan,
        orders: &[OrderDraft],
        lines: &[Line],
        events: &mut Vec<SessionEvent>,
    ) {
        let taste = &self.taste[p.cluster];
        let extra_views = VIEW_EXTRA_MEAN * (VIEW_EXTRA_ENGAGEMENT * p.engagement).exp();
        let view = |rng: &mut StdRng, events: &mut Vec<SessionEvent>| {
            let item = self.catalog.sample(pick_cumulative(rng, taste), rng);
            events.push((EV_VIEW, Some(item), None));
            item
        };
        match plan {
            SessionPlan::Browse(kind) => match kind {
                BrowseKind::Browse => {
                    for _ in 0..=geometric(rng, extra_views, 12) {
                        view(rng, events);
                    }
                }
                BrowseKind::Search => {
                    events.push((EV_SEARCH, None, None));
                    for _ in 0..=geometric(rng, extra_views * 0.7, 12) {
                        view(rng, events);
                    }
                }
                BrowseKind::FailedSearch => {
                    events.push((EV_SEARCH, None, None));
                    if rng.random::<f64>() < 0.3 {
                        events.push((EV_SEARCH, None, None));
                    }
                }
                BrowseKind::Abandon => {
                    let mut last = view(rng, events);
                    for _ in 0..geometric(rng, 0.5, 6) {
                        last = view(rng, events);
                    }
                    events.push((EV_CART, Some(last), None));
                }
            },
            SessionPlan::Review { item, rating } => {
                events.push((EV_REVIEW, Some(*item), Some(*rating)));
            }
            SessionPlan::Purchase(index) => {
                let order = &orders[*index];
                let lines = &lines[order.lines.clone()];
                let first = lines[0].item;
                match order.fraud {
                    // Card testers and account takeovers know what they want.
                    FRAUD_CARD_TESTING | FRAUD_TAKEOVER => {
                        for line in lines {
                            events.push((EV_CART, Some(line.item), None));
                        }
                    }
                    FRAUD_NEW_ACCOUNT => {
                        for line in lines {
                            events.push((EV_VIEW, Some(line.item), None));
                            events.push((EV_CART, Some(line.item), None));
                        }
                    }
                    _ => {
                        let searched = rng.random::<f64>() < 0.25;
                        if searched {
                            events.push((EV_SEARCH, None, None));
                        }
                        if rng.random::<f64>() < 0.2 {
                            // An alternative looked at and passed over.
                            view(rng, events);
                        }
                        for (n, line) in lines.iter().enumerate() {
                            // A search is always followed by a view; other items are often
                            // added straight from a list.
                            if (n == 0 && searched) || rng.random::<f64>() < 0.4 {
                                events.push((EV_VIEW, Some(line.item), None));
                            }
                            events.push((EV_CART, Some(line.item), None));
                        }
                    }
                }
                events.push((EV_PURCHASE, Some(first), None));
            }
        }
    }
}
