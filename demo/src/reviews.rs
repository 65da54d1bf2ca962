//! Review texts (rule 11 of the crate docs): the body of every review event, written from
//! its rating, the reviewed item's category and a complaint topic that only the text shows.
//!
//! Each review draws from a random stream of its own (seeded by the review id), so adding
//! texts leaves every other table of the world unchanged.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::chunk::EventCols;
use super::draws::stream_seed;
use super::params::{EV_REVIEW, N_CATEGORIES};

/// Salt of the review-text streams.
const STREAM_SALT: u64 = 0x7e47_0000_0000_0011;

/// What a review is about: the truth `truth.reviews.topic` records.
pub(crate) const TOPICS: [&str; 5] = ["defect", "delivery", "support", "mixed", "praise"];
const DEFECT: usize = 0;
const DELIVERY: usize = 1;
const SUPPORT: usize = 2;
const MIXED: usize = 3;
const PRAISE: usize = 4;

/// Shares of the complaint topics in 1-2 star reviews: defect, delivery, support.
pub(crate) const COMPLAINT_SHARES: [f64; 3] = [0.55, 0.30, 0.15];

/// Nouns for an item of each category (in `CATEGORIES` order).
pub(crate) const ITEM_NOUNS: [&[&str]; N_CATEGORIES] = [
    &["headphones", "charger", "speaker", "tablet", "keyboard"],
    &["book", "novel", "cookbook", "paperback"],
    &["jacket", "shoes", "dress", "shirt", "scarf"],
    &["lamp", "pillow", "kettle", "rug", "blanket"],
    &["face cream", "shampoo", "perfume", "lipstick"],
    &["yoga mat", "running shoes", "dumbbells", "water bottle"],
    &["puzzle", "toy car", "board game", "doll"],
    &["coffee", "tea", "snack box", "olive oil"],
    &["garden hose", "planter", "seed kit", "pruning shears"],
    &["album", "vinyl record", "guitar strings", "songbook"],
    &["car charger", "floor mats", "wiper blades", "dash cam"],
    &["dog bed", "cat toy", "leash", "pet bowl"],
];

/// Sentences per topic; `{item}` is the item's noun and `{n}` a small number.
const SENTENCES: [&[&str]; 5] = [
    &[
        "The {item} stopped working after {n} days.",
        "It broke the first time I used it.",
        "Poor quality, the {item} fell apart within a week.",
        "The {item} was faulty out of the box.",
        "Cheap materials, it cracked after {n} uses.",
        "Defective {item}, half of it did not work.",
        "The {item} is flimsy and already damaged.",
    ],
    &[
        "The parcel arrived {n} days late.",
        "Delivery took forever and the box was crushed.",
        "The courier left the package in the rain.",
        "Tracking said delivered but nothing came for a week.",
        "Shipping was slow and nobody told me why.",
        "My order was lost in transit and showed up {n} days after the promised date.",
        "The delivery driver never rang, I had to collect it from the depot.",
    ],
    &[
        "Customer service never answered my emails.",
        "I asked for a refund {n} times and heard nothing.",
        "The support agent was rude and unhelpful.",
        "Still waiting for my refund after {n} weeks.",
        "The return process is a nightmare and nobody replies.",
        "I was put on hold for an hour and then disconnected.",
        "They closed my complaint without reading it.",
    ],
    &[
        "The {item} is okay, nothing special.",
        "Decent for the price but it could be better.",
        "Average quality, it does the job.",
        "Not bad, not great, a fairly ordinary {item}.",
        "It works, although I expected a bit more.",
        "Fine for everyday use, the {item} feels a little basic.",
    ],
    &[
        "Love this {item}!",
        "Great quality, exactly as described.",
        "Works perfectly, I would buy it again.",
        "The {item} is excellent and well made.",
        "Really happy with this {item}, it exceeded my expectations.",
        "Fantastic value, my family loves it.",
        "Beautiful {item}, it looks even better in person.",
    ],
];

const NEGATIVE_CLOSERS: [&str; 5] = [
    "",
    " Would not recommend.",
    " Very disappointed.",
    " Never ordering again.",
    " Avoid.",
];
const MIXED_CLOSERS: [&str; 3] = ["", " Three stars.", " Maybe next time."];
const POSITIVE_CLOSERS: [&str; 4] = ["", " Highly recommend!", " Five stars.", " Thanks!"];

