//! KIND recommender: implicit-feedback matrix factorisation by alternating least squares
//! (Hu, Koren & Volinsky 2008, "Collaborative filtering for implicit feedback datasets").
//!
//! Training rows are (user, item[, weight]); the weight (default 1, e.g. a purchase count)
//! becomes a confidence c = 1 + alpha × weight that the user prefers the item. Each
//! half-iteration solves every user's (then every item's) regularised least-squares problem,
//! in parallel: by a few conjugate-gradient steps from the previous solution (Takács, Pilászy
//! & Tikk 2011, as the implicit library does; the default), or exactly by Cholesky.
//!
//! Validation is leave-last-out: each user's last interaction in the query's order (so
//! `ORDER BY` a timestamp in the training query) is held out, a model is trained on the rest
//! and scored by HR@10 and NDCG@10 against the popularity ranking on the same users; the
//! model kept is then trained on every row.

use std::collections::{BinaryHeap, HashMap};

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::linalg::cholesky_solve;
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues};

/// OPTIONS of KIND recommender.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommenderOptions {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f64,
    pub alpha: f64,
    pub seed: u64,
    /// Hold out each user's last interaction to measure HR@10 and NDCG@10.
    pub validate: bool,
    /// Conjugate-gradient steps per solve; 0 solves exactly by Cholesky.
    pub cg_steps: usize,
}

impl RecommenderOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<RecommenderOptions> {
        let parsed = RecommenderOptions {
            factors: options.number("factors", 64usize, 1..=1024)?,
            iterations: options.number("iterations", 15usize, 1..=1000)?,
            regularization: options.number("regularization", 0.05f64, 0.0..=1e6)?,
            alpha: options.number("alpha", 1.0f64, 0.0..=1e6)?,
            seed: options.number("seed", 42u64, 0..=u64::MAX)?,
            validate: options.parse("validate", true, "true or false")?,
            cg_steps: match options.get("solver").map(|s| s.trim().to_ascii_lowercase()) {
                None => 3,
                Some(s) if s == "cg" => 3,
                Some(s) if s == "cholesky" => 0,
                Some(s) => {
                    return Err(Error::option(format!(
                        "option solver must be 'cg' or 'cholesky', got '{s}'"
                    )));
                }
            },
        };
        options.finish(kind)?;
        Ok(parsed)
    }
}

/// User or item identifiers as they came in: whole numbers or text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ids {
    Integer(Vec<i64>),
    Text(Vec<String>),
}

impl Ids {
    pub fn len(&self) -> usize {
        match self {
            Ids::Integer(v) => v.len(),
            Ids::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An identifier to look up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Id<'a> {
    Integer(i64),
    Text(&'a str),
}

/// Validation on held-out last interactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    pub users: u64,
    pub hit_rate_10: f64,
    pub ndcg_10: f64,
    pub popularity_hit_rate_10: f64,
    pub popularity_ndcg_10: f64,
}

/// The card part of a recommender: vocabularies, popularity and how training went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommenderSpec {
    pub users: Ids,
    pub items: Ids,
    pub factors: usize,
    /// Item indices by descending popularity (distinct users), at most 1,000.
    pub popular: Vec<u32>,
    pub validation: Option<RankingMetrics>,
    pub interactions: u64,
    pub seconds: f64,
}

/// A trained recommender: the spec plus factors and each user's items.
#[derive(Debug, Clone)]
pub struct Recommender {
    pub spec: RecommenderSpec,
    /// users × factors, row-major.
    user_factors: Vec<f32>,
    /// items × factors, row-major.
    item_factors: Vec<f32>,
    /// Items each user has, CSR: user u's sorted items are seen[offsets[u]..offsets[u+1]].
    seen_offsets: Vec<u32>,
    seen: Vec<u32>,
    user_index: IdIndex,
}

/// Lookup from identifier to index.
#[derive(Debug, Clone)]
enum IdIndex {
    Integer(HashMap<i64, u32>),
    Text(HashMap<String, u32>),
}

impl IdIndex {
    fn new(ids: &Ids) -> IdIndex {
        match ids {
            Ids::Integer(v) => IdIndex::Integer(
                v.iter()
                    .enumerate()
                    .map(|(i, id)| (*id, i as u32))
                    .collect(),
            ),
            Ids::Text(v) => IdIndex::Text(
                v.iter()
                    .enumerate()
                    .map(|(i, id)| (id.clone(), i as u32))
                    .collect(),
            ),
        }
    }

