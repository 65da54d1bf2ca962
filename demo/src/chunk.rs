//! What the simulation of one chunk of customers produces: plain column vectors per table,
//! with chunk-local ids that the generator shifts when it stitches chunks together.

/// Rows of `public.customers`.
#[derive(Default)]
pub(crate) struct CustomerCols {
    pub(crate) id: Vec<i64>,
    pub(crate) signup_day: Vec<i32>,
    pub(crate) channel: Vec<u8>,
    pub(crate) country: Vec<u8>,
    pub(crate) device: Vec<u8>,
    pub(crate) age_band: Vec<u8>,
}

/// Rows of `truth.customers` (the customer id is the one in `CustomerCols`).
#[derive(Default)]
pub(crate) struct TruthCols {
    pub(crate) purchase_rate: Vec<Option<f64>>,
    pub(crate) dropout_prob: Vec<Option<f64>>,
    pub(crate) spend_mean: Vec<Option<f64>>,
    pub(crate) taste_cluster: Vec<i32>,
    pub(crate) engagement: Vec<f64>,
    pub(crate) churn_hazard: Vec<Option<f64>>,
    pub(crate) churned: Vec<Option<bool>>,
    pub(crate) churned_at: Vec<Option<i64>>,
    pub(crate) coupon_uplift: Vec<Option<f64>>,
}

/// Rows of `public.winback_campaign`.
#[derive(Default)]
pub(crate) struct WinbackCols {
    pub(crate) customer_id: Vec<i64>,
    pub(crate) coupon: Vec<bool>,
    pub(crate) retained: Vec<bool>,
}

/// Rows of `public.orders` and `truth.orders`; the chunk-local order index is the position.
#[derive(Default)]
pub(crate) struct OrderCols {
    pub(crate) customer_id: Vec<i64>,
    pub(crate) time: Vec<i64>,
    pub(crate) amount: Vec<f64>,
    pub(crate) discount: Vec<f64>,
    pub(crate) payment: Vec<u8>,
    pub(crate) item_count: Vec<i32>,
    pub(crate) shipping_country: Vec<u8>,
    /// 0 for a legitimate order, else the fraud pattern code.
    pub(crate) fraud: Vec<u8>,
}

/// Rows of `public.order_lines`.
#[derive(Default)]
pub(crate) struct LineCols {
    /// Chunk-local order index.
    pub(crate) order: Vec<u32>,
    pub(crate) line_no: Vec<i32>,
    pub(crate) item_id: Vec<i64>,
    pub(crate) quantity: Vec<i32>,
    pub(crate) unit_price: Vec<f64>,
}

/// Rows of `public.events`; the chunk-local event index is the position.
#[derive(Default)]
pub(crate) struct EventCols {
    pub(crate) customer_id: Vec<i64>,
    pub(crate) time: Vec<i64>,
    pub(crate) kind: Vec<u8>,
    pub(crate) item_id: Vec<Option<i64>>,
    /// Chunk-local session index.
    pub(crate) session: Vec<u32>,
    pub(crate) rating: Vec<Option<i32>>,
}

/// Sums that `truth.parameters` reports.
#[derive(Default, Clone, Copy)]
pub(crate) struct ChunkStats {
    /// Sum and count of the effective dropout probabilities drawn after repeat purchases.
    pub(crate) dropout_sum: f64,
    pub(crate) dropout_draws: u64,
    pub(crate) fraud_accounts: u64,
}

/// Everything one chunk of customers produces.
#[derive(Default)]
pub(crate) struct ChunkOut {
    pub(crate) customers: CustomerCols,
    pub(crate) truth: TruthCols,
    pub(crate) orders: OrderCols,
    pub(crate) lines: LineCols,
    pub(crate) events: EventCols,
    pub(crate) winback: WinbackCols,
    /// Number of sessions in the chunk (session indexes are `0..sessions`).
    pub(crate) sessions: u32,
    pub(crate) stats: ChunkStats,
}
