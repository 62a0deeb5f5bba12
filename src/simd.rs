//! Runs numeric loops compiled for the vector extensions the CPU has.
//!
//! The crate is built for the baseline x86-64 target (SSE2, so that one binary
//! runs anywhere), where plain loops vectorise only four f32 lanes wide. A
//! closure passed to [`vectorised`] is inlined into a copy compiled for
//! AVX-512 or AVX2 + FMA and that copy is picked at run time. Results are the
//! same on every path: IEEE operations round the same way at any width, and
//! Rust never contracts a multiply and an add into an FMA on its own.

/// Calls `f`, compiled for AVX-512 or AVX2 + FMA when the CPU has them.
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the copy is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_loops_give_the_scalar_results() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let scalar: Vec<f32> = x.iter().map(|v| v.abs().sqrt() / (v * v + 1.0)).collect();
        let wide: Vec<f32> = vectorised(|| x.iter().map(|v| v.abs().sqrt() / (v * v + 1.0)).collect());
        assert_eq!(scalar, wide);
    }
}
