//! Search query texts (rule 12 of the crate docs): what each search event typed, written
//! from what the session did next.
//!
//! Each query draws from a random stream of its own (seeded by the search id), so adding
//! texts leaves every other table of the world unchanged.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::chunk::EventCols;
use super::draws::stream_seed;
use super::params::{CATEGORIES, EV_SEARCH, EV_VIEW};
use super::reviews::ITEM_NOUNS;

/// Salt of the search-text streams.
const STREAM_SALT: u64 = 0x5ea7_c400_0000_0012;

/// Words before an item's noun in a query that finds something.
const MODIFIERS: [&str; 10] = [
    "cheap", "best", "new", "gift", "sale", "small", "large", "black", "red", "cute",
];
/// Words after it.
const QUALIFIERS: [&str; 6] = [
    "for kids",
    "for men",
    "for women",
    "under 50",
    "set",
    "2025",
];

/// What the shop does not sell: a failed search asks for one of these.
const NOT_STOCKED: [&str; 12] = [
    "typewriter ribbon",
    "left handed scissors",
    "lawnmower blade",
    "aquarium heater",
    "sewing machine needles",
    "fishing rod",
    "printer toner",
    "wedding dress",
    "piano tuner",
    "camping stove",
    "telescope lens",
    "bike helmet",
];

/// The `public.searches` and `truth.searches` rows of one chunk's events.
#[derive(Default)]
pub(crate) struct SearchRows {
    pub(crate) ids: Vec<i64>,
    pub(crate) customers: Vec<i64>,
    pub(crate) times: Vec<i64>,
    pub(crate) queries: Vec<String>,
    pub(crate) found: Vec<Option<bool>>,
    pub(crate) categories: Vec<Option<&'static str>>,
}

/// The searches among `events`, whose ids start after `event_offset`; `categories` are the
/// catalog's, by item id - 1.
pub(crate) fn rows(
    seed: u64,
    events: &EventCols,
    event_offset: i64,
    categories: &[u8],
) -> SearchRows {
    let mut out = SearchRows::default();
    for i in 0..events.customer_id.len() {
        if events.kind[i] != EV_SEARCH {
            continue;
        }
        // A session's events are contiguous and in time order: the first view after the
        // search in its session is what it found.
        let viewed = (i + 1..events.kind.len())
            .take_while(|&j| events.session[j] == events.session[i])
            .find(|&j| events.kind[j] == EV_VIEW)
            .and_then(|j| events.item_id[j])
            .map(|item| categories[(item - 1) as usize] as usize);
        let search_id = event_offset + i as i64 + 1;
        out.ids.push(search_id);
        out.customers.push(events.customer_id[i]);
        out.times.push(events.time[i]);
        out.queries.push(query(seed, search_id, viewed));
        out.found.push(Some(viewed.is_some()));
        out.categories.push(viewed.map(|c| CATEGORIES[c]));
    }
    out
}

/// The text of search `search_id`: a query for an item of `category` when the session then
/// viewed one (the category of that view), else for something the shop does not sell.
pub(crate) fn query(seed: u64, search_id: i64, category: Option<usize>) -> String {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed ^ STREAM_SALT, search_id as u64));
    let noun = match category {
        Some(category) => {
            let nouns = ITEM_NOUNS[category.min(ITEM_NOUNS.len() - 1)];
            nouns[rng.random_range(0..nouns.len())]
        }
        None => NOT_STOCKED[rng.random_range(0..NOT_STOCKED.len())],
    };
    match rng.random_range(0..4) {
        0 => noun.to_string(),
        1 => format!("{} {noun}", MODIFIERS[rng.random_range(0..MODIFIERS.len())]),
        2 => format!(
            "{noun} {}",
            QUALIFIERS[rng.random_range(0..QUALIFIERS.len())]
        ),
        _ => format!(
            "{} {noun} {}",
            MODIFIERS[rng.random_range(0..MODIFIERS.len())],
            QUALIFIERS[rng.random_range(0..QUALIFIERS.len())]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_the_category_viewed_or_something_not_stocked() {
        for id in 0..500 {
            let found = query(42, id, Some(1));
            assert!(ITEM_NOUNS[1].iter().any(|n| found.contains(n)), "{found}");
            let failed = query(42, id, None);
            assert!(NOT_STOCKED.iter().any(|n| failed.contains(n)), "{failed}");
            assert_eq!(query(42, id, None), failed);
        }
    }
}
