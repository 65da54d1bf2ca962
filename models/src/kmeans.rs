//! KIND kmeans: customer segments by k-means++ and Lloyd's iterations on standardised,
//! optionally log-transformed, numeric features; k from OPTIONS or chosen by silhouette.
//!
//! Segments are numbered by size, 0 the largest, and named from their centroid's profile
//! ("high frequency, high monetary"), so the numbering and the names are stable for a seed.
//! The fit is plain f64 on the CPU, parallel over rows with rayon; the centroids and the
//! standardisation are the model card (no weights file content).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues, component_groups};

/// OPTIONS of KIND kmeans.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansOptions {
    /// A fixed k, or None to choose k in `k_min..=k_max` by silhouette.
    pub k: Option<usize>,
    pub k_min: usize,
    pub k_max: usize,
    /// Features to log-transform (log(1 + x)) before standardising; empty for none.
    pub log: LogFeatures,
    pub seed: u64,
    pub max_iterations: usize,
    /// k-means++ starts per k; the lowest inertia wins.
    pub n_init: usize,
    /// Rows the silhouette is computed on (a random sample of them).
    pub silhouette_sample: usize,
}

/// Which features the `log` option transforms.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFeatures {
    None,
    All,
    Named(Vec<String>),
}

impl KMeansOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<KMeansOptions> {
        let k = match options.get("k").map(str::trim) {
            None | Some("auto") => None,
            Some(_) => Some(options.number("k", 2usize, 1..=1000)?),
        };
        let k_min = options.number("k_min", 2usize, 2..=1000)?;
        let k_max = options.number("k_max", 8usize, 2..=1000)?;
        if k.is_none() && k_min > k_max {
            return Err(Error::option(format!(
                "option k_min ({k_min}) must not exceed k_max ({k_max})"
            )));
        }
        let log = match options.get("log").map(|s| s.trim().to_ascii_lowercase()) {
            None => LogFeatures::None,
            Some(s) if s.is_empty() || s == "none" || s == "false" => LogFeatures::None,
            Some(s) if s == "all" || s == "*" || s == "true" => LogFeatures::All,
            Some(s) => LogFeatures::Named(
                s.split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect(),
            ),
        };
        let parsed = KMeansOptions {
            k,
            k_min,
            k_max,
            log,
            seed: options.number("seed", 42u64, 0..=u64::MAX)?,
            max_iterations: options.number("max_iterations", 300usize, 1..=100_000)?,
            n_init: options.number("n_init", 3usize, 1..=100)?,
            silhouette_sample: options.number("silhouette_sample", 4000usize, 100..=100_000)?,
        };
        options.finish(kind)?;
        Ok(parsed)
    }
}

/// A fitted k-means model: everything needed to assign and name segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    pub features: Vec<String>,
    /// Per feature: whether log(1 + x) is applied before standardising.
    pub log: Vec<bool>,
    pub means: Vec<f64>,
    pub stds: Vec<f64>,
    /// k × features, in standardised units, segment 0 (the largest) first.
    pub centroids: Vec<Vec<f64>>,
    pub names: Vec<String>,
    pub sizes: Vec<u64>,
    /// Sum of squared distances to the assigned centroid, standardised units.
    pub inertia: f64,
    /// Mean silhouette on a sample of the training rows (-1 to 1, higher is better).
    pub silhouette: f64,
    /// The silhouette of each k tried when k was chosen automatically.
    pub silhouette_by_k: Vec<(usize, f64)>,
    pub iterations: u64,
    pub rows: u64,
    /// Training rows left out for a NULL or NaN feature.
    pub skipped_rows: u64,
    pub seconds: f64,
}

