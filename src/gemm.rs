//! Safe wrappers over the `gemm` crate's strided matrix product (Candle's CPU
//! matmul backend, AVX-512 where the CPU has it), shared by the CPU paths that
//! multiply plain buffers: UniRep's recurrence, the kNN pruning projection and
//! the MLP's CPU training.

/// The element types the wrappers take.
pub trait Real: Copy + 'static {
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

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    // Threads only pay for products of a few hundred thousand multiply-adds or more.
    if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
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
    // SAFETY: the asserts bound the largest offset gemm reads through each operand's
    // strides and the m x n block it writes; `dst` aliases neither input (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
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
}
