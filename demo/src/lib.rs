//! The demo world: a deterministic e-commerce shop with known latent structure.
//!
//! [`generate`] simulates customers of an online shop over a two-year window and returns the
//! tables an analyst would have (schema `public`) plus the generator's ground truth (schema
//! `truth`), so that churn, CLV, segmentation, recommendation and fraud models can be checked
//! against the answer they should find. The same [`DemoOptions`] always give byte-identical
//! tables, whatever the number of threads.
//!
//! # Time
//!
//! The window runs from [`OBSERVATION_START`] 00:00 to the end of [`OBSERVATION_END`] (731
//! days, 2024-01-01 .. 2025-12-31). Features are computed from what happens on or before
//! [`FEATURE_CUTOFF`] (timestamps before 2025-10-03 00:00); the churn label looks at the
//! [`CHURN_HORIZON_DAYS`] = 90 days after it (2025-10-03 .. 2025-12-31). Timestamps are
//! `Timestamp(Microsecond, None)` wall-clock times with a daily rhythm (busy evenings, quiet
//! nights); the simulation's time unit is the day.
//!
//! # Tables
//!
//! | table | columns |
//! | --- | --- |
//! | `public.customers` | `customer_id` Int64, `signup_date` Date32, `acquisition_channel` Utf8 (organic, paid_search, social, email, referral, affiliate), `country` Utf8 (US, GB, DE, FR, ES, IT, NL, SE, PL, CA; skewed), `device` Utf8 (mobile, desktop, tablet), `age_band` Utf8 (18-24, 25-34, 35-44, 45-54, 55-64, 65+) |
//! | `public.items` | `item_id` Int64, `category` Utf8 (electronics, books, fashion, home, beauty, sports, toys, grocery, garden, music, automotive, pets), `name` Utf8, `price` Float64 (list price) |
//! | `public.events` | `event_id` Int64, `customer_id` Int64, `event_time` Timestamp, `event_type` Utf8 (view, search, add_to_cart, purchase, review), `item_id` Int64 (NULL for search), `session_id` Int64, `rating` Int32 (1-5 for review, else NULL) |
//! | `public.orders` | `order_id` Int64, `customer_id` Int64, `order_time` Timestamp, `amount` Float64, `discount` Float64, `payment_method` Utf8 (card, paypal, apple_pay, bank_transfer, gift_card, cash_on_delivery), `item_count` Int32, `shipping_country` Utf8 |
//! | `public.order_lines` | `order_id` Int64, `line_no` Int32 (1-based), `item_id` Int64, `quantity` Int32, `unit_price` Float64 |
//! | `public.reviews` | `review_id` Int64 (the review event's `event_id`), `customer_id` Int64, `item_id` Int64, `review_time` Timestamp, `rating` Int32 (1-5), `body` Utf8 (the review's text) |
//! | `public.searches` | `search_id` Int64 (the search event's `event_id`), `customer_id` Int64, `search_time` Timestamp, `query` Utf8 (what was typed) |
//! | `public.winback_campaign` | `customer_id` Int64, `arm` Utf8 (coupon, control), `sent_at` Timestamp (the cutoff), `retained` Boolean |
//! | `truth.customers` | `customer_id` Int64, `purchase_rate` Float64, `dropout_prob` Float64, `spend_mean` Float64, `taste_cluster` Int32, `engagement` Float64, `churn_hazard` Float64, `churned` Boolean, `churned_at` Timestamp, `coupon_uplift` Float64 |
//! | `truth.orders` | `order_id` Int64, `is_fraud` Boolean, `fraud_pattern` Utf8 (new_account_burst, card_testing, account_takeover; NULL when legitimate) |
//! | `truth.reviews` | `review_id` Int64, `topic` Utf8 (defect, delivery, support, mixed, praise) |
//! | `truth.searches` | `search_id` Int64, `found` Boolean (the session viewed an item after it), `category` Utf8 (the category searched for; NULL when not found) |
//! | `truth.parameters` | `name` Utf8, `value` Float64: the population parameters below and a few realised totals |
//!
//! Ids: customers are numbered 1..N in generation order; items 1..M; orders, sessions and
//! events are numbered from 1 in customer order and, within a customer, in time order (an
//! event's id grows with its time). `orders.amount` = sum(quantity * unit_price) - discount,
//! exactly in cents; `discount` is in currency, not a share; `item_count` = sum(quantity).
//! Every table has at least one batch (possibly empty, to carry the schema) and every batch
//! at most [`MAX_BATCH_ROWS`] rows. Nullable columns: `events.item_id`, `events.rating`,
//! `truth.orders.fraud_pattern`, and in `truth.customers` `purchase_rate`, `dropout_prob`,
//! `spend_mean` (NULL for fraud accounts), `churn_hazard`, `churned`, `churned_at`,
//! `coupon_uplift` (NULL outside the campaign).
//!
//! # Latent rules (what the `truth` schema records and later models should find)
//!
//! Population parameters are the constants in `params.rs`; `truth.parameters` lists them
//! under the names marked *param* below.
//!
//! 1. **Customers.** Signup times follow an exponential density with scale 250 days truncated to
//!    the window, so more customers sign up early. Channel, country, device and age band are
//!    independent categorical draws. Engagement is N(channel mean, 1) with channel means organic
//!    0.1, paid_search 0, social -0.15, email 0.2, referral 0.3, affiliate -0.3
//!    (`truth.customers.engagement`). About 1.5% of accounts belong to fraudsters (rule 7);
//!    everything else describes legitimate customers.
//! 2. **Purchases (BG/NBD).** lambda ~ Gamma(shape r = 2.5, rate alpha = 100) purchases per day
//!    (`purchase_rate`; param `bgnbd_r`, param `bgnbd_alpha`) and base p ~ Beta(a = 0.8, b = 25)
//!    (`dropout_prob`; param `bgnbd_a`, param `bgnbd_b`). The first purchase comes Exp(mean 1.5
//!    days) after the signup for half of the customers and Exp(rate lambda) for the others. While
//!    alive, purchases form a Poisson process with rate lambda. As in BG/NBD there is no dropout
//!    after the first purchase; after every repeat purchase k the customer drops out with the
//!    effective probability p_k of rule 5, and then never buys again (`churned_at` = the time of
//!    that purchase). Over the window customers average about 10 orders; param
//!    `mean_orders_per_customer` reports the realised value.
//! 3. **Spend (Gamma-Gamma).** nu ~ Gamma(shape q = 4, rate gamma = 30) per customer; each order
//!    value (the amount after the coupon) is Gamma(shape p = 6, rate nu), independent of the
//!    purchase process (param `gg_p`, param `gg_q`, param `gg_gamma`; `spend_mean` = p / nu). The
//!    basket is popular items of the taste's categories near the value still to fill, and one price
//!    factor per order (clamped to [0.4, 2.5]) scales list prices so the lines add up to the drawn
//!    value; `unit_price` is therefore the list price times that factor, rounded to cents. 15% of
//!    orders carry a 5-20% coupon (`discount`).
//! 4. **Engagement and browsing.** Visits without a purchase are a Poisson process with rate
//!    0.012 * exp(0.6 * engagement) per day while the customer is alive; after a dropout the rate
//!    fades as exp(-days since the dropout / 30). The signup is a visit too. Sessions get longer
//!    with engagement (extra views geometric with mean 0.8 * exp(0.3 * engagement)), and engaged
//!    customers review more (probability sigmoid(-0.9 + 0.3 * engagement)). Each browsing session
//!    is a failed search (searches and no view; per-customer probability sigmoid(-2.2 - 0.3 *
//!    engagement + N(0, 1)), at most 0.3), an abandoned cart (views and an add_to_cart, no
//!    purchase; sigmoid(-1.6 - 0.4 * engagement + N(0, 1)), at most 0.6), a search followed by
//!    views, or plain views.
//! 5. **Dropout driven by behaviour.** After repeat purchase k: logit p_k = logit p - 0.6 *
//!    engagement + 1.0 * A_k + 0.8 * S_k + 2.5 * [rating <= 2] - 0.3 * [rating = 5], where A_k and
//!    S_k count abandoned carts and failed searches among the last 3 browsing sessions before the
//!    purchase, and rating is the review of this order if it gets one (param `dropout_beta_*`,
//!    param `pattern_window_sessions`). A review (of the order's first line) arrives 0.25 +
//!    Exp(mean 3) days after the purchase; its rating is 1 or 2 with the item's hidden defect rate
//!    (0.03 + 0.6 * Beta(0.6, 3)), else 3/4/5 with probabilities 0.15/0.35/0.5. param
//!    `mean_effective_dropout` is the average p_k drawn.
//! 6. **Churn.** A customer is *active* if they signed up on or before the cutoff date and placed
//!    an order (any row of `public.orders`) before the cutoff instant. For active customers
//!    `churned` = no order from the cutoff instant to the end of the window, which is exactly what
//!    the public tables show; for everyone else `churned` and `churn_hazard` are NULL.
//!    `churn_hazard` is P(churned | all the customer's events before the cutoff and their latent
//!    lambda, p, engagement, habits and the catalog's defect rates): with x the last purchase
//!    before the cutoff, delta the time from it to the cutoff and p_x its dropout probability
//!    (averaged over the rating of a review that has not arrived yet), the posterior probability of
//!    having dropped out is p_x L_dead / (p_x L_dead + (1 - p_x) exp(-lambda delta) L_alive), where
//!    log(L_dead / L_alive) = rate * delta - rate * 30 * (1 - exp(-delta / 30)) - sum over visits v
//!    in (x, cutoff) of (t_v - t_x) / 30 (rate = the visit rate of rule 4), and then churn_hazard =
//!    P(dead) + (1 - P(dead)) * exp(-90 * lambda). After a first purchase only, P(dead) = 0. Fraud
//!    accounts that are active have churn_hazard 1 and churned true. The realised label follows the
//!    same generative law as the hazard, so `churn_hazard` is the best any model can do (AUC about
//!    0.9 against `churned`; recency, frequency, visits since the last order, last rating and cart
//!    abandonment carry the signal).
//! 7. **Fraud** (`truth.orders`, about 2-3% of orders; param `fraud_rate`). Fraud accounts (1.5% of
//!    customers, param `fraud_account_share`) order within a day of signing up and never again: 70%
//!    are *new_account_burst* (1-4 orders 1-18 hours apart worth 250-1200, 3-6 planned lines,
//!    electronics-heavy, shipped abroad 70%, night-time 60%, paid by gift_card, cash_on_delivery,
//!    card or paypal), 30% *card_testing* (4-10 orders of one cheap item minutes apart, card or
//!    paypal). *account_takeover*: after a legitimate purchase before the cutoff, with probability
//!    0.009 (param `ato_prob_per_order`), a burst of 1-4 orders worth 3-8 times the customer's
//!    spend (at least 150) starts 0.5 + Exp(mean 7) days later, minutes apart, at night 70%,
//!    shipped abroad 85%, gift_card 45%; bursts end before the cutoff. Legitimate orders are paid
//!    80% with the customer's preferred method (apple_pay favoured on mobile, bank_transfer in
//!    DE/NL, cash_on_delivery in PL/IT), shipped abroad 2%, and follow the daily rhythm (about 4%
//!    between 00:00 and 05:00).
//! 8. **Taste.** Six clusters (`taste_cluster` 0-5: tech, style, homebody, family, reader, active)
//!    each buy 70% from three preferred categories (35/22/13%) and 30% from the others in
//!    proportion to the catalog; a cluster is 1.6 times more likely in its two age bands and 1.3
//!    times on its device. Browsing views follow the same taste. Within a category, item popularity
//!    is Zipf (exponent 1.1) over a random ranking.
//! 9. **Sessions.** An order's session ends with its purchase event (item = first line), preceded
//!    by an add_to_cart for every line, a view for some lines (always after a search), sometimes a
//!    search and a passed-over view. Card-testing and takeover sessions have only add_to_cart
//!    events before the purchase. A review is a one-event session.
//! 10. **Win-back campaign** (`public.winback_campaign`, `truth.customers.coupon_uplift`). At
//!     the cutoff instant, every active legitimate customer whose last order is at least 30 days
//!     old is at risk, and half of them at random (a stream of its own, so the rest of the world
//!     is unchanged) get a coupon. The world simulated above is the world without the campaign:
//!     a control customer is retained exactly when they order again after the cutoff (not
//!     `churned`). A coupon customer who would have churned is won back with probability 0.3 +
//!     0.3 * sigmoid(engagement), unless their last order earned a 1-2 star review before the cutoff;
//!     those "sleeping dogs" are never won back, and 40% of those who would have stayed are
//!     pushed out by the contact. `coupon_uplift` = churn_hazard * won_back - (1 - churn_hazard) *
//!     pushed_out is the exact effect on P(retained). The campaign's outcome is not written back
//!     into orders and events: a won-back coupon customer has no order after the cutoff there.
//! 11. **Review texts** (`public.reviews`, `truth.reviews.topic`). Every review event has a
//!     text of one or two sentences and perhaps a closing remark, written from its rating and
//!     the item's category (`reviews.rs`). A 1-2 star review complains about one topic that only
//!     the text tells: the product itself (`defect`, 55%), the delivery (`delivery`, 30%) or
//!     customer service (`support`, 15%). A 3-star review is `mixed`, a 4-5 star one `praise`.
//!     Low ratings come from the item's hidden defect rate (rule 5) and drive dropout, so the
//!     text of a customer's last review carries the churn signal of its rating. Each text draws
//!     from its own stream, so the texts change nothing else in the world.
//! 12. **Search texts** (`public.searches`, `truth.searches`). Every search event has a query
//!     (`searches.rs`). When the session views an item after the search, the query names an
//!     item of the first such view's category (so queries follow the taste of rule 8), with
//!     perhaps a modifier and a qualifier; otherwise (the failed searches of rule 4: searches
//!     and no view) it asks for something the shop does not sell. Failed searches raise the
//!     dropout (rule 5), so these queries carry that signal in words.
//!
//! # Files
//!
//! `params.rs` holds every parameter and vocabulary, `clock.rs` the calendar and the daily
//! rhythm, `catalog.rs` the items, `sim.rs` the per-customer simulation, `campaign.rs` the
//! win-back campaign, `reviews.rs` and `searches.rs` the review and search texts; this file
//! stitches
//! chunks into Arrow tables and reports the parameters.

