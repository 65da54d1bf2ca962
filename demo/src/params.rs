//! Population parameters and vocabularies of the demo world.
//!
//! Every number a later model is supposed to recover lives here; `truth.parameters` reports
//! the ones that describe the population (see `parameter_rows` in `mod.rs`). The values were
//! chosen so that, over the two-year window, customers place about 10 orders on average and
//! the true churn hazard separates churners from stayers with an AUC of about 0.9.

// --- Repeat purchases (BG/NBD) -------------------------------------------------------------

/// Shape of the Gamma distribution of the purchase rate lambda (purchases per day).
pub(crate) const BGNBD_R: f64 = 2.5;
/// Rate of the Gamma distribution of lambda (mean lambda = r / alpha = 0.025 per day).
pub(crate) const BGNBD_ALPHA: f64 = 100.0;
/// Beta(a, b) distribution of the base dropout probability p (mean about 0.031).
pub(crate) const BGNBD_A: f64 = 0.8;
pub(crate) const BGNBD_B: f64 = 25.0;

/// Share of customers whose first purchase follows the signup quickly (exponential with
/// `QUICK_FIRST_MEAN_DAYS`); the others wait an exponential time with their own rate lambda.
pub(crate) const QUICK_FIRST_PROB: f64 = 0.5;
pub(crate) const QUICK_FIRST_MEAN_DAYS: f64 = 1.5;

// --- Spend (Gamma-Gamma) ------------------------------------------------------------------

/// Order values are Gamma(p, nu) with the customer's nu ~ Gamma(q, gamma) (rates), so the
/// customer's mean order value is p / nu and the population mean p * gamma / (q - 1) = 60.
pub(crate) const GG_P: f64 = 6.0;
pub(crate) const GG_Q: f64 = 4.0;
pub(crate) const GG_GAMMA: f64 = 30.0;

/// Line prices are list prices times one price factor per order that makes the basket hit
/// its drawn value; the factor is clamped to this range (promotions, surcharges).
pub(crate) const PRICE_FACTOR_MIN: f64 = 0.4;
pub(crate) const PRICE_FACTOR_MAX: f64 = 2.5;
/// Probability that an order carries a coupon, and the coupon levels (share of the gross).
pub(crate) const DISCOUNT_PROB: f64 = 0.15;
pub(crate) const DISCOUNT_LEVELS: [f64; 4] = [0.05, 0.10, 0.15, 0.20];
/// Mean number of lines beyond the first that a legitimate basket is planned with.
pub(crate) const EXTRA_LINES_MEAN: f64 = 0.5;
/// At most this many lines per order.
pub(crate) const MAX_LINES: usize = 8;
/// A basket stops growing once what is left of its value is below this share of it.
pub(crate) const BASKET_STOP_SHARE: f64 = 0.3;
/// Candidates drawn by popularity when looking for an item near a target price.
pub(crate) const PRICE_CANDIDATES: usize = 6;

// --- Signups, engagement, browsing -----------------------------------------------------------

/// Signup times follow an exponential density truncated to the window with this scale in
/// days, so more customers sign up early than late.
pub(crate) const SIGNUP_DECAY_DAYS: f64 = 250.0;

/// Browsing sessions (visits without a purchase) of a live customer are a Poisson process
/// with rate `BROWSE_RATE_BASE * exp(BROWSE_RATE_ENGAGEMENT * engagement)` per day.
pub(crate) const BROWSE_RATE_BASE: f64 = 0.012;
pub(crate) const BROWSE_RATE_ENGAGEMENT: f64 = 0.6;
/// After a dropout the visits fade: the rate is multiplied by exp(-days since dropout / tau).
pub(crate) const DEAD_BROWSE_TAU_DAYS: f64 = 30.0;
/// Extra item views per browsing session: geometric with mean
/// `VIEW_EXTRA_MEAN * exp(VIEW_EXTRA_ENGAGEMENT * engagement)` (session length).
pub(crate) const VIEW_EXTRA_MEAN: f64 = 0.8;
pub(crate) const VIEW_EXTRA_ENGAGEMENT: f64 = 0.3;
/// Per-customer propensities of the two bad session patterns (logit scale):
/// base + engagement coefficient * engagement + sd * N(0, 1).
pub(crate) const ABANDON_LOGIT_BASE: f64 = -1.6;
pub(crate) const ABANDON_LOGIT_ENGAGEMENT: f64 = -0.4;
pub(crate) const ABANDON_LOGIT_SD: f64 = 1.0;
pub(crate) const ABANDON_MAX: f64 = 0.6;
pub(crate) const FAILED_SEARCH_LOGIT_BASE: f64 = -2.2;
pub(crate) const FAILED_SEARCH_LOGIT_ENGAGEMENT: f64 = -0.3;
pub(crate) const FAILED_SEARCH_LOGIT_SD: f64 = 1.0;
pub(crate) const FAILED_SEARCH_MAX: f64 = 0.3;
/// Share of the remaining (neither abandoned nor failed) browsing sessions that start with a
/// search that finds something.
pub(crate) const SEARCH_SHARE: f64 = 0.3;

