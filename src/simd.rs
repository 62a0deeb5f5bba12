//! Runs numeric loops compiled for the vector extensions the CPU has.
//!
//! The crate is built for the baseline x86-64 target (SSE2, so that one binary
//! runs anywhere), where plain loops vectorise only four f32 lanes wide. A
//! closure passed to [`vectorised`] is inlined into a copy compiled for
//! AVX-512 or AVX2 + FMA and that copy is picked at run time. Results are the
//! same on every path: IEEE operations round the same way at any width, and
//! Rust never contracts a multiply and an add into an FMA on its own.

/// Calls `f`, compiled for AVX-512 or AVX2 + FMA when the CPU has them.
///
/// The wide copies exist only where LLVM inlines `f` into them, which it may decline for a
/// large closure (one with several loops and calls): `f` then runs as compiled for the
/// baseline, four lanes wide, with a libm call for every `floor`. A loop a profile shows as
/// such a closure belongs in a function defined with [`multiversion!`] instead.
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

/// Defines a function whose body is compiled three times, for AVX-512, for AVX2 + FMA and for
/// the baseline, and picks the copy at run time, as [`vectorised`] does but with no closure for
/// LLVM to leave un-inlined: the body is a function of its own, inlined (`#[inline(always)]`)
/// into each `#[target_feature]` copy.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the copy is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use multiversion;

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

    multiversion! {
        fn scaled_roots(x: &[f32], out: &mut [f32]) {
            for (o, v) in out.iter_mut().zip(x) {
                *o = v.abs().sqrt().floor() / (v * v + 1.0);
            }
        }
    }

    #[test]
    fn multiversioned_functions_give_the_scalar_results() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let scalar: Vec<f32> = x.iter().map(|v| v.abs().sqrt().floor() / (v * v + 1.0)).collect();
        let mut wide = vec![0f32; x.len()];
        scaled_roots(&x, &mut wide);
        assert_eq!(scalar, wide);
    }
}