mod campaign;
mod catalog;
mod chunk;
mod clock;
mod draws;
mod params;
mod reviews;
mod searches;
mod sim;

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::kernels::coalesce::BatchCoalescer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand::rngs::StdRng;

use catalog::Catalog;
use chunk::{ChunkOut, EventCols};
use draws::stream_seed;
use params::*;
use sim::Sim;

/// First day of the observation window.
pub const OBSERVATION_START: &str = "2024-01-01";
/// Last day of the observation window (included).
pub const OBSERVATION_END: &str = "2025-12-31";
/// Last day whose activity features may use; the churn label looks at the days after it.
pub const FEATURE_CUTOFF: &str = "2025-10-02";
/// Days from the day after [`FEATURE_CUTOFF`] through [`OBSERVATION_END`].
pub const CHURN_HORIZON_DAYS: i64 = 90;
/// Largest number of rows in one generated batch.
pub const MAX_BATCH_ROWS: usize = 65_536;
/// Customers at scale 1.
pub const CUSTOMERS_PER_SCALE: f64 = 100_000.0;
/// Largest accepted scale (10 million customers; memory grows by about 3.5 GB per million).
pub const MAX_SCALE: f64 = 100.0;

/// Items at scale 1; the catalog grows with the square root of the scale.
const ITEMS_PER_SCALE: f64 = 2_000.0;
const MIN_ITEMS: usize = 200;
/// Customers per chunk; a chunk is the unit of parallel work and of randomness.
const CHUNK_CUSTOMERS: usize = 2_048;
const MAX_THREADS: usize = 4;
/// Random stream of the catalog (chunks use their index).
const CATALOG_STREAM: u64 = u64::MAX;

