//! A text column as features of a tabular model (OPTIONS text_encoder = '...'): each text's
//! embedding, centred and projected on the first principal components of the training texts'
//! embeddings. A few components keep what varies between the texts (the topics a shop's
//! reviews are about) in as many numbers as a tabular model can use beside its other
//! features; the full 384 or 768 dimensions would drown them (k-means weighs every column
//! alike) and slow the trees down for little gain.
//!
//! The projection is fitted on the distinct training texts only, without the labels, and is
//! saved in the model's card with the encoder's pinned version, so scoring encodes a text
//! exactly as training did.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::linalg::symmetric_eigen;
use crate::preprocess::component_name;

/// How the texts of one feature become numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextProjection {
    /// The text encoder, pinned: `name@version`.
    pub encoder: String,
    /// The mean embedding of the fitted texts.
    pub mean: Vec<f32>,
    /// The principal axes, by decreasing variance; each is a unit vector as long as `mean`.
    pub components: Vec<Vec<f32>>,
    /// The share of the embeddings' variance each component carries.
    pub explained_variance: Vec<f64>,
}

/// Extra axes iterated beside the wanted ones: subspace iteration converges at the rate of
/// the gap after the last axis it carries, not the last one kept.
const OVERSAMPLING: usize = 8;

/// Iterations of the subspace iteration at most.
const MAX_ITERATIONS: usize = 500;