// --- Dropout modifiers ----------------------------------------------------------------------

/// logit(p_k) = logit(p) - engagement coefficient * engagement
///            + abandoned coefficient * (abandoned carts among the last `PATTERN_WINDOW`
///              browsing sessions)
///            + failed-search coefficient * (failed searches among them)
///            + low-rating coefficient * [review rating of this order <= 2]
///            - top-rating coefficient * [review rating of this order = 5]
pub(crate) const DROPOUT_BETA_ENGAGEMENT: f64 = 0.6;
pub(crate) const DROPOUT_BETA_ABANDONED_CART: f64 = 1.0;
pub(crate) const DROPOUT_BETA_FAILED_SEARCH: f64 = 0.8;
pub(crate) const DROPOUT_BETA_LOW_RATING: f64 = 2.5;
pub(crate) const DROPOUT_BETA_TOP_RATING: f64 = 0.3;
pub(crate) const PATTERN_WINDOW: usize = 3;

// --- Reviews ----------------------------------------------------------------------------------

/// Probability that an order is reviewed: sigmoid(base + engagement coefficient * engagement).
pub(crate) const REVIEW_LOGIT_BASE: f64 = -0.9;
pub(crate) const REVIEW_LOGIT_ENGAGEMENT: f64 = 0.3;
/// The review arrives min + Exp(mean) days after the purchase.
pub(crate) const REVIEW_DELAY_MIN_DAYS: f64 = 0.25;
pub(crate) const REVIEW_DELAY_MEAN_DAYS: f64 = 3.0;
/// Without a defect the rating is 3, 4 or 5 with these probabilities.
pub(crate) const RATING_GOOD_PROBS: [f64; 3] = [0.15, 0.35, 0.5];
/// Item defect rate (probability of a 1-2 rating): min + span * Beta(a, b).
pub(crate) const DEFECT_MIN: f64 = 0.03;
pub(crate) const DEFECT_SPAN: f64 = 0.6;
pub(crate) const DEFECT_BETA_A: f64 = 0.6;
pub(crate) const DEFECT_BETA_B: f64 = 3.0;

// --- Legitimate order details ---------------------------------------------------------------

/// Share of orders paid with the customer's preferred method.
pub(crate) const PAYMENT_LOYALTY: f64 = 0.8;
/// Share of legitimate orders shipped to another country (gifts).
pub(crate) const GIFT_ABROAD_PROB: f64 = 0.02;

// --- Fraud ------------------------------------------------------------------------------------

/// Share of customer accounts opened by fraudsters.
pub(crate) const FRAUD_ACCOUNT_SHARE: f64 = 0.015;
/// Share of fraud accounts that test stolen cards (many tiny orders) rather than cash out.
pub(crate) const CARD_TESTING_SHARE: f64 = 0.3;
/// Probability that a legitimate purchase before the cutoff is followed by an account
/// takeover burst.
pub(crate) const ATO_PROB_PER_ORDER: f64 = 0.009;
pub(crate) const ATO_DELAY_MIN_DAYS: f64 = 0.5;
pub(crate) const ATO_DELAY_MEAN_DAYS: f64 = 7.0;
pub(crate) const ATO_NIGHT_PROB: f64 = 0.7;
pub(crate) const ATO_ABROAD_PROB: f64 = 0.85;

/// Fraud pattern codes as stored in chunk output (0 = legitimate).
pub(crate) const FRAUD_NONE: u8 = 0;
pub(crate) const FRAUD_NEW_ACCOUNT: u8 = 1;
pub(crate) const FRAUD_CARD_TESTING: u8 = 2;
pub(crate) const FRAUD_TAKEOVER: u8 = 3;
/// Names of the fraud patterns, indexed by code - 1.
pub(crate) const FRAUD_PATTERNS: [&str; 3] =
    ["new_account_burst", "card_testing", "account_takeover"];

// --- Vocabularies -----------------------------------------------------------------------------

pub(crate) const CHANNELS: [&str; 6] = [
    "organic",
    "paid_search",
    "social",
    "email",
    "referral",
    "affiliate",
];
pub(crate) const CHANNEL_WEIGHTS: [f64; 6] = [0.30, 0.22, 0.16, 0.10, 0.10, 0.12];
/// Mean engagement by acquisition channel: referrals and e-mail bring engaged customers,
/// affiliates and social ads less engaged ones.
pub(crate) const CHANNEL_ENGAGEMENT: [f64; 6] = [0.1, 0.0, -0.15, 0.2, 0.3, -0.3];