    fn get(&self, id: Id<'_>) -> Option<u32> {
        match (self, id) {
            (IdIndex::Integer(map), Id::Integer(i)) => map.get(&i).copied(),
            (IdIndex::Text(map), Id::Text(s)) => map.get(s).copied(),
            _ => None,
        }
    }
}

/// Interactions as (user, item, confidence weight) triples over dense indices.
struct Interactions {
    users: usize,
    items: usize,
    /// Per user: (item, weight), weights of repeated pairs summed.
    by_user: Vec<Vec<(u32, f32)>>,
}

impl Interactions {
    fn by_item(&self) -> Vec<Vec<(u32, f32)>> {
        let mut by_item = vec![Vec::new(); self.items];
        for (u, row) in self.by_user.iter().enumerate() {
            for &(i, w) in row {
                by_item[i as usize].push((u as u32, w));
            }
        }
        by_item
    }
}

/// Dense indices for a column of ids; the ids in index order.
fn encode_ids(name: &str, column: &FeatureColumn) -> Result<(Vec<u32>, Ids)> {
    match column {
        FeatureColumn::Numeric(values) => {
            let mut index: HashMap<i64, u32> = HashMap::new();
            let mut ids = Vec::new();
            let mut codes = Vec::with_capacity(values.len());
            for &v in values {
                if !v.is_finite() || v.fract() != 0.0 {
                    return Err(Error::data(format!(
                        "recommender: {name} must be whole numbers or text without NULLs; found {v}"
                    )));
                }
                let id = v as i64;
                let code = *index.entry(id).or_insert_with(|| {
                    ids.push(id);
                    (ids.len() - 1) as u32
                });
                codes.push(code);
            }
            Ok((codes, Ids::Integer(ids)))
        }
        FeatureColumn::Categorical(values) => {
            let mut index: HashMap<&str, u32> = HashMap::new();
            let mut ids: Vec<String> = Vec::new();
            let mut codes = Vec::with_capacity(values.len());
            for v in values {
                let Some(v) = v.as_deref() else {
                    return Err(Error::data(format!("recommender: {name} has NULLs")));
                };
                let code = *index.entry(v).or_insert_with(|| {
                    ids.push(v.to_string());
                    (ids.len() - 1) as u32
                });
                codes.push(code);
            }
            Ok((codes, Ids::Text(ids)))
        }
        FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => Err(Error::data(format!(
            "recommender: {name} is a list; ids must be whole numbers or text"
        ))),
    }
}

impl Recommender {
    pub fn fit(
        data: &TrainingData,
        options: &RecommenderOptions,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Recommender> {
        let started = std::time::Instant::now();
        let names: Vec<&str> = data.features.iter().map(|(n, _)| n.as_str()).collect();
        if !(2..=3).contains(&data.features.len()) {
            return Err(Error::data(format!(
                "KIND recommender trains on (user, item[, weight]) columns; the query returned {} \
                 ({})",
                names.len(),
                names.join(", ")
            )));
        }
        let rows = data.rows();
        if rows == 0 {
            return Err(Error::data(
                "recommender: the training query returned no rows",
            ));
        }
        let (user_codes, users) = encode_ids(names[0], &data.features[0].1)?;
        let (item_codes, items) = encode_ids(names[1], &data.features[1].1)?;
        let weights: Vec<f32> = match data.features.get(2) {
            None => vec![1.0; rows],
            Some((name, FeatureColumn::Numeric(values))) => {
                let bad = values
                    .iter()
                    .filter(|w| !(w.is_finite() && **w >= 0.0))
                    .count();
                if bad > 0 {
                    return Err(Error::data(format!(
                        "recommender: weight {name} must be a number >= 0; {bad} rows are not"
                    )));
                }
                values.iter().map(|&w| w as f32).collect()
            }
            Some((name, _)) => {
                return Err(Error::data(format!(
                    "recommender: weight {name} must be a number"
                )));
            }
        };
        let interactions = |keep: &dyn Fn(usize) -> bool| -> Interactions {
            let mut by_user: Vec<HashMap<u32, f32>> = vec![HashMap::new(); users.len()];
            for r in (0..rows).filter(|&r| keep(r)) {
                *by_user[user_codes[r] as usize]
                    .entry(item_codes[r])
                    .or_default() += weights[r];
            }
            Interactions {
                users: users.len(),
                items: items.len(),
                by_user: by_user
                    .into_iter()
                    .map(|m| {
                        let mut row: Vec<(u32, f32)> = m.into_iter().collect();
                        row.sort_unstable_by_key(|&(i, _)| i);
                        row
                    })
                    .collect(),
            }
        };

        let validation = if options.validate {
            // Each user's last row, if they have another item left to learn from.
            let mut last_row = vec![usize::MAX; users.len()];
            for r in 0..rows {
                last_row[user_codes[r] as usize] = r;
            }
            let held: Vec<Option<u32>> = last_row
                .iter()
                .map(|&r| (r != usize::MAX).then(|| item_codes[r]))
                .collect();
            // Every occurrence of a held-out (user, item) pair leaves the training data.
            let train = interactions(&|r| held[user_codes[r] as usize] != Some(item_codes[r]));
            let evaluated: Vec<(u32, u32)> = held
                .iter()
                .enumerate()
                .filter_map(|(u, item)| item.map(|i| (u as u32, i)))
                .filter(|&(u, _)| !train.by_user[u as usize].is_empty())
                .collect();
            if evaluated.is_empty() {
                None
            } else {
                let (user_factors, item_factors) = als(&train, options, cancel)?;
                let popular = popularity(&train);
                Some(rank_metrics(
                    &train,
                    &user_factors,
                    &item_factors,
                    options.factors,
                    &popular,
                    &evaluated,
                )?)
            }
        } else {
            None
        };

        let all = interactions(&|_| true);
        let (user_factors, item_factors) = als(&all, options, cancel)?;
        let popular: Vec<u32> = popularity(&all).into_iter().take(1000).collect();
        let mut seen_offsets = Vec::with_capacity(all.users + 1);
        let mut seen = Vec::new();
        seen_offsets.push(0);
        for row in &all.by_user {
            seen.extend(row.iter().map(|&(i, _)| i));
            seen_offsets.push(seen.len() as u32);
        }
        let user_index = IdIndex::new(&users);
        Ok(Recommender {
            spec: RecommenderSpec {
                users,
                items,
                factors: options.factors,
                popular,
                validation,
                interactions: rows as u64,
                seconds: started.elapsed().as_secs_f64(),
            },
            user_factors,
            item_factors,
            seen_offsets,
            seen,
            user_index,
        })
    }

    /// The top `k` items for the user `id` that they do not have yet, best first, as item
    /// indices with scores; the most popular items for a user the model has not seen.
    pub fn recommend(&self, id: Id<'_>, k: usize) -> Vec<(u32, f32)> {
        match self.user_index.get(id) {
            Some(u) => {
                let f = self.spec.factors;
                let x = &self.user_factors[u as usize * f..(u as usize + 1) * f];
                let scores: Vec<f32> = self
                    .item_factors
                    .chunks_exact(f)
                    .map(|y| x.iter().zip(y).map(|(a, b)| a * b).sum())
                    .collect();
                top_k(&scores, k, self.seen_of(u))
            }
            None => self
                .spec
                .popular
                .iter()
                .take(k)
                .map(|&i| (i, f32::NAN))
                .collect(),
        }
    }

    /// The top `k` unseen items of every user, in user order, computed a block of users at a
    /// time as one matrix product.
    pub fn recommend_all(&self, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
        let f = self.spec.factors;
        let items = self.spec.items.len();
        let users = self.spec.users.len();
        let item_t = Tensor::from_slice(&self.item_factors, (items, f), &Device::Cpu)?
            .t()?
            .contiguous()?;
        const BLOCK: usize = 2048;
        let mut out = Vec::with_capacity(users);
        for start in (0..users).step_by(BLOCK) {
            let end = (start + BLOCK).min(users);
            let x = Tensor::from_slice(
                &self.user_factors[start * f..end * f],
                (end - start, f),
                &Device::Cpu,
            )?;
            let scores: Vec<f32> = x.matmul(&item_t)?.flatten_all()?.to_vec1()?;
            let block: Vec<Vec<(u32, f32)>> = scores
                .par_chunks_exact(items)
                .enumerate()
                .map(|(offset, row)| top_k(row, k, self.seen_of((start + offset) as u32)))
                .collect();
            out.extend(block);
        }
        Ok(out)
    }

    fn seen_of(&self, user: u32) -> &[u32] {
        let u = user as usize;
        &self.seen[self.seen_offsets[u] as usize..self.seen_offsets[u + 1] as usize]
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics = vec![
            ("users".to_string(), self.spec.users.len() as f64),
            ("items".to_string(), self.spec.items.len() as f64),
            ("interactions".to_string(), self.spec.interactions as f64),
        ];
        if let Some(v) = &self.spec.validation {
            metrics.extend([
                ("hit_rate_10".to_string(), v.hit_rate_10),
                ("ndcg_10".to_string(), v.ndcg_10),
                (
                    "popularity_hit_rate_10".to_string(),
                    v.popularity_hit_rate_10,
                ),
                ("popularity_ndcg_10".to_string(), v.popularity_ndcg_10),
                ("validation_users".to_string(), v.users as f64),
            ]);
        }
        metrics
    }

    /// The factors and the seen lists as named tensors for the safetensors file.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let f = self.spec.factors;
        Ok(vec![
            (
                "user_factors".into(),
                Tensor::from_slice(&self.user_factors, (self.spec.users.len(), f), &Device::Cpu)?,
            ),
            (
                "item_factors".into(),
                Tensor::from_slice(&self.item_factors, (self.spec.items.len(), f), &Device::Cpu)?,
            ),
            (
                "seen_offsets".into(),
                Tensor::from_slice(&self.seen_offsets, self.seen_offsets.len(), &Device::Cpu)?,
            ),
            (
                "seen".into(),
                Tensor::from_slice(&self.seen, self.seen.len(), &Device::Cpu)?,
            ),
        ])
    }

