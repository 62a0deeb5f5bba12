//! Proven lower bounds on Euclidean distances from a low-dimensional
//! projection, so that exact nearest-neighbour search can skip most training
//! vectors (used by [`super::knn`] on the CPU).
//!
//! For a matrix `Q` with orthonormal rows (the top principal directions of the
//! centred training vectors, found by randomized subspace iteration) every
//! difference splits into a part in the row space of `Q` and a part orthogonal to
//! it, so for centred vectors `x`, `q`:
//!
//! `|x - q|^2 >= |Qx - Qq|^2 + (r_x - r_q)^2`, with `r_x = |x - Q^T Q x|`.
//!
//! The first term costs one small GEMM over `d'` dimensions instead of `d`. The
//! bound is kept *rigorous* in floating point:
//! - `Q` is stored in f32, so its rows are only nearly orthonormal; `delta =
//!   ||Q Q^T - I||_F` is measured in f64 and the bound uses the exact orthogonal
//!   projector onto the row space of `Q` (`|a|^2 / (1 + delta)` for the projected
//!   part, and an interval for every residual norm);
//! - every f32 product and sum gets its worst-case rounding error
//!   (`gamma_n = n u`, independent of the summation order the GEMM uses), and
//!   the rounding of the centring is charged too;
//! - the result is finally shrunk by a relative `2^-18`, which covers the
//!   arithmetic of the bound itself and the rounding of the f64 "exact" distance.
//!
//! A training vector whose bound exceeds the current k-th exact distance
//! therefore cannot be a neighbour, whatever the data or the quality of `Q`:
//! `Q` only decides how much is pruned, never the answer.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::gemm::{matmul_ab, matmul_abt};

/// Unit roundoff of f32, doubled: every error bound below may be loose by 2x, never tight.
const U32: f64 = f32::EPSILON as f64;
/// Training rows the principal directions are estimated from.
const SAMPLE_ROWS: usize = 2048;
/// Power (subspace) iterations after the first range product.
const POWER_ITERATIONS: usize = 1;
/// Relative shrink of every final bound (see the module docs).
const FINAL_SHRINK: f32 = 1.0 - 1.0 / (1u32 << 18) as f32;

/// Norm bounds of one set of rows (training or query), one entry per row.
#[derive(Debug, Clone, Default)]
pub struct RowBounds {
    /// `|Qx|^2` as computed (f32 projection).
    pub proj_sq: Vec<f32>,
    /// `|Qx|` rounded up.
    pub proj: Vec<f32>,
    /// `|x|` (centred) rounded up.
    pub norm: Vec<f32>,
    /// Interval holding the exact residual norm `|x - P x|` (P the orthogonal projector onto Q's rows).
    pub res_lo: Vec<f32>,
    pub res_hi: Vec<f32>,
}

/// The pruning projection and the projected training vectors.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Rows of `Q` (may be fewer than asked when the data has lower rank).
    pub dims: usize,
    dim: usize,
    /// `dims x dim`, row-major.
    basis: Vec<f32>,
    /// `||Q Q^T - I||_F`, measured.
    pub delta: f64,
    /// Error of a computed projection, per unit of the row norm.
    eta_proj: f64,
    /// Projected centred training rows, `n x dims` row-major.
    train: Vec<f32>,
    train_bounds: RowBounds,
}

/// Writes `x - centre` in f32 for every row of `rows` into `out` (the same
/// rounding for training and query vectors, which the bounds charge for).
fn centre_into(rows: &[f32], centre: &[f32], out: &mut [f32]) {
    let d = centre.len();
    out[..rows.len()]
        .par_chunks_mut(d * 64)
        .zip(rows.par_chunks(d * 64))
        .for_each(|(o, r)| {
            for (o, r) in o.chunks_exact_mut(d).zip(r.chunks_exact(d)) {
                for ((o, &v), &c) in o.iter_mut().zip(r).zip(centre) {
                    *o = v - c;
                }
            }
        });
}