/// One generated table.
pub struct DemoTable {
    pub schema: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub batches: Vec<RecordBatch>,
}

impl DemoTable {
    /// Total rows over all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The generated world: `public` tables first, then `truth`.
pub struct DemoWorld {
    pub tables: Vec<DemoTable>,
}

impl DemoWorld {
    /// The table `schema.name`, if generated.
    pub fn table(&self, schema: &str, name: &str) -> Option<&DemoTable> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// How big a world to generate, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoOptions {
    /// 1.0 = 100,000 customers (about 1 million orders); may be fractional.
    pub scale: f64,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scale: 1.0,
            seed: 42,
        }
    }
}

/// Generates the demo world; fails only on a scale that is not a positive finite number up to
/// [`MAX_SCALE`].
pub fn generate(options: &DemoOptions) -> Result<DemoWorld> {
    let scale = options.scale;
    if !scale.is_finite() || scale <= 0.0 {
        bail!("demo: scale must be a positive number, got {scale}");
    }
    if scale > MAX_SCALE {
        bail!("demo: scale must be at most {MAX_SCALE}, got {scale}");
    }
    let n_customers = ((CUSTOMERS_PER_SCALE * scale).round() as usize).max(1);
    let n_items = ((ITEMS_PER_SCALE * scale.sqrt()).round() as usize).max(MIN_ITEMS);

    let mut catalog_rng = StdRng::seed_from_u64(stream_seed(options.seed, CATALOG_STREAM));
    let catalog = Catalog::build(n_items, &mut catalog_rng)?;

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS);
    generate_with_threads(options, n_customers, &catalog, threads, CHUNK_CUSTOMERS)
}