    /// Rebuilds a recommender from its spec and tensors, checking shapes.
    pub fn from_parts(
        spec: RecommenderSpec,
        mut tensors: HashMap<String, Tensor>,
    ) -> Result<Recommender> {
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))
        };
        let user_factors: Vec<f32> = take("user_factors")?.flatten_all()?.to_vec1()?;
        let item_factors: Vec<f32> = take("item_factors")?.flatten_all()?.to_vec1()?;
        let seen_offsets: Vec<u32> = take("seen_offsets")?.to_vec1()?;
        let seen: Vec<u32> = take("seen")?.to_vec1()?;
        let f = spec.factors;
        if user_factors.len() != spec.users.len() * f
            || item_factors.len() != spec.items.len() * f
            || seen_offsets.len() != spec.users.len() + 1
            || seen_offsets.last().copied() != Some(seen.len() as u32)
        {
            return Err(Error::CorruptArtifact(
                "recommender tensors do not match the card".into(),
            ));
        }
        let user_index = IdIndex::new(&spec.users);
        Ok(Recommender {
            spec,
            user_factors,
            item_factors,
            seen_offsets,
            seen,
            user_index,
        })
    }
}

/// The `k` best scores whose index is not in `exclude` (sorted), best first.
fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    #[derive(PartialEq)]
    struct Entry(f32, u32);
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        // Reversed, so the heap's top is the worst kept score; ties keep the lower index.
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
        }
    }
    if k == 0 {
        return Vec::new();
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if heap.len() == k && heap.peek().is_some_and(|e: &Entry| s <= e.0) {
            continue;
        }
        if exclude.binary_search(&(i as u32)).is_ok() {
            continue;
        }
        heap.push(Entry(s, i as u32));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<(u32, f32)> = heap.into_iter().map(|e| (e.1, e.0)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Item indices by descending number of users, ties by index.
fn popularity(data: &Interactions) -> Vec<u32> {
    let mut counts = vec![0u64; data.items];
    for row in &data.by_user {
        for &(i, _) in row {
            counts[i as usize] += 1;
        }
    }
    let mut order: Vec<u32> = (0..data.items as u32).collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    order
}

/// Alternating least squares; returns (user factors, item factors), row-major f32.
fn als(
    data: &Interactions,
    options: &RecommenderOptions,
    cancel: &dyn Fn() -> bool,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let f = options.factors;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut init = |n: usize| -> Vec<f32> {
        (0..n * f)
            .map(|_| rng.random_range(-0.01f32..0.01))
            .collect()
    };
    let mut user_factors = init(data.users);
    let mut item_factors = init(data.items);
    let by_item = data.by_item();
    for _ in 0..options.iterations {
        if cancel() {
            return Err(Error::Cancelled);
        }
        solve_side(&mut user_factors, &item_factors, &data.by_user, f, options);
        solve_side(&mut item_factors, &user_factors, &by_item, f, options);
    }
    Ok((user_factors, item_factors))
}

/// For each row r of `target`: x_r = (YᵀY + λI + Σ (c-1) y yᵀ)⁻¹ Σ c y over its interactions,
/// with Y = `fixed` and c = 1 + alpha × weight; by conjugate gradient from the current x_r,
/// or by Cholesky when `options.cg_steps` is 0.
fn solve_side(
    target: &mut [f32],
    fixed: &[f32],
    rows: &[Vec<(u32, f32)>],
    f: usize,
    options: &RecommenderOptions,
) {
    // YᵀY once per half-iteration.
    let mut gram = vec![0.0f64; f * f];
    for y in fixed.chunks_exact(f) {
        for a in 0..f {
            let ya = f64::from(y[a]);
            for b in a..f {
                gram[a * f + b] += ya * f64::from(y[b]);
            }
        }
    }
    for a in 0..f {
        for b in 0..a {
            gram[a * f + b] = gram[b * f + a];
        }
        gram[a * f + a] += options.regularization;
    }
    if options.cg_steps > 0 {
        let gram32: Vec<f32> = gram.iter().map(|&v| v as f32).collect();
        target
            .par_chunks_exact_mut(f)
            .zip(rows.par_iter())
            .for_each_init(
                || (vec![0.0f32; f], vec![0.0f32; f], vec![0.0f32; f]),
                |(r, p, ap), (x, interactions)| {
                    conjugate_gradient(x, interactions, fixed, &gram32, f, options, r, p, ap);
                },
            );
        return;
    }
    target
        .par_chunks_exact_mut(f)
        .zip(rows.par_iter())
        .for_each_init(
            || (vec![0.0f64; f * f], vec![0.0f64; f]),
            |(matrix, rhs), (x, interactions)| {
                if interactions.is_empty() {
                    x.iter_mut().for_each(|v| *v = 0.0);
                    return;
                }
                matrix.copy_from_slice(&gram);
                rhs.iter_mut().for_each(|v| *v = 0.0);
                for &(j, w) in interactions {
                    let y = &fixed[j as usize * f..(j as usize + 1) * f];
                    let confidence = 1.0 + options.alpha * f64::from(w);
                    for a in 0..f {
                        let ya = f64::from(y[a]);
                        rhs[a] += confidence * ya;
                        let scaled = (confidence - 1.0) * ya;
                        for b in a..f {
                            matrix[a * f + b] += scaled * f64::from(y[b]);
                        }
                    }
                }
                for a in 0..f {
                    for b in 0..a {
                        matrix[a * f + b] = matrix[b * f + a];
                    }
                }
                if cholesky_solve(matrix, rhs, f) {
                    for (xv, r) in x.iter_mut().zip(rhs.iter()) {
                        *xv = *r as f32;
                    }
                }
            },
        );
}

/// `cg_steps` conjugate-gradient steps on A x = b from the current `x`, with
/// A = YᵀY + λI + Σ (c-1) y yᵀ and b = Σ c y, never forming A (the implicit library's
/// `least_squares_cg`). `r`, `p` and `ap` are scratch of length f.
#[allow(clippy::too_many_arguments)]
fn conjugate_gradient(
    x: &mut [f32],
    interactions: &[(u32, f32)],
    fixed: &[f32],
    gram: &[f32],
    f: usize,
    options: &RecommenderOptions,
    r: &mut [f32],
    p: &mut [f32],
    ap: &mut [f32],
) {
    let dot = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(a, b)| a * b).sum() };
    let y_of = |j: u32| &fixed[j as usize * f..(j as usize + 1) * f];
    let alpha = options.alpha as f32;
    // r = b - A x
    for a in 0..f {
        r[a] = -dot(&gram[a * f..(a + 1) * f], x);
    }
    for &(j, w) in interactions {
        let y = y_of(j);
        let confidence = 1.0 + alpha * w;
        let scale = confidence - (confidence - 1.0) * dot(y, x);
        for (ra, ya) in r.iter_mut().zip(y) {
            *ra += scale * ya;
        }
    }
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    if rs_old < 1e-20 {
        return;
    }
    for _ in 0..options.cg_steps {
        for a in 0..f {
            ap[a] = dot(&gram[a * f..(a + 1) * f], p);
        }
        for &(j, w) in interactions {
            let y = y_of(j);
            let scale = alpha * w * dot(y, p);
            for (aa, ya) in ap.iter_mut().zip(y) {
                *aa += scale * ya;
            }
        }
        let step = rs_old / dot(p, ap);
        for a in 0..f {
            x[a] += step * p[a];
            r[a] -= step * ap[a];
        }
        let rs_new = dot(r, r);
        if rs_new < 1e-20 {
            break;
        }
        for a in 0..f {
            p[a] = r[a] + rs_new / rs_old * p[a];
        }
        rs_old = rs_new;
    }
}