/// The `public.reviews` and `truth.reviews` rows of one chunk's events.
#[derive(Default)]
pub(crate) struct ReviewRows {
    pub(crate) ids: Vec<i64>,
    pub(crate) customers: Vec<i64>,
    pub(crate) items: Vec<i64>,
    pub(crate) times: Vec<i64>,
    pub(crate) ratings: Vec<i32>,
    pub(crate) bodies: Vec<String>,
    pub(crate) topics: Vec<&'static str>,
}

/// The reviews among `events`, whose ids start after `event_offset`; `categories` are the
/// catalog's, by item id - 1.
pub(crate) fn rows(
    seed: u64,
    events: &EventCols,
    event_offset: i64,
    categories: &[u8],
) -> ReviewRows {
    let mut out = ReviewRows::default();
    for i in 0..events.customer_id.len() {
        let (EV_REVIEW, Some(item), Some(rating)) =
            (events.kind[i], events.item_id[i], events.rating[i])
        else {
            continue;
        };
        let review_id = event_offset + i as i64 + 1;
        let category = categories[(item - 1) as usize] as usize;
        let (topic, body) = review(seed, review_id, rating, category);
        out.ids.push(review_id);
        out.customers.push(events.customer_id[i]);
        out.items.push(item);
        out.times.push(events.time[i]);
        out.ratings.push(rating);
        out.bodies.push(body);
        out.topics.push(TOPICS[topic]);
    }
    out
}

/// The topic and body of the review `review_id` with `rating` (1-5) of an item of
/// `category`.
pub(crate) fn review(seed: u64, review_id: i64, rating: i32, category: usize) -> (usize, String) {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed ^ STREAM_SALT, review_id as u64));
    let topic = match rating {
        ..=2 => {
            let u = rng.random::<f64>();
            if u < COMPLAINT_SHARES[0] {
                DEFECT
            } else if u < COMPLAINT_SHARES[0] + COMPLAINT_SHARES[1] {
                DELIVERY
            } else {
                SUPPORT
            }
        }
        3 => MIXED,
        _ => PRAISE,
    };
    let nouns = ITEM_NOUNS[category.min(N_CATEGORIES - 1)];
    let noun = nouns[rng.random_range(0..nouns.len())];
    let sentences = SENTENCES[topic];
    // One or two distinct sentences of the topic, then perhaps a closing remark.
    let first = rng.random_range(0..sentences.len());
    let mut body = fill(sentences[first], noun, &mut rng);
    if rng.random::<f64>() < 0.5 {
        let second = (first + rng.random_range(1..sentences.len())) % sentences.len();
        body.push(' ');
        body.push_str(&fill(sentences[second], noun, &mut rng));
    }
    let closers: &[&str] = match topic {
        MIXED => &MIXED_CLOSERS,
        PRAISE => &POSITIVE_CLOSERS,
        _ => &NEGATIVE_CLOSERS,
    };
    body.push_str(closers[rng.random_range(0..closers.len())]);
    (topic, body)
}

fn fill(sentence: &str, noun: &str, rng: &mut StdRng) -> String {
    let n = rng.random_range(2..15).to_string();
    sentence.replace("{item}", noun).replace("{n}", &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_the_rating_and_are_reproducible() {
        let mut complaints = [0usize; 3];
        for id in 0..3000 {
            let (topic, body) = review(42, id, 1, 0);
            assert!(topic <= SUPPORT, "{body}");
            complaints[topic] += 1;
            assert!(!body.contains('{'), "{body}");
            assert_eq!(review(42, id, 1, 0), (topic, body));
        }
        for (count, share) in complaints.iter().zip(COMPLAINT_SHARES) {
            let observed = *count as f64 / 3000.0;
            assert!((observed - share).abs() < 0.04, "{complaints:?}");
        }
        assert_eq!(review(42, 7, 3, 4).0, MIXED);
        assert_eq!(review(42, 7, 5, 4).0, PRAISE);
        assert_ne!(review(42, 7, 5, 4).1, review(43, 7, 5, 4).1);
    }
}