/// Runs chunks of `chunk_customers` customers on `threads` threads at a time and stitches them
/// in chunk order.
fn generate_with_threads(
    options: &DemoOptions,
    n_customers: usize,
    catalog: &Catalog,
    threads: usize,
    chunk_customers: usize,
) -> Result<DemoWorld> {
    let sim = Sim::new(catalog, options.seed)?;
    let mut sinks = Sinks::new(options.seed);
    let n_chunks = n_customers.div_ceil(chunk_customers);
    // Chunks run in waves of a few per thread; each wave is stitched in chunk order, so the
    // output does not depend on the thread count and memory stays bounded by a wave.
    let wave = threads * 2;
    let mut next = 0;
    while next < n_chunks {
        let end = (next + wave).min(n_chunks);
        let outputs = std::thread::scope(|scope| {
            let handles: Vec<_> = (next..end)
                .map(|chunk| {
                    let sim = &sim;
                    let first = chunk * chunk_customers;
                    let count = chunk_customers.min(n_customers - first);
                    scope.spawn(move || sim.chunk(chunk as u64, first as i64 + 1, count))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join())
                .collect::<std::thread::Result<Vec<ChunkOut>>>()
        })
        .map_err(|_| anyhow!("demo: a generator thread panicked"))?;
        for out in outputs {
            sinks.push_chunk(out, catalog)?;
        }
        next = end;
    }
    sinks.finish(options, catalog, n_customers)
}

// --- Schemas ----------------------------------------------------------------------------------

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

fn customers_schema() -> SchemaRef {
    schema(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("signup_date", DataType::Date32, false),
        Field::new("acquisition_channel", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("age_band", DataType::Utf8, false),
    ])
}

fn items_schema() -> SchemaRef {
    schema(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
    ])
}