impl KMeans {
    pub fn fit(
        data: &TrainingData,
        options: &KMeansOptions,
        cancel: &dyn Fn() -> bool,
    ) -> Result<KMeans> {
        let started = std::time::Instant::now();
        let d = data.features.len();
        if d == 0 {
            return Err(Error::data(
                "kmeans: the training query has no feature columns",
            ));
        }
        let mut columns = Vec::with_capacity(d);
        for (name, column) in &data.features {
            match column {
                FeatureColumn::Numeric(values) => columns.push(values.as_slice()),
                FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => {
                    return Err(Error::data(format!(
                        "kmeans: column {name} is a list; k-means needs numbers"
                    )));
                }
                FeatureColumn::Categorical(_) => {
                    return Err(Error::data(format!(
                        "kmeans: column {name} is text; k-means needs numbers (encode it in \
                         the query, e.g. CASE WHEN {name} = '...' THEN 1 ELSE 0 END)"
                    )));
                }
            }
        }
        let names: Vec<String> = data.features.iter().map(|(n, _)| n.clone()).collect();
        let log: Vec<bool> = match &options.log {
            LogFeatures::None => vec![false; d],
            // A text feature's components are centred coordinates, not amounts: never logged.
            LogFeatures::All => {
                let mut log = vec![true; d];
                for group in component_groups(&names) {
                    log[group].fill(false);
                }
                log
            }
            LogFeatures::Named(wanted) => {
                if let Some(unknown) = wanted.iter().find(|w| !names.contains(w)) {
                    return Err(Error::option(format!(
                        "option log names {unknown}, which is not a feature; features: {}",
                        names.join(", ")
                    )));
                }
                names.iter().map(|n| wanted.contains(n)).collect()
            }
        };
        // Rows with a missing value cannot be placed; they are left out and counted.
        let rows_total = data.rows();
        let complete: Vec<usize> = (0..rows_total)
            .filter(|&i| columns.iter().all(|c| c[i].is_finite()))
            .collect();
        let n = complete.len();
        for (j, column) in columns.iter().enumerate() {
            if log[j] {
                let negative = complete.iter().filter(|&&i| column[i] < 0.0).count();
                if negative > 0 {
                    return Err(Error::data(format!(
                        "kmeans: feature {} is log-transformed but {negative} rows are negative",
                        names[j]
                    )));
                }
            }
        }
        let k_range: Vec<usize> = match options.k {
            Some(k) => vec![k],
            None => (options.k_min..=options.k_max).collect(),
        };
        let smallest_k = *k_range.first().expect("a k");
        if n < smallest_k.max(2) {
            return Err(Error::data(format!(
                "kmeans: k = {smallest_k} needs at least {} rows without NULL features; the query \
                 returned {n}{}",
                smallest_k.max(2),
                if rows_total > n {
                    format!(" (of {rows_total})")
                } else {
                    String::new()
                }
            )));
        }

        // Row-major matrix of transformed, standardised values.
        let mut means = vec![0.0; d];
        let mut stds = vec![1.0; d];
        let transformed: Vec<Vec<f64>> = (0..d)
            .map(|j| {
                complete
                    .iter()
                    .map(|&i| {
                        if log[j] {
                            columns[j][i].ln_1p()
                        } else {
                            columns[j][i]
                        }
                    })
                    .collect()
            })
            .collect();
        for j in 0..d {
            let mean = transformed[j].iter().sum::<f64>() / n as f64;
            let var = transformed[j]
                .iter()
                .map(|v| (v - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            means[j] = mean;
            stds[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        // A text feature's components share one scale, their total standard deviation: the
        // text weighs as one feature, and its main topics keep more weight than the noise of
        // its last components (which standardising each would blow up to the same size).
        for group in component_groups(&names) {
            let total = group.clone().map(|j| stds[j] * stds[j]).sum::<f64>().sqrt();
            stds[group].fill(total);
        }
        let mut points = vec![0.0; n * d];
        for (r, row) in points.chunks_mut(d).enumerate() {
            for j in 0..d {
                row[j] = (transformed[j][r] - means[j]) / stds[j];
            }
        }
        drop(transformed);

        let mut rng = StdRng::seed_from_u64(options.seed);
        let sample = sample_rows(n, options.silhouette_sample, &mut rng);
        let mut best: Option<(Clustering, f64)> = None;
        let mut silhouette_by_k = Vec::new();
        for &k in &k_range {
            if k > n {
                // Only when choosing k: a fixed k larger than n failed above.
                break;
            }
            let mut chosen: Option<Clustering> = None;
            for _ in 0..options.n_init {
                if cancel() {
                    return Err(Error::Cancelled);
                }
                let run = lloyd(&points, d, k, options.max_iterations, &mut rng, cancel)?;
                if chosen.as_ref().is_none_or(|c| run.inertia < c.inertia) {
                    chosen = Some(run);
                }
            }
            let clustering = chosen.expect("n_init >= 1");
            let silhouette = silhouette(&points, d, &clustering.assignment, k, &sample);
            silhouette_by_k.push((k, silhouette));
            // A fixed k is kept whatever its silhouette; otherwise the best silhouette wins.
            if best.as_ref().is_none_or(|(_, s)| silhouette > *s) {
                best = Some((clustering, silhouette));
            }
        }
        let (clustering, silhouette) = best.expect("at least one k");
        let k = clustering.centroids.len() / d;

        // Number segments by size, largest first.
        let mut sizes = vec![0u64; k];
        for &a in &clustering.assignment {
            sizes[a as usize] += 1;
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        let centroids: Vec<Vec<f64>> = order
            .iter()
            .map(|&c| clustering.centroids[c * d..(c + 1) * d].to_vec())
            .collect();
        let sizes: Vec<u64> = order.iter().map(|&c| sizes[c]).collect();
        let segment_names = profile_names(&names, &centroids);
        Ok(KMeans {
            features: names,
            log,
            means,
            stds,
            centroids,
            names: segment_names,
            sizes,
            inertia: clustering.inertia,
            silhouette,
            silhouette_by_k: if options.k.is_none() {
                silhouette_by_k
            } else {
                Vec::new()
            },
            iterations: clustering.iterations,
            rows: n as u64,
            skipped_rows: (rows_total - n) as u64,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The segment of each row; None where a feature is NULL/NaN or a log feature negative.
    pub fn assign(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<Option<u32>>> {
        let d = self.features.len();
        if columns.len() != d {
            return Err(Error::input(format!(
                "expected {d} features, got {}",
                columns.len()
            )));
        }
        let mut numeric = Vec::with_capacity(d);
        for (j, column) in columns.iter().enumerate() {
            match column {
                FeatureValues::Numeric(values) => numeric.push(*values),
                _ => {
                    return Err(Error::input(format!(
                        "feature {} must be numeric",
                        self.features[j]
                    )));
                }
            }
        }
        let rows = numeric.first().map_or(0, |c| c.len());
        let mut point = vec![0.0; d];
        Ok((0..rows)
            .map(|i| {
                for j in 0..d {
                    let mut v = numeric[j][i];
                    if self.log[j] {
                        v = if v >= 0.0 { v.ln_1p() } else { f64::NAN };
                    }
                    point[j] = (v - self.means[j]) / self.stds[j];
                }
                if point.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                Some(nearest(&point, &self.centroids).0 as u32)
            })
            .collect())
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics = vec![
            ("k".to_string(), self.centroids.len() as f64),
            ("silhouette".to_string(), self.silhouette),
            ("inertia".to_string(), self.inertia),
            ("rows".to_string(), self.rows as f64),
            ("skipped_rows".to_string(), self.skipped_rows as f64),
            ("iterations".to_string(), self.iterations as f64),
        ];
        for (c, size) in self.sizes.iter().enumerate() {
            metrics.push((format!("size_{c}"), *size as f64));
        }
        for (k, s) in &self.silhouette_by_k {
            metrics.push((format!("silhouette_k{k}"), *s));
        }
        metrics
    }
}

/// One k-means run: centroids (k × d, row-major), assignment per row, inertia.
struct Clustering {
    centroids: Vec<f64>,
    assignment: Vec<u32>,
    inertia: f64,
    iterations: u64,
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest centroid and the squared distance to it.
fn nearest<C: AsRef<[f64]>>(point: &[f64], centroids: &[C]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let dist = squared_distance(point, centroid.as_ref());
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

/// The centroids transposed and padded: coordinate j of centroid c at `j * lanes + c`,
/// where `lanes` is k rounded up to a multiple of four and the padding centroids lie at
/// infinity (never nearest). The distances from one point to every centroid are then
/// computed four centroids at a time.
fn transpose(centroids: &[Vec<f64>], d: usize) -> (Vec<f64>, usize) {
    let lanes = centroids.len().div_ceil(4) * 4;
    let mut transposed = vec![f64::INFINITY; lanes * d];
    for (c, centroid) in centroids.iter().enumerate() {
        for (j, value) in centroid.iter().enumerate() {
            transposed[j * lanes + c] = *value;
        }
    }
    (transposed, lanes)
}

/// What one chunk of rows contributes to a Lloyd iteration.
struct ChunkStep {
    sums: Vec<f64>,
    counts: Vec<u64>,
    changed: usize,
    inertia: f64,
}

/// Assigns each row of `rows` to its nearest centroid (the first one on a tie, as
/// [`nearest`]) and accumulates the centroid update. Each distance is summed over the
/// coordinates in the same order as [`nearest`] does, so the result does not depend on the
/// CPU or on the path taken; for up to 16 centroids the distances live in registers, and
/// on x86-64 with AVX2 they are computed four at a time.
fn assign_chunk(
    rows: &[f64],
    d: usize,
    (transposed, lanes): (&[f64], usize),
    slots: &mut [u32],
    step: &mut ChunkStep,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { assign_chunk_avx2(rows, d, transposed, lanes, slots, step) };
        return;
    }
    assign_chunk_any(rows, d, transposed, lanes, slots, step);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn assign_chunk_avx2(
    rows: &[f64],
    d: usize,
    transposed: &[f64],
    lanes: usize,
    slots: &mut [u32],
    step: &mut ChunkStep,
) {
    assign_chunk_any(rows, d, transposed, lanes, slots, step);
}

#[inline(always)]
fn assign_chunk_any(
    rows: &[f64],
    d: usize,
    transposed: &[f64],
    lanes: usize,
    slots: &mut [u32],
    step: &mut ChunkStep,
) {
    match lanes {
        4 => assign_chunk_lanes::<4>(rows, d, transposed, slots, step),
        8 => assign_chunk_lanes::<8>(rows, d, transposed, slots, step),
        12 => assign_chunk_lanes::<12>(rows, d, transposed, slots, step),
        16 => assign_chunk_lanes::<16>(rows, d, transposed, slots, step),
        _ => {
            let mut distances = vec![0.0f64; lanes];
            for (point, slot) in rows.chunks_exact(d).zip(slots.iter_mut()) {
                distances.fill(0.0);
                for (x, column) in point.iter().zip(transposed.chunks_exact(lanes)) {
                    for (distance, centre) in distances.iter_mut().zip(column) {
                        let diff = x - centre;
                        *distance += diff * diff;
                    }
                }
                record(point, slot, &distances, step);
            }
        }
    }
}

/// [`assign_chunk_any`] for a number of (padded) centroids known at compile time.
#[inline(always)]
fn assign_chunk_lanes<const LANES: usize>(
    rows: &[f64],
    d: usize,
    transposed: &[f64],
    slots: &mut [u32],
    step: &mut ChunkStep,
) {
    for (point, slot) in rows.chunks_exact(d).zip(slots.iter_mut()) {
        let mut distances = [0.0f64; LANES];
        for (x, column) in point.iter().zip(transposed.chunks_exact(LANES)) {
            for (distance, centre) in distances.iter_mut().zip(column) {
                let diff = x - centre;
                *distance += diff * diff;
            }
        }
        record(point, slot, &distances, step);
    }
}

/// Takes the nearest of `distances` (padding included, which is never nearest) for `point`.
#[inline(always)]
fn record(point: &[f64], slot: &mut u32, distances: &[f64], step: &mut ChunkStep) {
    let d = point.len();
    let mut best = (0, f64::INFINITY);
    for (c, distance) in distances.iter().enumerate() {
        if *distance < best.1 {
            best = (c, *distance);
        }
    }
    let (c, distance) = best;
    if *slot != c as u32 {
        step.changed += 1;
        *slot = c as u32;
    }
    step.inertia += distance;
    step.counts[c] += 1;
    for (sum, value) in step.sums[c * d..(c + 1) * d].iter_mut().zip(point) {
        *sum += value;
    }
}

/// k-means++ seeding, then Lloyd's iterations until no assignment changes.
fn lloyd(
    points: &[f64],
    d: usize,
    k: usize,
    max_iterations: usize,
    rng: &mut StdRng,
    cancel: &dyn Fn() -> bool,
) -> Result<Clustering> {
    let n = points.len() / d;
    let row = |i: usize| &points[i * d..(i + 1) * d];
    // k-means++: each next centre drawn with probability proportional to D(x)².
    let mut centroids: Vec<Vec<f64>> = vec![row(rng.random_range(0..n)).to_vec()];
    let mut closest: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| squared_distance(row(i), &centroids[0]))
        .collect();
    while centroids.len() < k {
        let total: f64 = closest.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, dist) in closest.iter().enumerate() {
                target -= dist;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            // Fewer distinct points than k: any point will do (the cluster stays empty-ish).
            rng.random_range(0..n)
        };
        let centre = row(next).to_vec();
        closest
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, c)| *c = c.min(squared_distance(row(i), &centre)));
        centroids.push(centre);
    }

    let mut assignment = vec![u32::MAX; n];
    let mut iterations = 0;
    const CHUNK: usize = 8192;
    loop {
        iterations += 1;
        let transposed = transpose(&centroids, d);
        // Assign (in parallel), accumulating per-chunk sums and counts for the update.
        let (changed, sums, counts, inertia) = assignment
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(chunk, slots)| {
                let start = chunk * CHUNK * d;
                let rows = &points[start..start + slots.len() * d];
                let mut step = ChunkStep {
                    sums: vec![0.0; k * d],
                    counts: vec![0u64; k],
                    changed: 0,
                    inertia: 0.0,
                };
                assign_chunk(rows, d, (&transposed.0, transposed.1), slots, &mut step);
                (step.changed, step.sums, step.counts, step.inertia)
            })
            .reduce(
                || (0, vec![0.0; k * d], vec![0u64; k], 0.0),
                |mut a, b| {
                    a.0 += b.0;
                    a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
                    a.2.iter_mut().zip(&b.2).for_each(|(x, y)| *x += y);
                    a.3 += b.3;
                    a
                },
            );
        if changed == 0 || iterations as usize >= max_iterations || cancel() {
            if cancel() {
                return Err(Error::Cancelled);
            }
            return Ok(Clustering {
                centroids: centroids.concat(),
                assignment,
                inertia,
                iterations,
            });
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centroids[c][j] = sums[c * d + j] / counts[c] as f64;
                }
            } else {
                // An empty cluster takes the point farthest from its centre.
                let far = (0..n)
                    .into_par_iter()
                    .map(|i| {
                        (
                            i,
                            squared_distance(row(i), &centroids[assignment[i] as usize]),
                        )
                    })
                    .reduce(|| (0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
                centroids[c] = row(far.0).to_vec();
            }
        }
    }
}

/// Up to `size` distinct row indices, at random.
fn sample_rows(n: usize, size: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if n > size {
        all.shuffle(rng);
        all.truncate(size);
    }
    all
}

/// Mean silhouette over `sample` (distances among the sample only, as scikit-learn's
/// silhouette_score with sample_size does). 0 when k = 1.
fn silhouette(points: &[f64], d: usize, assignment: &[u32], k: usize, sample: &[usize]) -> f64 {
    if k < 2 {
        return 0.0;
    }
    let row = |i: usize| &points[i * d..(i + 1) * d];
    let mut sample_sizes = vec![0usize; k];
    for &i in sample {
        sample_sizes[assignment[i] as usize] += 1;
    }
    let total: f64 = sample
        .par_iter()
        .map(|&i| {
            let own = assignment[i] as usize;
            if sample_sizes[own] < 2 {
                return 0.0;
            }
            let mut sums = vec![0.0; k];
            for &j in sample {
                if j != i {
                    sums[assignment[j] as usize] += squared_distance(row(i), row(j)).sqrt();
                }
            }
            let a = sums[own] / (sample_sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sample_sizes[c] > 0)
                .map(|c| sums[c] / sample_sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if !b.is_finite() {
                return 0.0;
            }
            (b - a) / a.max(b)
        })
        .sum();
    total / sample.len() as f64
}

/// A readable name per centroid: its two most distinctive features (|z| ≥ 0.5), as
/// "high x, low y"; "typical" when none stands out. Names are made unique.
fn profile_names(features: &[String], centroids: &[Vec<f64>]) -> Vec<String> {
    let mut used = BTreeSet::new();
    centroids
        .iter()
        .map(|centroid| {
            let mut ranked: Vec<usize> = (0..features.len()).collect();
            ranked.sort_by(|&a, &b| centroid[b].abs().total_cmp(&centroid[a].abs()));
            let describe = |j: usize| {
                let level = if centroid[j] > 0.0 { "high" } else { "low" };
                format!("{level} {}", features[j])
            };
            let strong: Vec<usize> = ranked
                .iter()
                .copied()
                .filter(|&j| centroid[j].abs() >= 0.5)
                .collect();
            let mut name = if strong.is_empty() {
                "typical".to_string()
            } else {
                strong
                    .iter()
                    .take(2)
                    .map(|&j| describe(j))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // Add the next most distinctive feature until the name is unique.
            let mut extra = strong.len().min(2);
            while used.contains(&name) && extra < ranked.len() {
                name = format!("{name}, {}", describe(ranked[extra]));
                extra += 1;
            }
            let base = name.clone();
            let mut copy = 2;
            while used.contains(&name) {
                name = format!("{base} ({copy})");
                copy += 1;
            }
            used.insert(name.clone());
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated blobs in 2-D with sizes 600, 300, 100.
    fn blobs(seed: u64) -> TrainingData {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = [((0.0, 0.0), 600), ((10.0, 0.0), 300), ((0.0, 10.0), 100)];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for ((cx, cy), count) in centres {
            for _ in 0..count {
                x.push(cx + rng.random_range(-1.0..1.0));
                y.push(cy + rng.random_range(-1.0..1.0));
            }
        }
        TrainingData {
            features: vec![
                ("spend".into(), FeatureColumn::Numeric(x)),
                ("visits".into(), FeatureColumn::Numeric(y)),
            ],
            target: Vec::new(),
        }
    }

    fn options(k: Option<usize>) -> KMeansOptions {
        KMeansOptions::from_options(&mut Options::new(k.map(|k| ("k", k.to_string()))), "kmeans")
            .unwrap()
    }

    #[test]
    fn finds_planted_blobs_numbered_by_size_and_chooses_k_by_silhouette() {
        let data = blobs(1);
        let model = KMeans::fit(&data, &options(None), &|| false).unwrap();
        assert_eq!(model.centroids.len(), 3, "{:?}", model.silhouette_by_k);
        assert_eq!(model.sizes, vec![600, 300, 100]);
        assert!(model.silhouette > 0.7, "{}", model.silhouette);
        // Every point of a blob lands in the same segment, and the segments are the blobs.
        let FeatureColumn::Numeric(x) = &data.features[0].1 else {
            panic!()
        };
        let FeatureColumn::Numeric(y) = &data.features[1].1 else {
            panic!()
        };
        let segments = model
            .assign(&[FeatureValues::Numeric(x), FeatureValues::Numeric(y)])
            .unwrap();
        assert!(segments[..600].iter().all(|s| *s == Some(0)));
        assert!(segments[600..900].iter().all(|s| *s == Some(1)));
        assert!(segments[900..].iter().all(|s| *s == Some(2)));
        assert_eq!(model.names[0], "low spend");
        assert_eq!(model.names[1], "high spend");
        assert_eq!(model.names[2], "high visits, low spend");
        // Deterministic for a seed.
        assert_eq!(
            KMeans::fit(&data, &options(None), &|| false)
                .unwrap()
                .centroids,
            model.centroids
        );
    }

    #[test]
    fn missing_values_and_bad_k_are_handled() {
        let mut data = blobs(2);
        if let FeatureColumn::Numeric(x) = &mut data.features[0].1 {
            x[0] = f64::NAN;
        }
        let model = KMeans::fit(&data, &options(Some(3)), &|| false).unwrap();
        assert_eq!(model.skipped_rows, 1);
        let nan = [f64::NAN];
        let one = [1.0];
        assert_eq!(
            model
                .assign(&[FeatureValues::Numeric(&nan), FeatureValues::Numeric(&one)])
                .unwrap(),
            vec![None]
        );
        let err = KMeans::fit(&data, &options(Some(1000)), &|| false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k = 1000 needs at least 1000 rows without NULL features; the query returned 999 (of 1000)"),
            "{err}"
        );
        let text = TrainingData {
            features: vec![(
                "plan".into(),
                FeatureColumn::Categorical(vec![Some("a".into())]),
            )],
            target: Vec::new(),
        };
        let err = KMeans::fit(&text, &options(Some(2)), &|| false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column plan is text"), "{err}");
    }
}