pub(crate) const COUNTRIES: [&str; 10] =
    ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "CA"];
pub(crate) const COUNTRY_WEIGHTS: [f64; 10] =
    [0.30, 0.14, 0.12, 0.10, 0.07, 0.07, 0.06, 0.05, 0.05, 0.04];

pub(crate) const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
pub(crate) const DEVICE_WEIGHTS: [f64; 3] = [0.55, 0.35, 0.10];
pub(crate) const MOBILE: usize = 0;
pub(crate) const DESKTOP: usize = 1;
pub(crate) const TABLET: usize = 2;

pub(crate) const AGE_BANDS: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
pub(crate) const AGE_WEIGHTS: [f64; 6] = [0.14, 0.28, 0.24, 0.16, 0.11, 0.07];

pub(crate) const PAYMENTS: [&str; 6] = [
    "card",
    "paypal",
    "apple_pay",
    "bank_transfer",
    "gift_card",
    "cash_on_delivery",
];
pub(crate) const CARD: usize = 0;
pub(crate) const PAYPAL: usize = 1;
pub(crate) const APPLE_PAY: usize = 2;
pub(crate) const BANK_TRANSFER: usize = 3;
pub(crate) const CASH_ON_DELIVERY: usize = 5;
/// Payment mix of legitimate orders before the country and device adjustments.
pub(crate) const PAYMENT_WEIGHTS: [f64; 6] = [0.46, 0.24, 0.12, 0.08, 0.05, 0.05];
/// Account takeovers cash out through gift cards.
pub(crate) const ATO_PAYMENT_WEIGHTS: [f64; 6] = [0.25, 0.20, 0.10, 0.0, 0.45, 0.0];
/// Cash-out fraud accounts avoid traceable payment.
pub(crate) const FRAUD_ACCOUNT_PAYMENT_WEIGHTS: [f64; 6] = [0.25, 0.15, 0.0, 0.0, 0.35, 0.25];

pub(crate) const EVENT_TYPES: [&str; 5] = ["view", "search", "add_to_cart", "purchase", "review"];
pub(crate) const EV_VIEW: u8 = 0;
pub(crate) const EV_SEARCH: u8 = 1;
pub(crate) const EV_CART: u8 = 2;
pub(crate) const EV_PURCHASE: u8 = 3;
pub(crate) const EV_REVIEW: u8 = 4;

// --- Catalog and tastes -----------------------------------------------------------------------

pub(crate) const N_CATEGORIES: usize = 12;
pub(crate) const CATEGORIES: [&str; N_CATEGORIES] = [
    "electronics",
    "books",
    "fashion",
    "home",
    "beauty",
    "sports",
    "toys",
    "grocery",
    "garden",
    "music",
    "automotive",
    "pets",
];
pub(crate) const ELECTRONICS: usize = 0;
pub(crate) const BOOKS: usize = 1;
pub(crate) const FASHION: usize = 2;
pub(crate) const HOME: usize = 3;
pub(crate) const BEAUTY: usize = 4;
pub(crate) const SPORTS: usize = 5;
pub(crate) const TOYS: usize = 6;
pub(crate) const GROCERY: usize = 7;
pub(crate) const GARDEN: usize = 8;
pub(crate) const MUSIC: usize = 9;
pub(crate) const AUTOMOTIVE: usize = 10;
pub(crate) const PETS: usize = 11;
/// Cheap categories that card testers buy from.
pub(crate) const CHEAP_CATEGORIES: [usize; 4] = [GROCERY, BOOKS, MUSIC, BEAUTY];
/// Share of the catalog in each category.
pub(crate) const CATEGORY_SHARE: [f64; N_CATEGORIES] = [
    0.12, 0.11, 0.12, 0.10, 0.08, 0.08, 0.07, 0.08, 0.06, 0.06, 0.05, 0.07,
];
/// Median list price per category; prices are log-normal around it.
pub(crate) const CATEGORY_MEDIAN_PRICE: [f64; N_CATEGORIES] = [
    120.0, 14.0, 38.0, 45.0, 18.0, 42.0, 24.0, 7.0, 32.0, 15.0, 55.0, 19.0,
];
pub(crate) const CATEGORY_PRICE_SIGMA: [f64; N_CATEGORIES] =
    [0.8, 0.5, 0.6, 0.7, 0.5, 0.6, 0.6, 0.5, 0.6, 0.4, 0.8, 0.6];
/// Zipf exponent of item popularity within a category.
pub(crate) const ZIPF_EXPONENT: f64 = 1.1;
/// Every category gets at least this many items.
pub(crate) const MIN_ITEMS_PER_CATEGORY: usize = 8;