fn events_schema() -> SchemaRef {
    schema(vec![
        Field::new("event_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("event_time", timestamp(), false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("item_id", DataType::Int64, true),
        Field::new("session_id", DataType::Int64, false),
        Field::new("rating", DataType::Int32, true),
    ])
}

fn orders_schema() -> SchemaRef {
    schema(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_time", timestamp(), false),
        Field::new("amount", DataType::Float64, false),
        Field::new("discount", DataType::Float64, false),
        Field::new("payment_method", DataType::Utf8, false),
        Field::new("item_count", DataType::Int32, false),
        Field::new("shipping_country", DataType::Utf8, false),
    ])
}

fn order_lines_schema() -> SchemaRef {
    schema(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("line_no", DataType::Int32, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("unit_price", DataType::Float64, false),
    ])
}

fn truth_customers_schema() -> SchemaRef {
    schema(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("purchase_rate", DataType::Float64, true),
        Field::new("dropout_prob", DataType::Float64, true),
        Field::new("spend_mean", DataType::Float64, true),
        Field::new("taste_cluster", DataType::Int32, false),
        Field::new("engagement", DataType::Float64, false),
        Field::new("churn_hazard", DataType::Float64, true),
        Field::new("churned", DataType::Boolean, true),
        Field::new("churned_at", timestamp(), true),
        Field::new("coupon_uplift", DataType::Float64, true),
    ])
}

fn winback_campaign_schema() -> SchemaRef {
    schema(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("sent_at", timestamp(), false),
        Field::new("retained", DataType::Boolean, false),
    ])
}

fn reviews_schema() -> SchemaRef {
    schema(vec![
        Field::new("review_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
        Field::new("review_time", timestamp(), false),
        Field::new("rating", DataType::Int32, false),
        Field::new("body", DataType::Utf8, false),
    ])
}

fn searches_schema() -> SchemaRef {
    schema(vec![
        Field::new("search_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("search_time", timestamp(), false),
        Field::new("query", DataType::Utf8, false),
    ])
}

fn truth_searches_schema() -> SchemaRef {
    schema(vec![
        Field::new("search_id", DataType::Int64, false),
        Field::new("found", DataType::Boolean, false),
        Field::new("category", DataType::Utf8, true),
    ])
}

fn truth_reviews_schema() -> SchemaRef {
    schema(vec![
        Field::new("review_id", DataType::Int64, false),
        Field::new("topic", DataType::Utf8, false),
    ])
}

fn truth_orders_schema() -> SchemaRef {
    schema(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("is_fraud", DataType::Boolean, false),
        Field::new("fraud_pattern", DataType::Utf8, true),
    ])
}

fn truth_parameters_schema() -> SchemaRef {
    schema(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
}

// --- Columns ----------------------------------------------------------------------------------

fn names(codes: &[u8], vocabulary: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        codes.iter().map(|&c| vocabulary[c as usize]),
    ))
}

/// Ids `offset + 1 ..= offset + n`.
fn ids(offset: i64, n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        (0..n as i64).map(|i| offset + i + 1),
    ))
}

fn int64(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn int32(values: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(values))
}

fn float64(values: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

fn float64_opt(values: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(values))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values))
}

fn timestamps_opt(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values))
}

fn int64_opt(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn int32_opt(values: Vec<Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from(values))
}

fn boolean_opt(values: Vec<Option<bool>>) -> ArrayRef {
    Arc::new(BooleanArray::from(values))
}