/// Orthonormalises the rows of `rows` (`r x d`, f64) in place by modified
/// Gram-Schmidt, `passes` times (two: "twice is enough" for orthogonality to
/// working precision; one suffices between power iterations, which only need
/// the span); rows that are (numerically) dependent on earlier ones are dropped.
/// Returns the number of rows kept, which are compacted to the front.
fn orthonormalise(rows: &mut [f64], d: usize, passes: usize) -> usize {
    let r = rows.len() / d;
    let mut kept = 0;
    for i in 0..r {
        let (done, rest) = rows.split_at_mut(i * d);
        let v = &mut rest[..d];
        let before = dot(v, v).sqrt();
        if before == 0.0 || !before.is_finite() {
            continue;
        }
        for _pass in 0..passes {
            for qrow in done[..kept * d].chunks_exact(d) {
                let c = dot(v, qrow);
                for (x, &qv) in v.iter_mut().zip(qrow) {
                    *x -= c * qv;
                }
            }
        }
        let after = dot(v, v).sqrt();
        // Mostly cancelled: the direction is noise, not a new dimension.
        if after <= 1e-6 * before {
            continue;
        }
        for x in v.iter_mut() {
            *x /= after;
        }
        if kept != i {
            let (dst, src) = rows.split_at_mut(i * d);
            dst[kept * d..(kept + 1) * d].copy_from_slice(&src[..d]);
        }
        kept += 1;
    }
    kept
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    lane_pair_sum(a, b, |x, y| x * y)
}

/// `sum term(a[i], b[i])` in f64 over eight interleaved partial sums added in a fixed
/// order: the compiler may vectorise it (it may not reassociate one running sum), and
/// the same pair of slices always gives the same value.
pub(crate) fn lane_pair_sum<T: Copy>(a: &[T], b: &[T], term: impl Fn(T, T) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += term(x[i], y[i]);
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in ra.iter().zip(rb) {
        sum += term(x, y);
    }
    sum
}

/// `|x|^2` in f64 for every `d`-wide row.
fn sq_norms_f64(rows: &[f32], d: usize) -> Vec<f64> {
    rows.par_chunks_exact(d.max(1))
        .map(|r| r.iter().map(|&v| (v as f64) * (v as f64)).sum())
        .collect()
}

impl Projection {
    /// Builds a projection onto (about) the top `dims` principal directions of the
    /// training rows (`n x dim`, row-major) minus `centre`, with a seeded RNG so
    /// that the same data always gives the same projection. `None` when the data
    /// spans no direction at all.
    pub fn fit(train: &[f32], centre: &[f32], dims: usize, seed: u64) -> Option<Projection> {
        let dim = centre.len();
        let n = train.len() / dim;
        if n == 0 || dims == 0 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = n.min(SAMPLE_ROWS);
        let mut picked: Vec<usize> = sample(&mut rng, n, m).into_vec();
        picked.sort_unstable();
        let mut xs = vec![0f32; m * dim];
        for (dst, &i) in xs.chunks_exact_mut(dim).zip(&picked) {
            for ((o, &v), &c) in dst.iter_mut().zip(&train[i * dim..(i + 1) * dim]).zip(centre) {
                *o = v - c;
            }
        }
        let dims = dims.min(dim).min(m);
        // Range finder on the row space: B = Omega (dims x m) * Xs, then
        // B <- (B Xs^T) Xs, orthonormalising in between.
        // Uniform rather than Gaussian entries: any random start spans the top directions.
        let omega: Vec<f32> = (0..dims * m).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut b = vec![0f32; dims * dim];
        matmul_ab(dims, dim, m, &omega, &xs, &mut b);
        let mut w = vec![0f32; dims * m];
        let mut rows = dims;
        for _ in 0..POWER_ITERATIONS {
            let mut b64: Vec<f64> = b[..rows * dim].iter().map(|&v| v as f64).collect();
            rows = orthonormalise(&mut b64, dim, 1);
            if rows == 0 {
                return None;
            }
            let b32: Vec<f32> = b64[..rows * dim].iter().map(|&v| v as f32).collect();
            matmul_abt(rows, m, dim, &b32, &xs, &mut w);
            matmul_ab(rows, dim, m, &w, &xs, &mut b);
        }
        let mut b64: Vec<f64> = b[..rows * dim].iter().map(|&v| v as f64).collect();
        let dims = orthonormalise(&mut b64, dim, 2);
        if dims == 0 {
            return None;
        }
        let basis: Vec<f32> = b64[..dims * dim].iter().map(|&v| v as f32).collect();
        let delta = orthonormality_defect(&basis, dim, dims);
        if delta >= 0.25 {
            // Cannot happen for a Gram-Schmidt basis; refusing keeps the bound's premise honest.
            tracing::warn!(delta, "kNN projection not orthonormal; pruning disabled");
            return None;
        }
        // Each computed projection coordinate errs by at most gamma_dim |Q_i| |x|,
        // |Q_i| <= sqrt(1 + delta), so the projected vector errs by at most eta |x|.
        let eta_proj = (dims as f64 * (1.0 + delta)).sqrt() * gamma(dim);
        let mut proj = Projection {
            dims,
            dim,
            basis,
            delta,
            eta_proj,
            train: Vec::new(),
            train_bounds: RowBounds::default(),
        };
        let (projected, bounds) = proj.project(train, centre);
        proj.train = projected;
        proj.train_bounds = bounds;
        Some(proj)
    }