/// HR@10 and NDCG@10 of the factors and of popularity on the held-out (user, item) pairs.
fn rank_metrics(
    train: &Interactions,
    user_factors: &[f32],
    item_factors: &[f32],
    f: usize,
    popular: &[u32],
    evaluated: &[(u32, u32)],
) -> Result<RankingMetrics> {
    let seen = |u: u32| -> Vec<u32> { train.by_user[u as usize].iter().map(|&(i, _)| i).collect() };
    let gain =
        |rank: Option<usize>| rank.map_or((0.0, 0.0), |r| (1.0, 1.0 / ((r + 2) as f64).log2()));
    let (model_hits, model_ndcg, pop_hits, pop_ndcg) = evaluated
        .par_iter()
        .map(|&(u, held)| {
            let x = &user_factors[u as usize * f..(u as usize + 1) * f];
            let scores: Vec<f32> = item_factors
                .chunks_exact(f)
                .map(|y| x.iter().zip(y).map(|(a, b)| a * b).sum())
                .collect();
            let seen = seen(u);
            let top = top_k(&scores, 10, &seen);
            let model = gain(top.iter().position(|&(i, _)| i == held));
            let pop_top: Vec<u32> = popular
                .iter()
                .copied()
                .filter(|i| seen.binary_search(i).is_err())
                .take(10)
                .collect();
            let pop = gain(pop_top.iter().position(|&i| i == held));
            (model.0, model.1, pop.0, pop.1)
        })
        .reduce(
            || (0.0, 0.0, 0.0, 0.0),
            |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3),
        );
    let n = evaluated.len() as f64;
    Ok(RankingMetrics {
        users: evaluated.len() as u64,
        hit_rate_10: model_hits / n,
        ndcg_10: model_ndcg / n,
        popularity_hit_rate_10: pop_hits / n,
        popularity_ndcg_10: pop_ndcg / n,
    })
}

