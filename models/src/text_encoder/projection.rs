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
use crate::linalg::{dot, symmetric_eigen};
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

/// Iterations between checks of the Ritz values for convergence.
const CHECK_EVERY: usize = 5;

impl TextProjection {
    /// Fits `components` principal axes (fewer if the texts span fewer dimensions) on
    /// `embeddings`, one per distinct text. At least two texts are needed. Stops with
    /// [`Error::Cancelled`] when `cancel` says so.
    pub fn fit(
        encoder: String,
        embeddings: &[Vec<f32>],
        components: usize,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Self> {
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
        // n texts span at most n - 1 dimensions around their mean.
        let rank = (n - 1).min(d);
        let (values, axes) = top_eigenvectors(&covariance, d, components.min(rank), rank, cancel)?;
        // Axes of no variance (texts that span fewer dimensions still) are left out.
        let kept: Vec<(f64, Vec<f64>)> = values
            .into_iter()
            .zip(axes)
            .filter(|(value, _)| *value > 1e-9 * total)
            .collect();
        if kept.is_empty() {
            return Err(Error::data(
                "the texts all embed alike; a text feature needs texts that differ",
            ));
        }
        let explained_variance = kept.iter().map(|(value, _)| value / total).collect();
        Ok(TextProjection {
            encoder,
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: kept
                .into_iter()
                .map(|(_, axis)| axis.into_iter().map(|x| x as f32).collect())
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

/// The `k` eigenpairs of largest eigenvalue of the symmetric `d`×`d` matrix `c` of rank at
/// most `rank`, by subspace iteration from a seeded start with Rayleigh-Ritz steps; each
/// axis's largest entry is positive, so that refits on the same texts give the same signs.
fn top_eigenvectors(
    c: &[f64],
    d: usize,
    k: usize,
    rank: usize,
    cancel: &dyn Fn() -> bool,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    // A basis wider than the rank would carry rounding noise, which no orthogonalisation
    // keeps orthogonal.
    let width = (k + OVERSAMPLING).min(rank).max(k);
    let mut rng = StdRng::seed_from_u64(0x9ca0_0000_0000_0001);
    let mut basis: Vec<Vec<f64>> = (0..width)
        .map(|_| (0..d).map(|_| rng.random::<f64>() - 0.5).collect())
        .collect();
    orthonormalise(&mut basis);
    let mut previous: Option<Vec<f64>> = None;
    for iteration in 1..=MAX_ITERATIONS {
        if cancel() {
            return Err(Error::Cancelled);
        }
        basis = basis.par_iter().map(|q| multiply(c, d, q)).collect();
        orthonormalise(&mut basis);
        // The subspace converges long before each vector in it does (when neighbouring
        // eigenvalues are close): stop when the wanted Ritz values settle.
        if iteration % CHECK_EVERY == 0 {
            let (values, _) = ritz(c, d, &basis);
            let settled = previous.as_ref().is_some_and(|before| {
                before
                    .iter()
                    .zip(&values)
                    .take(k)
                    .all(|(a, b)| (a - b).abs() <= 1e-10 * b.abs().max(1e-300))
            });
            if settled {
                break;
            }
            previous = Some(values);
        }
    }
    let (values, vectors) = ritz(c, d, &basis);
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
    Ok((values.into_iter().take(k).collect(), axes))
}

/// Rayleigh-Ritz: the eigenpairs of `c` restricted to the span of `basis` (orthonormal
/// vectors and zero vectors, which are left out), largest first, each as coefficients of the
/// basis vectors (zero for those left out).
fn ritz(c: &[f64], d: usize, basis: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let live: Vec<usize> = (0..basis.len())
        .filter(|&i| dot(&basis[i], &basis[i]) > 0.5)
        .collect();
    let width = live.len();
    let images: Vec<Vec<f64>> = live
        .par_iter()
        .map(|&i| multiply(c, d, &basis[i]))
        .collect();
    let mut small = vec![0f64; width * width];
    for (a, &i) in live.iter().enumerate() {
        for (b, image) in images.iter().enumerate() {
            small[a * width + b] = dot(&basis[i], image);
        }
    }
    let (values, vectors) = symmetric_eigen(&small, width);
    let vectors = vectors
        .into_iter()
        .map(|coefficients| {
            let mut full = vec![0f64; basis.len()];
            for (&i, w) in live.iter().zip(coefficients) {
                full[i] = w;
            }
            full
        })
        .collect();
    (values, vectors)
}

fn multiply(c: &[f64], d: usize, q: &[f64]) -> Vec<f64> {
    (0..d).map(|i| dot(&c[i * d..(i + 1) * d], q)).collect()
}

/// Modified Gram-Schmidt, in order, twice (once is not enough to stay orthogonal when
/// vectors are nearly dependent); a vector with next to nothing left (under 1e-10 of its
/// length) becomes zero.
fn orthonormalise(vectors: &mut [Vec<f64>]) {
    for i in 0..vectors.len() {
        let (done, rest) = vectors.split_at_mut(i);
        let v = &mut rest[0];
        let before = dot(v, v).sqrt();
        for _pass in 0..2 {
            for u in done.iter() {
                let projection = dot(u, v);
                for (x, y) in v.iter_mut().zip(u) {
                    *x -= projection * y;
                }
            }
        }
        let norm = dot(v, v).sqrt();
        let scale = if norm > 1e-10 * before && norm > 0.0 {
            1.0 / norm
        } else {
            0.0
        };
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
        let p = TextProjection::fit("enc@1".into(), &points, 2, &|| false).unwrap();
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
        assert_eq!(
            TextProjection::fit("enc@1".into(), &points, 2, &|| false).unwrap(),
            p
        );
    }

    #[test]
    fn too_few_texts_or_dimensions() {
        let one = vec![vec![1.0f32, 0.0]];
        let err = TextProjection::fit("e@1".into(), &one, 4, &|| false).unwrap_err();
        assert!(
            err.to_string().contains("at least 2 distinct texts"),
            "{err}"
        );
        let two = vec![vec![1.0f32, 0.0], vec![0.0, 1.0]];
        assert_eq!(
            TextProjection::fit("e@1".into(), &two, 16, &|| false)
                .unwrap()
                .width(),
            1
        );
        let alike = vec![vec![0.5f32, 0.5]; 3];
        let err = TextProjection::fit("e@1".into(), &alike, 4, &|| false).unwrap_err();
        assert!(err.to_string().contains("all embed alike"), "{err}");
        let err = TextProjection::fit("e@1".into(), &two, 1, &|| true).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
    }

    #[test]
    fn fewer_texts_than_components_give_orthonormal_axes_that_hold_all_the_variance() {
        // 12 texts in 64 dimensions span 11 around their mean, and two of them repeat a third:
        // 9 axes at most, though 16 were asked for.
        let mut rng = StdRng::seed_from_u64(3);
        let mut points: Vec<Vec<f32>> = (0..10)
            .map(|_| (0..64).map(|_| rng.random::<f32>()).collect())
            .collect();
        points.push(points[0].clone());
        points.push(points[0].clone());
        let p = TextProjection::fit("e@1".into(), &points, 16, &|| false).unwrap();
        assert_eq!(p.width(), 9);
        for (i, a) in p.components.iter().enumerate() {
            for (j, b) in p.components.iter().enumerate() {
                let product: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (product - expected).abs() < 1e-4,
                    "axes {i}, {j}: {product}"
                );
            }
        }
        let held: f64 = p.explained_variance.iter().sum();
        assert!((held - 1.0).abs() < 1e-6, "{held}");
        assert!(p.explained_variance.windows(2).all(|w| w[0] >= w[1]));
    }
}