    /// Projects rows minus `centre` and bounds their norms: `(n x dims projections, bounds)`.
    pub fn project(&self, rows: &[f32], centre: &[f32]) -> (Vec<f32>, RowBounds) {
        let n = rows.len() / self.dim;
        let mut proj = vec![0f32; n * self.dims];
        let mut norms_sq = Vec::with_capacity(n);
        // Centring block by block keeps one small centred copy instead of all rows.
        const BLOCK: usize = 1024;
        let mut centred = vec![0f32; BLOCK.min(n) * self.dim];
        for (src, dst) in rows.chunks(BLOCK * self.dim).zip(proj.chunks_mut(BLOCK * self.dims)) {
            let block_rows = src.len() / self.dim;
            let centred = &mut centred[..src.len()];
            centre_into(src, centre, centred);
            matmul_abt(block_rows, self.dims, self.dim, centred, &self.basis, dst);
            norms_sq.extend(sq_norms_f64(centred, self.dim));
        }
        let proj_sq = sq_norms_f64(&proj, self.dims);
        let (lo_g, hi_g) = (1.0 / (1.0 - self.delta), 1.0 / (1.0 + self.delta));
        let up = 1.0 + 4.0 * U32;
        let per_row: Vec<(f32, f32, f32, f32, f32)> = norms_sq
            .par_iter()
            .zip(&proj_sq)
            .map(|(&x2, &p2)| {
                let x = x2.sqrt();
                let p = p2.sqrt();
                let err = self.eta_proj * x;
                // Exact projector: |Px|^2 = a^T G^-1 a with a = Qx, G = Q Q^T, eigenvalues in
                // [1 - delta, 1 + delta]; |a| is within err of the computed |Qx|.
                let p_hi = (p + err) * (p + err) * lo_g;
                let p_lo = (p - err).max(0.0).powi(2) * hi_g;
                // Slack for the f64 arithmetic (cancellation in x2 - p) and the f32 storage.
                let slack = 1e-6 * x;
                let r_lo = ((x2 - p_hi).max(0.0).sqrt() - slack).max(0.0);
                let r_hi = (x2 - p_lo).max(0.0).sqrt() + slack;
                (
                    p2 as f32,
                    (p * up) as f32,
                    (x * up) as f32,
                    (r_lo / up) as f32,
                    (r_hi * up) as f32,
                )
            })
            .collect();
        let mut b = RowBounds::default();
        for (p2, p, x, lo, hi) in per_row {
            b.proj_sq.push(p2);
            b.proj.push(p);
            b.norm.push(x);
            b.res_lo.push(lo);
            b.res_hi.push(hi);
        }
        (proj, b)
    }

    pub fn train_len(&self) -> usize {
        self.train_bounds.norm.len()
    }

