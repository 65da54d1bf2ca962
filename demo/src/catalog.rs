//! The item catalog: categories, log-normal list prices, a hidden defect rate per item (how
//! often it earns a 1-2 star review) and a Zipf-like popularity within each category.

use anyhow::{Context, Result};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution, StandardNormal};

use super::params::*;

/// The catalog; item `i` (0-based) has `item_id = i + 1`.
pub(crate) struct Catalog {
    pub(crate) category: Vec<u8>,
    /// List price, ending in .99.
    pub(crate) price: Vec<f64>,
    /// Probability that a review of the item gives 1 or 2 stars.
    pub(crate) defect: Vec<f64>,
    pub(crate) name: Vec<String>,
    by_category: Vec<Popularity>,
}

/// The items of one category with cumulative popularity weights for sampling.
struct Popularity {
    items: Vec<u32>,
    /// Cumulative Zipf weights; the last one is the total.
    cum: Vec<f64>,
}

impl Catalog {
    /// Builds a catalog of about `n_items` items (every category gets at least
    /// `MIN_ITEMS_PER_CATEGORY`).
    pub(crate) fn build(n_items: usize, rng: &mut StdRng) -> Result<Catalog> {
        let mut categories: Vec<u8> =
            Vec::with_capacity(n_items + N_CATEGORIES * MIN_ITEMS_PER_CATEGORY);
        for (c, share) in CATEGORY_SHARE.iter().enumerate() {
            let count = ((share * n_items as f64).round() as usize).max(MIN_ITEMS_PER_CATEGORY);
            categories.extend(std::iter::repeat_n(c as u8, count));
        }
        // Interleave the categories over the item ids.
        categories.shuffle(rng);

        let defect_dist =
            Beta::new(DEFECT_BETA_A, DEFECT_BETA_B).context("demo: item defect distribution")?;
        let n = categories.len();
        let mut price = Vec::with_capacity(n);
        let mut defect = Vec::with_capacity(n);
        let mut name = Vec::with_capacity(n);
        for &c in &categories {
            let c = c as usize;
            let z: f64 = rng.sample(StandardNormal);
            let raw = (CATEGORY_MEDIAN_PRICE[c].ln() + CATEGORY_PRICE_SIGMA[c] * z).exp();
            price.push(raw.floor().max(0.0) + 0.99);
            defect.push(DEFECT_MIN + DEFECT_SPAN * defect_dist.sample(rng));
            let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
            let noun = NOUNS[c][rng.random_range(0..NOUNS[c].len())];
            let series = (b'A' + rng.random_range(0..26u8)) as char;
            let model = rng.random_range(1..100u32) * 10;
            name.push(format!("{adjective} {noun} {series}{model}"));
        }

        let by_category = (0..N_CATEGORIES)
            .map(|c| {
                let mut items: Vec<u32> = (0..n as u32)
                    .filter(|&i| categories[i as usize] as usize == c)
                    .collect();
                // The order of `items` is the popularity rank.
                items.shuffle(rng);
                let mut total = 0.0;
                let cum = (0..items.len())
                    .map(|rank| {
                        total += 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT);
                        total
                    })
                    .collect();
                Popularity { items, cum }
            })
            .collect();

        Ok(Catalog {
            category: categories,
            price,
            defect,
            name,
            by_category,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.price.len()
    }

    /// An item of `category` drawn by popularity.
    pub(crate) fn sample<R: Rng>(&self, category: usize, rng: &mut R) -> u32 {
        let pop = &self.by_category[category];
        // Every category has at least MIN_ITEMS_PER_CATEGORY items, so `cum` is not empty.
        let total = pop.cum[pop.cum.len() - 1];
        let u = rng.random::<f64>() * total;
        let index = pop
            .cum
            .partition_point(|&c| c <= u)
            .min(pop.items.len() - 1);
        pop.items[index]
    }

    /// The item whose list price is closest (in ratio) to `target` among `PRICE_CANDIDATES`
    /// items of `category` drawn by popularity: shoppers pick popular items that fit the budget.
    pub(crate) fn sample_near_price<R: Rng>(
        &self,
        category: usize,
        target: f64,
        rng: &mut R,
    ) -> u32 {
        let log_target = target.max(0.5).ln();
        let mut best = self.sample(category, rng);
        let mut best_gap = (self.price[best as usize].ln() - log_target).abs();
        for _ in 1..PRICE_CANDIDATES {
            let item = self.sample(category, rng);
            let gap = (self.price[item as usize].ln() - log_target).abs();
            if gap < best_gap {
                best = item;
                best_gap = gap;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_category_has_items_and_popularity_is_skewed() {
        let mut rng = StdRng::seed_from_u64(7);
        let catalog = Catalog::build(200, &mut rng).unwrap();
        assert!(catalog.len() >= 200);
        let mut counts = vec![0usize; catalog.len()];
        for _ in 0..5000 {
            counts[catalog.sample(ELECTRONICS, &mut rng) as usize] += 1;
        }
        let top = *counts.iter().max().unwrap();
        assert!(
            top > 5000 / 8,
            "the most popular electronics item got {top} of 5000 draws"
        );
        assert!(
            counts
                .iter()
                .enumerate()
                .all(|(i, &n)| n == 0 || catalog.category[i] as usize == ELECTRONICS)
        );
    }
}