/// The id of an argument row, for scoring.
pub fn id_at<'a>(column: &FeatureValues<'a>, row: usize) -> Option<Id<'a>> {
    match column {
        FeatureValues::Numeric(v) => {
            let x = v[row];
            (x.is_finite() && x.fract() == 0.0).then_some(Id::Integer(x as i64))
        }
        FeatureValues::Categorical(v) => v[row].map(Id::Text),
        FeatureValues::TextList(_) | FeatureValues::NumberList(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users in two taste groups: group g likes items 10g..10g+9; each user has 6 of their
    /// group's items, the last of which is held out.
    fn two_tastes() -> TrainingData {
        let mut rng = StdRng::seed_from_u64(5);
        let (mut users, mut items) = (Vec::new(), Vec::new());
        for u in 0..200 {
            let group = u % 2;
            let mut liked: Vec<usize> = (0..10).collect();
            for i in (1..liked.len()).rev() {
                liked.swap(i, rng.random_range(0..=i));
            }
            for &i in liked.iter().take(6) {
                users.push(u as f64);
                items.push((group * 10 + i) as f64);
            }
        }
        TrainingData {
            features: vec![
                ("user_id".into(), FeatureColumn::Numeric(users)),
                ("item_id".into(), FeatureColumn::Numeric(items)),
            ],
            target: Vec::new(),
        }
    }

    /// Two factors for two tastes: with as many factors as a group has items, ALS would
    /// learn each user's exact items and push their unseen group items down.
    fn options() -> RecommenderOptions {
        RecommenderOptions::from_options(&mut Options::new([("factors", "2")]), "recommender")
            .unwrap()
    }

    #[test]
    fn learns_tastes_beats_popularity_and_excludes_what_users_have() {
        let model = Recommender::fit(&two_tastes(), &options(), &|| false).unwrap();
        let v = model.spec.validation.clone().unwrap();
        assert_eq!(v.users, 200);
        // A held-out item is one of the user's 4 unseen group items: in the top 10 always.
        assert!(v.hit_rate_10 > 0.99, "{v:?}");
        assert!(v.hit_rate_10 > v.popularity_hit_rate_10, "{v:?}");
        let recs = model.recommend(Id::Integer(0), 4);
        let Ids::Integer(items) = &model.spec.items else {
            panic!()
        };
        let seen: Vec<i64> = model
            .seen_of(0)
            .iter()
            .map(|&i| items[i as usize])
            .collect();
        for (i, _) in &recs {
            let item = items[*i as usize];
            assert!(item < 10, "user 0 is in group 0: {item}");
            assert!(!seen.contains(&item), "{item} is already the user's");
        }
        // The same through the batched path.
        let all = model.recommend_all(4).unwrap();
        assert_eq!(
            all[0].iter().map(|r| r.0).collect::<Vec<_>>(),
            recs.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        // Unknown users get the popular items.
        assert_eq!(model.recommend(Id::Integer(9999), 3).len(), 3);
    }

    #[test]
    fn save_and_load_recommend_the_same() {
        let model = Recommender::fit(&two_tastes(), &options(), &|| false).unwrap();
        let tensors: HashMap<String, Tensor> = model.tensors().unwrap().into_iter().collect();
        let back = Recommender::from_parts(model.spec.clone(), tensors).unwrap();
        assert_eq!(
            back.recommend(Id::Integer(3), 5),
            model.recommend(Id::Integer(3), 5)
        );
    }

    #[test]
    fn top_k_skips_excluded_and_orders_best_first() {
        let scores = [0.1, 0.9, 0.5, 0.7, 0.3];
        assert_eq!(top_k(&scores, 2, &[1]), vec![(3, 0.7), (2, 0.5)]);
        assert_eq!(top_k(&scores, 0, &[]), vec![]);
        assert_eq!(top_k(&scores, 10, &[]).len(), 5);
    }
}