impl TextProjection {
    /// Fits `components` principal axes (fewer if the texts span fewer dimensions) on
    /// `embeddings`, one per distinct text. At least two texts are needed.
    pub fn fit(encoder: String, embeddings: &[Vec<f32>], components: usize) -> Result<Self> {
        let n = embeddings.len();
        if n < 2 {
            return Err(Error::data(format!(
                "a text feature needs at least 2 distinct texts to learn from, got {n}"
            )));
        }
        let d = embeddings[0].len();
        let mut mean = vec![0f64; d];
        for e in embeddings {
            for (m, x) in mean.iter_mut().zip(e) {
                *m += f64::from(*x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Centred, dimension-major: each covariance entry is then a dot product of two
        // contiguous columns.
        let columns: Vec<Vec<f64>> = (0..d)
            .into_par_iter()
            .map(|j| {
                embeddings
                    .iter()
                    .map(|e| f64::from(e[j]) - mean[j])
                    .collect()
            })
            .collect();
        let upper: Vec<Vec<f64>> = (0..d)
            .into_par_iter()
            .map(|i| {
                (i..d)
                    .map(|j| dot(&columns[i], &columns[j]) / n as f64)
                    .collect()
            })
            .collect();
        let mut covariance = vec![0f64; d * d];
        for (i, row) in upper.iter().enumerate() {
            for (offset, &c) in row.iter().enumerate() {
                covariance[i * d + i + offset] = c;
                covariance[(i + offset) * d + i] = c;
            }
        }
        let total: f64 = (0..d).map(|i| covariance[i * d + i]).sum();
        let keep = components.min(d).min(n - 1).max(1);
        let (values, axes) = top_eigenvectors(&covariance, d, keep);
        let explained_variance = values
            .iter()
            .map(|v| if total > 0.0 { v.max(0.0) / total } else { 0.0 })
            .collect();
        Ok(TextProjection {
            encoder,
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: axes
                .into_iter()
                .map(|axis| axis.into_iter().map(|x| x as f32).collect())
                .collect(),
            explained_variance,
        })
    }

    /// Numbers per text.
    pub fn width(&self) -> usize {
        self.components.len()
    }

    /// The dimension of the embeddings it takes.
    pub fn dimension(&self) -> usize {
        self.mean.len()
    }

    /// The coordinates of `embedding` on the components, into `out` (`width` long).
    pub fn project(&self, embedding: &[f32], out: &mut [f64]) {
        for (o, axis) in out.iter_mut().zip(&self.components) {
            *o = axis
                .iter()
                .zip(embedding.iter().zip(&self.mean))
                .map(|(a, (x, m))| f64::from(*a) * f64::from(x - m))
                .sum();
        }
    }

    /// The names the model gives the components of feature `name`: `name__pc1`, ...
    pub fn column_names(&self, name: &str) -> Vec<String> {
        (1..=self.width())
            .map(|i| component_name(name, i))
            .collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four accumulators, so that the loop vectorises.
    let mut sums = [0f64; 4];
    let (chunks_a, rest_a) = a.as_chunks::<4>();
    let (chunks_b, rest_b) = b.as_chunks::<4>();
    for (x, y) in chunks_a.iter().zip(chunks_b) {
        for lane in 0..4 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    let rest: f64 = rest_a.iter().zip(rest_b).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f64>() + rest
}

/// The `k` eigenpairs of largest eigenvalue of the symmetric `d`×`d` matrix `c`, by subspace
/// iteration from a seeded start and a Rayleigh-Ritz step; each axis's largest entry is
/// positive, so that refits on the same texts give the same signs.
fn top_eigenvectors(c: &[f64], d: usize, k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let width = (k + OVERSAMPLING).min(d);
    let mut rng = StdRng::seed_from_u64(0x9ca0_0000_0000_0001);
    let mut basis: Vec<Vec<f64>> = (0..width)
        .map(|_| (0..d).map(|_| rng.random::<f64>() - 0.5).collect())
        .collect();
    orthonormalise(&mut basis);
    for _ in 0..MAX_ITERATIONS {
        let mut next: Vec<Vec<f64>> = basis.par_iter().map(|q| multiply(c, d, q)).collect();
        orthonormalise(&mut next);
        // Converged when the kept axes no longer turn.
        let turned = basis
            .iter()
            .zip(&next)
            .take(k)
            .map(|(a, b)| 1.0 - dot(a, b).abs())
            .fold(0.0, f64::max);
        basis = next;
        if turned < 1e-12 {
            break;
        }
    }
    // Rayleigh-Ritz: the eigenpairs of the matrix restricted to the subspace.
    let images: Vec<Vec<f64>> = basis.par_iter().map(|q| multiply(c, d, q)).collect();
    let mut small = vec![0f64; width * width];
    for i in 0..width {
        for j in 0..width {
            small[i * width + j] = dot(&basis[i], &images[j]);
        }
    }
    let (values, vectors) = symmetric_eigen(&small, width);
    let axes = vectors
        .iter()
        .take(k)
        .map(|coefficients| {
            let mut axis = vec![0f64; d];
            for (q, &w) in basis.iter().zip(coefficients) {
                for (a, x) in axis.iter_mut().zip(q) {
                    *a += w * x;
                }
            }
            let largest = axis
                .iter()
                .copied()
                .fold(0.0, |m: f64, x| if x.abs() > m.abs() { x } else { m });
            if largest < 0.0 {
                axis.iter_mut().for_each(|x| *x = -*x);
            }
            axis
        })
        .collect();
    (values.into_iter().take(k).collect(), axes)
}

fn multiply(c: &[f64], d: usize, q: &[f64]) -> Vec<f64> {
    (0..d).map(|i| dot(&c[i * d..(i + 1) * d], q)).collect()
}

/// Modified Gram-Schmidt, in order; a vector that has nothing left becomes zero.
fn orthonormalise(vectors: &mut [Vec<f64>]) {
    for i in 0..vectors.len() {
        let (done, rest) = vectors.split_at_mut(i);
        let v = &mut rest[0];
        for u in done.iter() {
            let projection = dot(u, v);
            for (x, y) in v.iter_mut().zip(u) {
                *x -= projection * y;
            }
        }
        let norm = dot(v, v).sqrt();
        let scale = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
        v.iter_mut().for_each(|x| *x *= scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_directions_the_texts_vary_along_and_projects_onto_them() {
        // Points spread mostly along x, less along y, barely along z.
        let mut rng = StdRng::seed_from_u64(7);
        let points: Vec<Vec<f32>> = (0..400)
            .map(|_| {
                let (a, b, c): (f32, f32, f32) = (rng.random(), rng.random(), rng.random());
                vec![
                    1.0 + 10.0 * (a - 0.5),
                    2.0 + 3.0 * (b - 0.5),
                    0.1 * (c - 0.5),
                ]
            })
            .collect();
        let p = TextProjection::fit("enc@1".into(), &points, 2).unwrap();
        assert_eq!(p.width(), 2);
        assert!(p.components[0][0] > 0.999, "{:?}", p.components);
        assert!(p.components[1][1] > 0.999, "{:?}", p.components);
        assert!(p.explained_variance[0] > 0.85 && p.explained_variance[1] > 0.05);
        let mut out = [0.0; 2];
        p.project(&[p.mean[0] + 2.0, p.mean[1] - 1.0, p.mean[2]], &mut out);
        assert!(
            (out[0] - 2.0).abs() < 0.05 && (out[1] + 1.0).abs() < 0.05,
            "{out:?}"
        );
        assert_eq!(p.column_names("review"), ["review__pc1", "review__pc2"]);
        // The same texts give the same projection, signs included.
        assert_eq!(TextProjection::fit("enc@1".into(), &points, 2).unwrap(), p);
    }

    #[test]
    fn too_few_texts_or_dimensions() {
        let one = vec![vec![1.0f32, 0.0]];
        let err = TextProjection::fit("e@1".into(), &one, 4).unwrap_err();
        assert!(
            err.to_string().contains("at least 2 distinct texts"),
            "{err}"
        );
        let two = vec![vec![1.0f32, 0.0], vec![0.0, 1.0]];
        assert_eq!(
            TextProjection::fit("e@1".into(), &two, 16).unwrap().width(),
            1
        );
    }
}
