//! Safe wrappers over the `gemm` crate's strided matrix product (Candle's CPU
//! matmul backend, AVX-512 where the CPU has it), shared by the CPU paths that
//! multiply plain buffers: UniRep's recurrence, the encoders' `Linear` layers
//! (`models::cpu_kernels::linear`), the kNN pruning projection, residue
//! alignment and the MLP's CPU training.

use rayon::prelude::*;

/// The element types the wrappers take.
pub trait Real: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// Products below this many multiply-adds run on the calling thread (waking
/// the pool costs more).
const PARALLEL_MIN_MULTIPLY_ADDS: usize = 1 << 18;

/// Columns (rows) per thread below which a product is not split by columns (rows).
const MIN_COLUMNS_PER_THREAD: usize = 16;
const MIN_ROWS_PER_THREAD: usize = 16;

/// A raw pointer that rayon tasks may share; each task writes a disjoint part
/// of the buffer (here: the rows or columns of one product).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used for writes to disjoint regions, and the owner outlives the parallel scope.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Through a method, so that closures capture the whole (Sync) wrapper, not the raw field.
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }
}

/// `dst (m x n, row-major, contiguous) = [dst +] lhs (m x k) * rhs (k x n)`, with
/// both operands given by their row and column strides (so transposes cost no copy).
pub fn gemm_strided<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (&[T], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[T], usize, usize),
) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    assert!((m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len());
    assert!((k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    // One single-threaded product per block of columns (or of rows, when the
    // product is much taller than wide): on these shapes (a few hundred rows or
    // columns) that keeps both cores busier than the `gemm` crate's own
    // splitting (1.5-1.8x on the MLP's 162 x 1900 x 500 forward product).
    let threads = rayon::current_num_threads();
    let by_rows = n * 4 < m;
    let (split, granule) = if by_rows {
        (m, MIN_ROWS_PER_THREAD)
    } else {
        (n, MIN_COLUMNS_PER_THREAD)
    };
    let parts = if m * n * k >= PARALLEL_MIN_MULTIPLY_ADDS {
        threads.min(split / granule).max(1)
    } else {
        1
    };
    let width = split.div_ceil(parts).next_multiple_of(granule).min(split);
    let dst = SharedMut(dst.as_mut_ptr());
    let part = |start: usize| {
        let len = width.min(split - start);
        let (rows, cols, dst_offset, lhs_offset, rhs_offset) = if by_rows {
            (len, n, start * n, start * lhs_rs, 0)
        } else {
            (m, len, start, 0, start * rhs_cs)
        };
        // SAFETY: the asserts bound the largest offset gemm reads through each operand's
        // strides and the m x n block of `dst`; this part writes only its own rows or
        // columns of it, which no other part touches, and `dst` aliases neither input
        // (distinct borrows).
        unsafe {
            gemm::gemm(
                rows,
                cols,
                k,
                dst.ptr().add(dst_offset),
                1,
                n as isize,
                accumulate,
                lhs.as_ptr().add(lhs_offset),
                lhs_cs as isize,
                lhs_rs as isize,
                rhs.as_ptr().add(rhs_offset),
                rhs_cs as isize,
                rhs_rs as isize,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    if parts == 1 {
        part(0);
    } else {
        (0..split)
            .step_by(width)
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(part);
    }
}

/// `out (m x n) = a (m x k) * b (k x n)`; all row-major, contiguous.
pub fn matmul_ab<T: Real>(m: usize, n: usize, k: usize, a: &[T], b: &[T], out: &mut [T]) {
    gemm_strided((m, n, k), out, false, (a, k, 1), (b, n, 1));
}

/// `out (m x n) = a (m x k) * b^T`, with `b` given as `n x k`; all row-major, contiguous.
pub fn matmul_abt<T: Real>(m: usize, n: usize, k: usize, a: &[T], b: &[T], out: &mut [T]) {
    gemm_strided((m, n, k), out, false, (a, k, 1), (b, 1, k));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_naive_loops_for_both_layouts_and_accumulation() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64).sin()).collect();
        let naive = |i: usize, j: usize| (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f64>();
        let mut ab = vec![0f64; m * n];
        matmul_ab(m, n, k, &a, &b, &mut ab);
        // b^T laid out as n x k.
        let bt: Vec<f64> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
        let mut abt = vec![0f64; m * n];
        matmul_abt(m, n, k, &a, &bt, &mut abt);
        let mut acc = vec![1f64; m * n];
        gemm_strided((m, n, k), &mut acc, true, (&a, k, 1), (&b, n, 1));
        for i in 0..m {
            for j in 0..n {
                let want = naive(i, j);
                assert!((ab[i * n + j] - want).abs() < 1e-12);
                assert!((abt[i * n + j] - want).abs() < 1e-12);
                assert!((acc[i * n + j] - want - 1.0).abs() < 1e-12);
            }
        }
        let mut empty_k = vec![7f64; m * n];
        gemm_strided((m, n, 0), &mut empty_k, false, (&a, k, 1), (&b, n, 1));
        assert!(empty_k.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn products_split_over_threads_by_columns_and_by_rows_match_naive_loops() {
        // Large enough to be split; a 3-thread pool so that parts are uneven too.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, n, k) in [(70, 90, 50), (400, 20, 40)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 11) as f64 * 0.25).collect();
            let mut ab = vec![0f64; m * n];
            pool.install(|| matmul_ab(m, n, k, &a, &b, &mut ab));
            let bt: Vec<f64> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
            let mut abt = vec![1f64; m * n];
            pool.install(|| gemm_strided((m, n, k), &mut abt, true, (&a, k, 1), (&bt, 1, k)));
            for i in 0..m {
                for j in 0..n {
                    let want = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f64>();
                    assert_eq!(ab[i * n + j], want, "{m}x{n}x{k} at ({i}, {j})");
                    assert_eq!(abt[i * n + j], want + 1.0, "{m}x{n}x{k} at ({i}, {j})");
                }
            }
        }
    }
}