fn strings_opt(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn date32(values: Vec<i32>) -> ArrayRef {
    Arc::new(Date32Array::from(values))
}

// --- Stitching chunks into tables ----------------------------------------------------------

/// One output table: batches are coalesced to exactly `MAX_BATCH_ROWS` rows (the last one
/// may be shorter).
struct Sink {
    schema: &'static str,
    name: &'static str,
    description: &'static str,
    arrow: SchemaRef,
    coalescer: BatchCoalescer,
    batches: Vec<RecordBatch>,
}

impl Sink {
    fn new(
        schema: &'static str,
        name: &'static str,
        description: &'static str,
        arrow: SchemaRef,
    ) -> Self {
        let coalescer = BatchCoalescer::new(arrow.clone(), MAX_BATCH_ROWS);
        Sink {
            schema,
            name,
            description,
            arrow,
            coalescer,
            batches: Vec::new(),
        }
    }

    fn push(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(self.arrow.clone(), columns)?;
        if batch.num_rows() > 0 {
            self.coalescer.push_batch(batch)?;
        }
        while let Some(batch) = self.coalescer.next_completed_batch() {
            self.batches.push(batch);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<DemoTable> {
        self.coalescer.finish_buffered_batch()?;
        while let Some(batch) = self.coalescer.next_completed_batch() {
            self.batches.push(batch);
        }
        if self.batches.is_empty() {
            // An empty table still carries its schema.
            self.batches
                .push(RecordBatch::new_empty(self.arrow.clone()));
        }
        Ok(DemoTable {
            schema: self.schema,
            name: self.name,
            description: self.description,
            batches: self.batches,
        })
    }
}

/// Running totals over the stitched chunks.
#[derive(Default)]
struct Totals {
    orders: i64,
    events: i64,
    sessions: i64,
    lines: i64,
    fraud_orders: i64,
    fraud_accounts: u64,
    dropout_sum: f64,
    dropout_draws: u64,
    active: u64,
    churned: u64,
}

struct Sinks {
    customers: Sink,
    events: Sink,
    orders: Sink,
    order_lines: Sink,
    truth_customers: Sink,
    truth_orders: Sink,
    winback: Sink,
    reviews: Sink,
    truth_reviews: Sink,
    searches: Sink,
    truth_searches: Sink,
    /// The world's seed, which review texts draw from.
    seed: u64,
    totals: Totals,
}

impl Sinks {
    fn new(seed: u64) -> Self {
        Sinks {
            customers: Sink::new(
                "public",
                "customers",
                "Shop customers: signup, acquisition channel, country, device, age band",
                customers_schema(),
            ),
            events: Sink::new(
                "public",
                "events",
                "Behaviour events in sessions: view, search, add_to_cart, purchase, review",
                events_schema(),
            ),
            orders: Sink::new(
                "public",
                "orders",
                "Orders: time, amount after discount, payment method, item count, shipping country",
                orders_schema(),
            ),
            order_lines: Sink::new(
                "public",
                "order_lines",
                "Order lines: item, quantity and unit price paid",
                order_lines_schema(),
            ),
            truth_customers: Sink::new(
                "truth",
                "customers",
                "Latent truth per customer: BG/NBD and Gamma-Gamma parameters, taste cluster, engagement, churn hazard and label",
                truth_customers_schema(),
            ),
            truth_orders: Sink::new(
                "truth",
                "orders",
                "Latent truth per order: fraud label and pattern",
                truth_orders_schema(),
            ),
            winback: Sink::new(
                "public",
                "winback_campaign",
                "A randomised win-back campaign at the cutoff: coupon or control per customer at risk, and whether they were retained",
                winback_campaign_schema(),
            ),
            reviews: Sink::new(
                "public",
                "reviews",
                "Product reviews: the customer's rating and text",
                reviews_schema(),
            ),
            truth_reviews: Sink::new(
                "truth",
                "reviews",
                "Latent truth per review: the topic its text is about",
                truth_reviews_schema(),
            ),
            searches: Sink::new(
                "public",
                "searches",
                "Site searches: what the customer typed",
                searches_schema(),
            ),
            truth_searches: Sink::new(
                "truth",
                "searches",
                "Latent truth per search: whether it found anything, and the category sought",
                truth_searches_schema(),
            ),
            seed,
            totals: Totals::default(),
        }
    }

    /// Appends one chunk, shifting its local order, event and session numbers past those of
    /// the chunks before it.
    fn push_chunk(&mut self, chunk: ChunkOut, catalog: &Catalog) -> Result<()> {
        let ChunkOut {
            customers,
            truth,
            orders,
            lines,
            events,
            winback,
            sessions,
            stats,
        } = chunk;
        // Review and search ids are event ids: the events of this chunk start after those before it.
        self.push_texts(&events, self.totals.events, catalog)?;
        let totals = &mut self.totals;
        totals.fraud_accounts += stats.fraud_accounts;
        totals.dropout_sum += stats.dropout_sum;
        totals.dropout_draws += stats.dropout_draws;
        totals.active += truth.churned.iter().filter(|c| c.is_some()).count() as u64;
        totals.churned += truth.churned.iter().filter(|c| **c == Some(true)).count() as u64;

        self.truth_customers.push(vec![
            int64(customers.id.clone()),
            float64_opt(truth.purchase_rate),
            float64_opt(truth.dropout_prob),
            float64_opt(truth.spend_mean),
            int32(truth.taste_cluster),
            float64(truth.engagement),
            float64_opt(truth.churn_hazard),
            boolean_opt(truth.churned),
            timestamps_opt(truth.churned_at),
            float64_opt(truth.coupon_uplift),
        ])?;
        let sent = winback.customer_id.len();
        self.winback.push(vec![
            int64(winback.customer_id),
            Arc::new(StringArray::from_iter_values(
                winback
                    .coupon
                    .iter()
                    .map(|&c| if c { "coupon" } else { "control" }),
            )) as ArrayRef,
            timestamps(vec![clock::cutoff_us(); sent]),
            boolean_opt(winback.retained.into_iter().map(Some).collect()),
        ])?;
        self.customers.push(vec![
            int64(customers.id),
            date32(customers.signup_day),
            names(&customers.channel, &CHANNELS),
            names(&customers.country, &COUNTRIES),
            names(&customers.device, &DEVICES),
            names(&customers.age_band, &AGE_BANDS),
        ])?;

        let order_offset = totals.orders;
        let n_orders = orders.customer_id.len();
        let patterns: Vec<Option<&str>> = orders
            .fraud
            .iter()
            .map(|&f| (f != FRAUD_NONE).then(|| FRAUD_PATTERNS[f as usize - 1]))
            .collect();
        totals.fraud_orders += patterns.iter().filter(|p| p.is_some()).count() as i64;
        self.truth_orders.push(vec![
            ids(order_offset, n_orders),
            boolean_opt(
                orders
                    .fraud
                    .iter()
                    .map(|&f| Some(f != FRAUD_NONE))
                    .collect(),
            ),
            strings_opt(patterns),
        ])?;
        self.orders.push(vec![
            ids(order_offset, n_orders),
            int64(orders.customer_id),
            timestamps(orders.time),
            float64(orders.amount),
            float64(orders.discount),
            names(&orders.payment, &PAYMENTS),
            int32(orders.item_count),
            names(&orders.shipping_country, &COUNTRIES),
        ])?;
        totals.lines += lines.order.len() as i64;
        self.order_lines.push(vec![
            int64(
                lines
                    .order
                    .iter()
                    .map(|&o| order_offset + o as i64 + 1)
                    .collect(),
            ),
            int32(lines.line_no),
            int64(lines.item_id),
            int32(lines.quantity),
            float64(lines.unit_price),
        ])?;
        totals.orders += n_orders as i64;

        let event_offset = totals.events;
        let session_offset = totals.sessions;
        let n_events = events.customer_id.len();
        self.events.push(vec![
            ids(event_offset, n_events),
            int64(events.customer_id),
            timestamps(events.time),
            names(&events.kind, &EVENT_TYPES),
            int64_opt(events.item_id),
            int64(
                events
                    .session
                    .iter()
                    .map(|&s| session_offset + s as i64 + 1)
                    .collect(),
            ),
            int32_opt(events.rating),
        ])?;
        totals.events += n_events as i64;
        totals.sessions += sessions as i64;
        Ok(())
    }

    /// The texts of the chunk's review and search events (rules 11 and 12).
    fn push_texts(
        &mut self,
        events: &EventCols,
        event_offset: i64,
        catalog: &Catalog,
    ) -> Result<()> {
        let r = reviews::rows(self.seed, events, event_offset, &catalog.category);
        self.truth_reviews.push(vec![
            int64(r.ids.clone()),
            Arc::new(StringArray::from_iter_values(r.topics)) as ArrayRef,
        ])?;
        self.reviews.push(vec![
            int64(r.ids),
            int64(r.customers),
            int64(r.items),
            timestamps(r.times),
            int32(r.ratings),
            Arc::new(StringArray::from_iter_values(r.bodies)) as ArrayRef,
        ])?;
        let s = searches::rows(self.seed, events, event_offset, &catalog.category);
        self.truth_searches.push(vec![
            int64(s.ids.clone()),
            boolean_opt(s.found),
            strings_opt(s.categories),
        ])?;
        self.searches.push(vec![
            int64(s.ids),
            int64(s.customers),
            timestamps(s.times),
            Arc::new(StringArray::from_iter_values(s.queries)) as ArrayRef,
        ])
    }

    fn finish(
        self,
        options: &DemoOptions,
        catalog: &Catalog,
        n_customers: usize,
    ) -> Result<DemoWorld> {
        let mut items = Sink::new(
            "public",
            "items",
            "Catalog items: category, name and list price",
            items_schema(),
        );
        items.push(vec![
            ids(0, catalog.len()),
            names(&catalog.category, &CATEGORIES),
            Arc::new(StringArray::from_iter_values(catalog.name.iter())) as ArrayRef,
            float64(catalog.price.clone()),
        ])?;

        let mut parameters = Sink::new(
            "truth",
            "parameters",
            "The generator's population parameters and realised totals",
            truth_parameters_schema(),
        );
        let rows = parameter_rows(options, &self.totals, catalog.len(), n_customers);
        parameters.push(vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(name, _)| *name),
            )) as ArrayRef,
            float64(rows.iter().map(|(_, value)| *value).collect()),
        ])?;

        Ok(DemoWorld {
            tables: vec![
                self.customers.finish()?,
                items.finish()?,
                self.events.finish()?,
                self.orders.finish()?,
                self.order_lines.finish()?,
                self.winback.finish()?,
                self.reviews.finish()?,
                self.searches.finish()?,
                self.truth_customers.finish()?,
                self.truth_orders.finish()?,
                self.truth_reviews.finish()?,
                self.truth_searches.finish()?,
                parameters.finish()?,
            ],
        })
    }
}