    /// Writes into `out` (`queries x n`) a lower bound on the f64 squared distance
    /// (as [`super::knn`] computes it) between every query (rows of `queries`) and
    /// every training vector, both taken relative to the training `centre`.
    pub fn lower_bounds(&self, queries: &[f32], centre: &[f32], out: &mut [f32]) {
        let nq = queries.len() / self.dim;
        let n = self.train_len();
        let (qp, qb) = self.project(queries, centre);
        matmul_abt(nq, n, self.dims, &qp, &self.train, out);
        let u = U32 as f32;
        // gamma for the projected expansion (dims-term dot, norms, the additions)
        let g = gamma(self.dims + 8) as f32;
        // Projection error plus the f32 arithmetic below (each a few u of |x| + |q|).
        let eta = (self.eta_proj + 16.0 * U32) as f32;
        // Centring rounding (u (|x| + |q|)) plus the arithmetic below.
        let tau = 20.0 * u;
        let c1 = (1.0 / (1.0 + self.delta) * (1.0 - 4.0 * U32)) as f32;
        let t = &self.train_bounds;
        let (tp2, tp, tn, tlo, thi) = (
            &t.proj_sq[..n],
            &t.proj[..n],
            &t.norm[..n],
            &t.res_lo[..n],
            &t.res_hi[..n],
        );
        out[..nq * n].par_chunks_exact_mut(n).enumerate().for_each(|(i, row)| {
            let (qp2, qp, qn, qlo, qhi) = (qb.proj_sq[i], qb.proj[i], qb.norm[i], qb.res_lo[i], qb.res_hi[i]);
            for j in 0..n {
                let s = qp2 + tp2[j] - 2.0 * row[j];
                let sp = qp + tp[j];
                let sn = qn + tn[j];
                let a = ((s - g * sp * sp).max(0.0).sqrt() - eta * sn).max(0.0);
                let r = (tlo[j] - qhi).max(qlo - thi[j]).max(0.0);
                let l = ((a * a * c1 + r * r).sqrt() - tau * sn).max(0.0);
                row[j] = l * l * FINAL_SHRINK;
            }
        });
    }
}

/// `gamma_n = n u / (1 - n u)`: the worst relative error of an n-term f32 sum of products.
fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U32;
    nu / (1.0 - nu).max(0.5)
}

/// `||Q Q^T - I||_F` of a `dims x dim` f32 basis, computed in f64 and rounded up by
/// a bound on its own rounding error.
fn orthonormality_defect(basis: &[f32], dim: usize, dims: usize) -> f64 {
    let q: Vec<f64> = basis.iter().map(|&v| v as f64).collect();
    let mut g = vec![0f64; dims * dims];
    matmul_abt(dims, dims, dim, &q, &q, &mut g);
    let mut sum = 0.0;
    for i in 0..dims {
        for j in 0..dims {
            let e = g[i * dims + j] - if i == j { 1.0 } else { 0.0 };
            sum += e * e;
        }
    }
    // Every f64 entry of G errs by at most gamma_dim(f64) |Q_i||Q_j| ~ dim * 1.1e-16.
    sum.sqrt() + dims as f64 * dim as f64 * 2.3e-16 + 1e-12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_is_orthonormal_and_deterministic() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, d) = (300, 50);
        let data: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let centre = vec![0f32; d];
        let a = Projection::fit(&data, &centre, 10, 7).unwrap();
        let b = Projection::fit(&data, &centre, 10, 7).unwrap();
        assert_eq!(a.basis, b.basis);
        assert_eq!(a.dims, 10);
        assert!(a.delta < 1e-5, "delta {}", a.delta);
    }

    #[test]
    fn rank_deficient_data_keeps_only_its_directions() {
        // Rows span 3 directions of a 40-dimensional space.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let dirs: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..40).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let data: Vec<f32> = (0..100)
            .flat_map(|_| {
                let c: Vec<f32> = (0..3).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                (0..40)
                    .map(|k| (0..3).map(|j| c[j] * dirs[j][k]).sum::<f32>())
                    .collect::<Vec<_>>()
            })
            .collect();
        let centre = vec![0f32; 40];
        let p = Projection::fit(&data, &centre, 8, 0).unwrap();
        assert!(p.dims >= 3 && p.dims <= 8, "dims {}", p.dims);
        assert!(Projection::fit(&vec![0f32; 400], &centre, 8, 0).is_none());
    }

    #[test]
    fn bounds_never_exceed_exact_distances() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, d) = (500, 64);
        // Far from the origin, so that the centring matters.
        let data: Vec<f32> = (0..n * d).map(|_| 100.0 + rng.gen_range(-2.0f32..2.0)).collect();
        let centre = vec![100.0f32; d];
        let p = Projection::fit(&data, &centre, 12, 1).unwrap();
        let q: Vec<f32> = (0..20 * d).map(|_| 100.0 + rng.gen_range(-2.0f32..2.0)).collect();
        let mut lb = vec![0f32; 20 * n];
        p.lower_bounds(&q, &centre, &mut lb);
        for i in 0..20 {
            for j in 0..n {
                let exact: f64 = q[i * d..(i + 1) * d]
                    .iter()
                    .zip(&data[j * d..(j + 1) * d])
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum();
                assert!(lb[i * n + j] as f64 <= exact, "{i} {j}: {} > {exact}", lb[i * n + j]);
            }
        }
    }
}