/// A taste cluster: the categories it prefers (in order) and the age bands and device it is
/// more common with.
pub(crate) struct Cluster {
    pub(crate) weight: f64,
    pub(crate) preferred: [usize; 3],
    pub(crate) ages: [usize; 2],
    pub(crate) device: usize,
}

pub(crate) const N_CLUSTERS: usize = 6;
/// tech, style, homebody, family, reader, active (cluster ids 0-5).
pub(crate) const CLUSTERS: [Cluster; N_CLUSTERS] = [
    Cluster {
        weight: 0.19,
        preferred: [ELECTRONICS, MUSIC, AUTOMOTIVE],
        ages: [0, 1],
        device: DESKTOP,
    },
    Cluster {
        weight: 0.18,
        preferred: [FASHION, BEAUTY, HOME],
        ages: [0, 1],
        device: MOBILE,
    },
    Cluster {
        weight: 0.17,
        preferred: [HOME, GARDEN, GROCERY],
        ages: [3, 4],
        device: DESKTOP,
    },
    Cluster {
        weight: 0.16,
        preferred: [TOYS, PETS, GROCERY],
        ages: [1, 2],
        device: MOBILE,
    },
    Cluster {
        weight: 0.15,
        preferred: [BOOKS, MUSIC, HOME],
        ages: [4, 5],
        device: TABLET,
    },
    Cluster {
        weight: 0.15,
        preferred: [SPORTS, FASHION, GARDEN],
        ages: [1, 2],
        device: MOBILE,
    },
];
/// Shares of a cluster's purchases from its preferred categories (together 70%); the other
/// 30% spread over the remaining categories in proportion to their catalog share.
pub(crate) const PREFERRED_WEIGHTS: [f64; 3] = [0.35, 0.22, 0.13];
/// Multipliers of a cluster's weight for customers in its age bands and on its device.
pub(crate) const CLUSTER_AGE_LIFT: f64 = 1.6;
pub(crate) const CLUSTER_DEVICE_LIFT: f64 = 1.3;

/// Time-of-day profile of legitimate activity (relative weight per hour, 00-23).
pub(crate) const HOUR_WEIGHTS: [f64; 24] = [
    1.2, 0.7, 0.4, 0.3, 0.3, 0.5, 1.2, 2.2, 3.0, 3.5, 3.8, 4.0, 4.5, 4.3, 4.0, 4.0, 4.2, 4.6, 5.2,
    6.0, 6.5, 6.2, 4.5, 2.6,
];

/// Words for item names.
pub(crate) const ADJECTIVES: [&str; 16] = [
    "Classic",
    "Smart",
    "Eco",
    "Premium",
    "Compact",
    "Deluxe",
    "Urban",
    "Nordic",
    "Vintage",
    "Pro",
    "Essential",
    "Bright",
    "Silent",
    "Rapid",
    "Cozy",
    "Bold",
];
pub(crate) const NOUNS: [[&str; 6]; N_CATEGORIES] = [
    [
        "Headphones",
        "Speaker",
        "Charger",
        "Monitor",
        "Keyboard",
        "Camera",
    ],
    [
        "Novel",
        "Cookbook",
        "Atlas",
        "Biography",
        "Thriller",
        "Poetry Collection",
    ],
    ["Jacket", "Sneakers", "Scarf", "Dress", "Jeans", "Handbag"],
    ["Lamp", "Cushion", "Vase", "Blanket", "Kettle", "Shelf"],
    [
        "Serum",
        "Lipstick",
        "Moisturizer",
        "Perfume",
        "Shampoo",
        "Face Mask",
    ],
    [
        "Yoga Mat",
        "Dumbbells",
        "Running Shoes",
        "Water Bottle",
        "Tennis Racket",
        "Bike Helmet",
    ],
    [
        "Puzzle",
        "Building Set",
        "Plush Bear",
        "Board Game",
        "Toy Car",
        "Doll",
    ],
    [
        "Coffee Beans",
        "Olive Oil",
        "Tea Box",
        "Chocolate",
        "Pasta",
        "Granola",
    ],
    [
        "Planter",
        "Hose",
        "Pruning Shears",
        "Seed Kit",
        "Garden Chair",
        "Watering Can",
    ],
    [
        "Vinyl Record",
        "CD Box",
        "Guitar Strings",
        "Songbook",
        "Ukulele",
        "Drum Sticks",
    ],
    [
        "Car Mat",
        "Dash Cam",
        "Tire Inflator",
        "Seat Cover",
        "Jump Starter",
        "Wax Kit",
    ],
    [
        "Dog Bed",
        "Cat Tree",
        "Pet Food",
        "Leash",
        "Chew Toy",
        "Aquarium Filter",
    ],
];