/// Rows of `truth.parameters`.
fn parameter_rows(
    options: &DemoOptions,
    totals: &Totals,
    n_items: usize,
    n_customers: usize,
) -> Vec<(&'static str, f64)> {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    vec![
        ("bgnbd_r", BGNBD_R),
        ("bgnbd_alpha", BGNBD_ALPHA),
        ("bgnbd_a", BGNBD_A),
        ("bgnbd_b", BGNBD_B),
        ("gg_p", GG_P),
        ("gg_q", GG_Q),
        ("gg_gamma", GG_GAMMA),
        ("quick_first_purchase_prob", QUICK_FIRST_PROB),
        ("quick_first_purchase_mean_days", QUICK_FIRST_MEAN_DAYS),
        ("signup_decay_days", SIGNUP_DECAY_DAYS),
        ("browse_rate_base", BROWSE_RATE_BASE),
        ("browse_rate_engagement", BROWSE_RATE_ENGAGEMENT),
        ("dead_browse_tau_days", DEAD_BROWSE_TAU_DAYS),
        ("dropout_beta_engagement", DROPOUT_BETA_ENGAGEMENT),
        ("dropout_beta_abandoned_cart", DROPOUT_BETA_ABANDONED_CART),
        ("dropout_beta_failed_search", DROPOUT_BETA_FAILED_SEARCH),
        ("dropout_beta_low_rating", DROPOUT_BETA_LOW_RATING),
        ("dropout_beta_top_rating", DROPOUT_BETA_TOP_RATING),
        ("pattern_window_sessions", PATTERN_WINDOW as f64),
        ("review_delay_min_days", REVIEW_DELAY_MIN_DAYS),
        ("review_delay_mean_days", REVIEW_DELAY_MEAN_DAYS),
        ("n_taste_clusters", N_CLUSTERS as f64),
        (
            "taste_preferred_share",
            PREFERRED_WEIGHTS.iter().sum::<f64>(),
        ),
        ("fraud_account_share", FRAUD_ACCOUNT_SHARE),
        ("card_testing_share", CARD_TESTING_SHARE),
        ("ato_prob_per_order", ATO_PROB_PER_ORDER),
        ("discount_prob", DISCOUNT_PROB),
        ("window_days", clock::WINDOW_DAYS),
        ("cutoff_day", clock::CUTOFF_T),
        ("churn_horizon_days", CHURN_HORIZON_DAYS as f64),
        ("scale", options.scale),
        ("seed", options.seed as f64),
        ("n_customers", n_customers as f64),
        ("n_items", n_items as f64),
        ("n_orders", totals.orders as f64),
        ("n_order_lines", totals.lines as f64),
        ("n_events", totals.events as f64),
        ("n_sessions", totals.sessions as f64),
        ("n_fraud_accounts", totals.fraud_accounts as f64),
        (
            "fraud_rate",
            ratio(totals.fraud_orders as f64, totals.orders as f64),
        ),
        (
            "mean_orders_per_customer",
            ratio(totals.orders as f64, n_customers as f64),
        ),
        (
            "mean_effective_dropout",
            ratio(totals.dropout_sum, totals.dropout_draws as f64),
        ),
        ("n_active_at_cutoff", totals.active as f64),
        (
            "churn_rate",
            ratio(totals.churned as f64, totals.active as f64),
        ),
    ]
}

#[cfg(test)]
mod tests;
