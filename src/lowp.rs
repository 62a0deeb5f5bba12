//! Low-precision matrix products: `out (m x n) [+]= a (m x k) · bᵀ` with both
//! operands rounded to bfloat16 and every product summed in f32, for the
//! encoders' `--dtype bf16` CPU path and the residue search.
//!
//! `b` is the operand that is reused (a `Linear` layer's `[out, in]` weight, a
//! target's residue embeddings): it is rounded and packed once into a
//! [`PackedRhs`]; `a` (activations, queries) is given as row-major f32 and
//! rounded per call. `a · bᵀ` on row-major slices is what both users need
//! (`x Wᵀ`, and `query · targetᵀ` similarities).
//!
//! # Dispatch
//! The best [`Level`] this CPU and OS allow is found once per process:
//! - [`Level::Amx`]: Intel AMX tiles (`tdpbf16ps`, 16 x 16 x 32 per
//!   instruction) where CPUID reports AMX-TILE and AMX-BF16 and Linux grants the
//!   tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
//!   requested once; without the grant the first tile instruction would kill the
//!   process);
//! - [`Level::Avx512Bf16`]: `vdpbf16ps` (pairs of bf16 products summed into f32
//!   lanes) where the CPU has AVX512-BF16;
//! - [`Level::F32`]: anywhere else (other x86-64, aarch64): the bf16-rounded
//!   values widened to f32 and multiplied by the `gemm` crate. Since the product
//!   of two bf16 numbers is exact in f32, every level computes the same sums of
//!   the same exact products; only the order of the f32 additions differs.
//!
//! `PROTFAM_LOWP=f32|avx512bf16|amx` caps the level (for benchmarks and to
//! rule the kernels out when chasing a difference); tests force each level
//! through [`PackedRhs::pack_at`].
//!
//! # Why own kernels
//! Three means were weighed. The `gemm` crate's half-precision kernels are
//! f16 only (no bf16 type) and use neither AMX nor `vdpbf16ps`. Debian's
//! oneDNN 2.6.3 (`libdnnl-dev`) would make the binary depend on a system C++
//! library that only Debian/Ubuntu x86 users have (the product is one
//! self-contained binary on any x86-64 and aarch64), its matmul primitive
//! works through memory descriptors and a primitive per shape, and whether
//! 2.6.3 enables its AMX kernels by default was not established here (it was
//! not measured against these kernels). The products here have few shapes
//! (`k` = hidden or intermediate size, `m` = tokens of a batch), so a
//! 2 x 2-tile AMX kernel (32 x 32 outputs: four accumulator tiles fed by two
//! row tiles of `a` and two column tiles of the pre-packed `b`) and an 8 x 32
//! `vdpbf16ps` kernel, both on one packing of `b` made at load, cover them
//! with no dependency. Their speed, against PyTorch's oneDNN in the same run,
//! is in `benches/embed_throughput.rs` (the GEMM peak line and the ESM rows).
//!
//! # Layouts
//! [`PackedRhs`] stores `b` (n x k) in the VNNI layout both bf16 kernels read:
//! panels of 16 columns, each a run of `k/32` blocks of 16 rows x 64 bytes,
//! row `p` of a block holding, for each of the 16 columns, the pair of values at
//! `k = 32 * block + 2p, 2p + 1`; `n` is padded to 32 and `k` to 32 with zeros.
//! `a` is rounded into a per-thread scratch in the same tiles (16 rows x 32
//! values, 1 KiB contiguous, per 16-row block and 32-deep step), `k` and the
//! rows padded to 32 with zeros: every tile load reads 1 KiB in a row, which
//! measured faster than loading 16 rows of a row-major matrix.

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::gemm::SharedMut;
use crate::simd::vectorised;

/// How the products are computed, from the most portable to the fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// bf16-rounded values multiplied in f32 by the `gemm` crate.
    F32,
    /// AVX512-BF16 `vdpbf16ps`.
    Avx512Bf16,
    /// AMX-BF16 tiles.
    Amx,
}

impl Level {
    /// The fastest level this CPU and OS allow, capped by `PROTFAM_LOWP` (found once per process).
    pub fn detected() -> Level {
        static DETECTED: OnceLock<Level> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let hardware = hardware_level();
            let cap = std::env::var("PROTFAM_LOWP").ok().and_then(|v| Level::parse(&v));
            let level = cap.map_or(hardware, |cap| cap.min(hardware));
            tracing::debug!("bf16 products: {} (hardware allows {})", level.name(), hardware.name());
            level
        })
    }

    /// `f32`, `avx512bf16` or `amx`.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Some(Level::F32),
            "avx512bf16" | "avx512-bf16" => Some(Level::Avx512Bf16),
            "amx" => Some(Level::Amx),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::F32 => "f32",
            Level::Avx512Bf16 => "avx512bf16",
            Level::Amx => "amx",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn hardware_level() -> Level {
    use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
    let avx512bf16 = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16");
    if !avx512bf16 {
        return Level::F32;
    }
    // CPUID.(EAX=7, ECX=0):EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE (leaf 7 read only where it exists).
    let amx_cpu = __get_cpuid_max(0).0 >= 7 && (__cpuid_count(7, 0).edx >> 22) & 0b101 == 0b101;
    if amx_cpu && amx::request_permission() {
        Level::Amx
    } else {
        Level::Avx512Bf16
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn hardware_level() -> Level {
    Level::F32
}

/// `x` rounded to the nearest bf16 (ties to even), as its bits; NaN stays NaN.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
    if nan {
        ((bits >> 16) as u16) | 0x40
    } else {
        rounded
    }
}

/// The f32 value of bf16 bits (exact).
#[inline(always)]
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// `x` rounded to bf16 and back: the value the products use.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    bf16_value(bf16_bits(x))
}

const TILE: usize = 16;
/// bf16 values per 64-byte tile row: the `k` step of one tile product.
const K_BLOCK: usize = 32;
/// Output block of one kernel call: 2 x 2 tiles.
const BLOCK: usize = 32;
/// Elements of one packed 16-column x 32-deep block of `b`.
const PANEL_BLOCK: usize = TILE * K_BLOCK;

/// `b` (n x k), rounded to bf16 and packed once for [`matmul_abt`].
#[derive(Debug, Clone)]
pub struct PackedRhs {
    n: usize,
    k: usize,
    level: Level,
    /// [`Level::F32`]: the rounded values, n x k row-major. Otherwise empty.
    wide: Vec<f32>,
    /// bf16 levels: the VNNI panels (module doc). Otherwise empty.
    vnni: Vec<u16>,
}

impl PackedRhs {
    /// Packs `b` (n x k, row-major) for the detected level.
    pub fn pack(b: &[f32], n: usize, k: usize) -> Self {
        Self::pack_at(b, n, k, Level::detected())
    }

    /// Packs for `level`, capped at the detected one (so tests can force every slower path).
    pub fn pack_at(b: &[f32], n: usize, k: usize, level: Level) -> Self {
        assert_eq!(b.len(), n * k, "b is not n x k");
        let level = level.min(Level::detected());
        if level == Level::F32 {
            return PackedRhs {
                n,
                k,
                level,
                wide: vectorised(|| b.iter().map(|&v| round_bf16(v)).collect()),
                vnni: Vec::new(),
            };
        }
        let (kp, np) = (k.next_multiple_of(K_BLOCK), n.next_multiple_of(BLOCK));
        let k_blocks = kp / K_BLOCK;
        let mut vnni = vec![0u16; np * kp];
        vnni.par_chunks_mut(k_blocks * PANEL_BLOCK)
            .enumerate()
            .for_each(|(panel, out)| {
                for col in 0..TILE {
                    let j = panel * TILE + col;
                    if j >= n {
                        break;
                    }
                    let row = &b[j * k..(j + 1) * k];
                    for (kk, &v) in row.iter().enumerate() {
                        let (block, within) = (kk / K_BLOCK, kk % K_BLOCK);
                        out[block * PANEL_BLOCK + (within / 2) * 2 * TILE + col * 2 + within % 2] = bf16_bits(v);
                    }
                }
            });
        PackedRhs {
            n,
            k,
            level,
            wide: Vec::new(),
            vnni,
        }
    }

    /// An empty packing, for [`Self::pack_f16_rows_into`] to fill (and refill: its buffers are
    /// kept between calls).
    pub fn empty() -> Self {
        PackedRhs {
            n: 0,
            k: 0,
            level: Level::detected(),
            wide: Vec::new(),
            vnni: Vec::new(),
        }
    }

    /// Packs `rows` for the detected level in place of what this packing held, reusing its
    /// buffers: `n` rows of `k` values, each given as little-endian f16 bytes with the factor it
    /// is multiplied by before rounding (a residue store's rows and their inverse norms, so that
    /// the products are cosines). On the bf16 levels with `k` a multiple of 32 each row goes
    /// from f16 to its packed panel in one pass, 16 values at a time (the residue search packs
    /// every row it compares, so this is its gather); otherwise through f32 and [`Self::pack_at`].
    pub fn pack_f16_rows_into(&mut self, rows: &[(&[u8], f32)], k: usize) {
        let n = rows.len();
        for (bytes, _) in rows {
            assert_eq!(bytes.len(), 2 * k, "an f16 row is not k values long");
        }
        let level = Level::detected();
        #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
        if level != Level::F32 && k.is_multiple_of(K_BLOCK) {
            let k_blocks = k / K_BLOCK;
            let panel_len = k_blocks * PANEL_BLOCK;
            // Every value of every panel is written below (padding columns as zeros), so what
            // an earlier packing left in the buffer needs no clearing.
            self.vnni.resize(n.next_multiple_of(BLOCK) * k, 0);
            self.wide.clear();
            for (panel, out) in self.vnni.chunks_exact_mut(panel_len).enumerate() {
                let panel_rows = &rows[(panel * TILE).min(n)..((panel + 1) * TILE).min(n)];
                // SAFETY: a level above F32 means the CPU has AVX512-BF16 (`Level::detected`);
                // every row holds `k_blocks * 32` values (asserted above) and `out` one panel.
                unsafe { avx512::pack_f16_panel(panel_rows, k_blocks, out) };
            }
            (self.n, self.k, self.level) = (n, k, level);
            return;
        }
        let mut wide = std::mem::take(&mut self.wide);
        wide.resize(n * k, 0.0);
        for (dst, (bytes, scale)) in wide.chunks_exact_mut(k.max(1)).zip(rows) {
            for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                *d = half::f16::from_le_bytes([c[0], c[1]]).to_f32() * scale;
            }
        }
        *self = Self::pack_at(&wide, n, k, level);
    }

    /// Rows of `b` (columns of the product).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Columns of `b` (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.wide.len() * 4 + self.vnni.len() * 2
    }
}

thread_local! {
    /// The rounded `a` of the last product on this thread, kept to avoid page faults on every call.
    static SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Products below this many multiply-adds run on the calling thread.
const PARALLEL_MIN_MULTIPLY_ADDS: usize = 1 << 20;
/// Rows of `a` per task: with `k` up to a few thousand the task's rows of `a` stay in L2 while
/// the column panels of `b` stream past them.
const ROWS_PER_TASK: usize = 128;
/// Columns per task.
const COLUMNS_PER_TASK: usize = 256;

/// `out = [out +] round(a) · round(b)ᵀ`: `a` is m x k row-major (contiguous), `out` m x n.
pub fn matmul_abt(a: &[f32], m: usize, b: &PackedRhs, out: &mut [f32], accumulate: bool) {
    matmul_abt_strided((a, b.k), m, b, (out, b.n), accumulate)
}

/// [`matmul_abt`] with row strides: row `i` of `a` starts at `i * a_stride`, row `i` of `out` at
/// `i * out_stride` (for operands that are column ranges of wider matrices). Rows of `a` may
/// overlap (`a_stride < k`): then row `i` is the window of `k` values from `i * a_stride`.
pub fn matmul_abt_strided(
    (a, a_stride): (&[f32], usize),
    m: usize,
    b: &PackedRhs,
    (out, out_stride): (&mut [f32], usize),
    accumulate: bool,
) {
    product((a, a_stride), m, b, (out, out_stride), accumulate, Terms::default());
}

/// `out = round(a) · round(b)ᵀ + bias (+ residual)`: PyTorch's `Linear` (`b` the `[out, in]`
/// weight, `bias` one value per column, `residual` m x n like `out`), all contiguous. The bias and
/// residual are added in f32 as each block of outputs is written, with no pass of their own.
pub fn matmul_abt_bias(a: &[f32], m: usize, b: &PackedRhs, bias: &[f32], residual: Option<&[f32]>, out: &mut [f32]) {
    assert_eq!(bias.len(), b.n, "bias is not one value per column");
    if let Some(residual) = residual {
        assert_eq!(residual.len(), m * b.n, "residual is not m x n");
    }
    let terms = Terms {
        bias: Some(bias),
        residual,
    };
    product((a, b.k), m, b, (out, b.n), false, terms);
}

/// What is added to the product as it is written: a value per column, and a matrix laid out like
/// `out`.
#[derive(Clone, Copy, Default)]
struct Terms<'a> {
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
}

fn product(
    (a, a_stride): (&[f32], usize),
    m: usize,
    b: &PackedRhs,
    (out, out_stride): (&mut [f32], usize),
    accumulate: bool,
    terms: Terms,
) {
    let (n, k) = (b.n, b.k);
    // Rows of `a` may overlap (a stride under `k`: sliding windows, as NEAR's convolutions use);
    // rows of `out` are written, so they may not.
    assert!(out_stride >= n, "out's row stride is shorter than its rows");
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * a_stride + k, "a is not m x k");
    assert!(out.len() >= (m - 1) * out_stride + n, "out is not m x n");
    if let Some(residual) = terms.residual {
        assert!(
            residual.len() >= (m - 1) * out_stride + n,
            "residual is not laid out like out"
        );
    }
    let has_terms = terms.bias.is_some() || terms.residual.is_some();
    if k == 0 || (b.level == Level::F32 && has_terms) {
        // out = [out +] bias + residual first; the f32 product then adds onto it.
        for (i, row) in out.chunks_mut(out_stride).take(m).enumerate() {
            for (j, o) in row[..n].iter_mut().enumerate() {
                let base = if accumulate { *o } else { 0.0 };
                *o = base
                    + terms.bias.map_or(0.0, |bias| bias[j])
                    + terms.residual.map_or(0.0, |residual| residual[i * out_stride + j]);
            }
        }
        if k == 0 {
            return;
        }
        return wide_product(a, a_stride, m, b, out, out_stride, true);
    }
    match b.level {
        Level::F32 => wide_product(a, a_stride, m, b, out, out_stride, accumulate),
        Level::Avx512Bf16 | Level::Amx => {
            let row = |i: usize| &a[i * a_stride..i * a_stride + k];
            rounded_product(row, m, b, (out, out_stride), accumulate, terms);
        }
    }
}

/// `out = round(a) · round(b)ᵀ` with the `m` rows of `a` given one by one (rows gathered from
/// elsewhere, each `b.k()` long; `out` m x n, contiguous): on the bf16 levels they are rounded
/// straight into the product's tiles, with no gathered copy of them.
pub fn matmul_abt_rows(a_rows: &[&[f32]], b: &PackedRhs, out: &mut [f32]) {
    let (m, n, k) = (a_rows.len(), b.n, b.k);
    assert!(a_rows.iter().all(|row| row.len() == k), "a row of a is not k long");
    assert!(out.len() >= m * n, "out is not m x n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    match b.level {
        Level::F32 => wide_product(&a_rows.concat(), k, m, b, out, n, false),
        Level::Avx512Bf16 | Level::Amx => rounded_product(|i| a_rows[i], m, b, (out, n), false, Terms::default()),
    }
}

/// The bf16 levels' product: the rows of `a` (`row(i)`, `b.k` long) rounded into this thread's
/// scratch tiles, then [`tiled_product`].
fn rounded_product<'a>(
    row: impl Fn(usize) -> &'a [f32] + Sync,
    m: usize,
    b: &PackedRhs,
    (out, out_stride): (&mut [f32], usize),
    accumulate: bool,
    terms: Terms,
) {
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let kp = b.k.next_multiple_of(K_BLOCK);
    round_rows(row, m, kp, &mut scratch);
    tiled_product(&scratch, kp, m, b, (out, out_stride), accumulate, terms);
    // A nested call (from a task this thread stole meanwhile) found the slot empty and used its
    // own buffer; keep the larger.
    SCRATCH.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.len() < scratch.len() {
            *slot = scratch;
        }
    });
}

/// Rounds the `m` rows of `a` (`row(i)`) into `scratch` in tiles: for each block of 16 rows,
/// `kp / 32` tiles of 16 rows x 32 bf16 (1 KiB, what one tile load reads, contiguous), rows
/// padded to [`BLOCK`], zeros outside.
fn round_rows<'a>(row: impl Fn(usize) -> &'a [f32] + Sync, m: usize, kp: usize, scratch: &mut Vec<u16>) {
    let mp = m.next_multiple_of(BLOCK);
    if scratch.len() < mp * kp {
        scratch.resize(mp * kp, 0);
    }
    // One task per 16-row block: 16 x kp values.
    scratch[..mp * kp]
        .par_chunks_mut(TILE * kp)
        .enumerate()
        .for_each(|(block, tiles)| {
            let rows: [&[f32]; TILE] = std::array::from_fn(|r| {
                let i = block * TILE + r;
                if i < m {
                    row(i)
                } else {
                    &[][..]
                }
            });
            round_block(&rows, tiles);
        });
}

crate::simd::multiversion! {
    /// One 16-row block of [`round_rows`]: `rows` (shorter rows padded with zeros) into its
    /// tiles. A function of its own (a [`vectorised`] closure here was left un-inlined, so
    /// scalar): the rounding runs 16 lanes wide.
    fn round_block(rows: &[&[f32]; TILE], tiles: &mut [u16]) {
        for (r, row) in rows.iter().enumerate() {
            for (kb, tile) in tiles.chunks_exact_mut(PANEL_BLOCK).enumerate() {
                let dst = &mut tile[r * K_BLOCK..(r + 1) * K_BLOCK];
                let start = (kb * K_BLOCK).min(row.len());
                let src = &row[start..(start + K_BLOCK).min(row.len())];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = bf16_bits(s);
                }
                dst[src.len()..].fill(0);
            }
        }
    }
}

/// The [`Level::F32`] path: `a` rounded, then an f32 product on the `gemm` crate.
fn wide_product(
    a: &[f32],
    a_stride: usize,
    m: usize,
    b: &PackedRhs,
    out: &mut [f32],
    out_stride: usize,
    accumulate: bool,
) {
    let (n, k) = (b.n, b.k);
    let rounded: Vec<f32> = vectorised(|| {
        (0..m)
            .flat_map(|i| a[i * a_stride..i * a_stride + k].iter().map(|&v| round_bf16(v)))
            .collect()
    });
    let threads = if m * n * k >= PARALLEL_MIN_MULTIPLY_ADDS {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `rounded` is m x k and `b.wide` n x k (row-major, checked at packing); `out` holds m
    // rows of `out_stride` >= n (asserted by the caller) and aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            accumulate,
            rounded.as_ptr(),
            1,
            k as isize,
            b.wide.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            threads,
        );
    }
}

/// Where one 32 x 32 kernel call writes.
struct OutBlock {
    ptr: *mut f32,
    stride: usize,
    /// Valid rows and columns (32 except at the edges).
    rows: usize,
    cols: usize,
    /// The block's bias values and residual block (same stride), or null: added once, with the
    /// first chunk of `k`.
    bias: *const f32,
    residual: *const f32,
}

impl OutBlock {
    fn has_terms(&self) -> bool {
        !self.bias.is_null() || !self.residual.is_null()
    }
}

/// What one 32 x 32 kernel call reads: `k_count` consecutive 32-deep tiles of two 16-row blocks
/// of `a` and of two 16-column panels of `b`, the second block (panel) `tile_stride` elements
/// after the first.
#[derive(Clone, Copy)]
struct Operands {
    a: *const u16,
    panel: *const u16,
    tile_stride: usize,
    k_count: usize,
}

/// `k` is walked in chunks of this many 32-deep steps, so that the panel pair of `b` a chunk
/// reads (32 x 512 bf16, 32 KiB) stays in L1 while the task's row blocks of `a` pass under it.
const K_CHUNK_BLOCKS: usize = 16;

/// The bf16 levels: tasks of [`ROWS_PER_TASK`] x [`COLUMNS_PER_TASK`] outputs, each a loop of
/// 32 x 32 kernel calls over chunks of `k` (outermost), panel pairs of `b`, then row blocks of
/// `a`; every chunk after the first adds onto the outputs of the previous one.
fn tiled_product(
    a: &[u16],
    kp: usize,
    m: usize,
    b: &PackedRhs,
    (out, out_stride): (&mut [f32], usize),
    accumulate: bool,
    terms: Terms,
) {
    let n = b.n;
    let k_blocks = kp / K_BLOCK;
    let tile_stride = k_blocks * PANEL_BLOCK;
    let (row_tasks, col_tasks) = (m.div_ceil(ROWS_PER_TASK), n.div_ceil(COLUMNS_PER_TASK));
    let out_ptr = SharedMut(out.as_mut_ptr());
    let level = b.level;
    let task = |t: usize| {
        let (rt, ct) = (t / col_tasks, t % col_tasks);
        let rows = rt * ROWS_PER_TASK..((rt + 1) * ROWS_PER_TASK).min(m);
        let cols = ct * COLUMNS_PER_TASK..((ct + 1) * COLUMNS_PER_TASK).min(n);
        let kernel_blocks = |kernel: &mut dyn FnMut(Operands, OutBlock, bool)| {
            for k0 in (0..k_blocks).step_by(K_CHUNK_BLOCKS) {
                let k_count = K_CHUNK_BLOCKS.min(k_blocks - k0);
                let onto = accumulate || k0 > 0;
                for j in cols.clone().step_by(BLOCK) {
                    let panel = b.vnni[(j / TILE) * tile_stride + k0 * PANEL_BLOCK..].as_ptr();
                    for i in rows.clone().step_by(BLOCK) {
                        let operands = Operands {
                            a: a[i * kp + k0 * PANEL_BLOCK..].as_ptr(),
                            panel,
                            tile_stride,
                            k_count,
                        };
                        let first = k0 == 0;
                        let block = OutBlock {
                            // SAFETY (of the offset): i < m and j < n, inside `out` (asserted
                            // m x n with `out_stride`).
                            ptr: unsafe { out_ptr.ptr().add(i * out_stride + j) },
                            stride: out_stride,
                            rows: BLOCK.min(m - i),
                            cols: BLOCK.min(n - j),
                            bias: match terms.bias {
                                Some(bias) if first => bias[j..].as_ptr(),
                                _ => std::ptr::null(),
                            },
                            residual: match terms.residual {
                                Some(residual) if first => residual[i * out_stride + j..].as_ptr(),
                                _ => std::ptr::null(),
                            },
                        };
                        kernel(operands, block, onto);
                    }
                }
            }
        };
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Amx => {
                // SAFETY: the level is AMX only where CPUID reports it and Linux granted the
                // tile state; the tile loads stay inside `a` (rows padded to 32, `kp` deep) and
                // the panel pair (n padded to 32); `OutBlock` bounds the writes, and each task
                // writes its own rows x columns of `out`.
                unsafe {
                    amx::configure();
                    kernel_blocks(&mut |operands, block, onto| amx::block(operands, block, onto));
                    amx::release();
                }
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Bf16 => {
                // SAFETY: as above, for a CPU with AVX512-BF16 (checked by `Level::detected`).
                kernel_blocks(&mut |operands, block, onto| unsafe { avx512::block(operands, block, onto) });
            }
            _ => unreachable!("bf16 kernels on a CPU without them (packing caps the level)"),
        }
    };
    let tasks = row_tasks * col_tasks;
    if m * n * kp >= PARALLEL_MIN_MULTIPLY_ADDS && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// Writes a 32 x 32 block computed in `tmp` (row stride 32) to its place in `out`, plus its bias
/// and residual terms, onto what `out` holds when `accumulate`.
///
/// # Safety
/// `block` must describe writable memory, and its terms readable memory of the same shape;
/// `tmp` must hold the block's valid rows x columns, initialised (the rest is not read).
#[cfg(target_arch = "x86_64")]
// Inlined so that it is compiled with the calling kernel's target features (AVX-512 in
// `avx512::block`), with its branches taken once per row, not once per value.
#[inline(always)]
unsafe fn write_block(tmp: *const f32, block: &OutBlock, accumulate: bool) {
    let cols = block.cols;
    let bias = (!block.bias.is_null()).then(|| std::slice::from_raw_parts(block.bias, cols));
    for r in 0..block.rows {
        let dst = std::slice::from_raw_parts_mut(block.ptr.add(r * block.stride), cols);
        let src = std::slice::from_raw_parts(tmp.add(r * BLOCK), cols);
        let residual =
            (!block.residual.is_null()).then(|| std::slice::from_raw_parts(block.residual.add(r * block.stride), cols));
        match (bias, residual, accumulate) {
            (None, None, false) => dst.copy_from_slice(src),
            (None, None, true) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
            _ => {
                for c in 0..cols {
                    let mut v = src[c];
                    if let Some(bias) = bias {
                        v += bias[c];
                    }
                    if let Some(residual) = residual {
                        v += residual[c];
                    }
                    dst[c] = if accumulate { dst[c] + v } else { v };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod amx {
    //! AMX-BF16 through inline assembly (the tile intrinsics are not stable Rust). The kernel
    //! names tiles 0-3 (the 2 x 2 accumulators), 4-5 (two 16-row tiles of `a`) and 6-7 (two
    //! 16-column tiles of `b`) in its instructions; nothing else in the process uses tiles.

    use std::arch::asm;

    use super::{write_block, Operands, OutBlock, BLOCK, PANEL_BLOCK, TILE};

    /// Asks Linux for the AMX tile-data state (once per process; the grant covers all threads).
    pub(super) fn request_permission() -> bool {
        #[cfg(target_os = "linux")]
        {
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only changes the process's permitted
            // xsave features.
            let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
            if rc != 0 {
                tracing::debug!(
                    "AMX tile data not granted by the kernel: {}",
                    std::io::Error::last_os_error()
                );
            }
            rc == 0
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// `ldtilecfg`'s 64-byte operand: palette 1, eight tiles of 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        column_bytes: [u16; 16],
        rows: [u8; 16],
    }

    /// Configures this thread's tiles.
    ///
    /// # Safety
    /// The CPU has AMX and the process holds the tile-data permission.
    pub(super) unsafe fn configure() {
        // Tiles 8-15 do not exist in palette 1: their entries must stay zero.
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            column_bytes: [0; 16],
            rows: [0; 16],
        };
        cfg.column_bytes[..8].fill(64);
        cfg.rows[..8].fill(TILE as u8);
        asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
    }

    /// Returns the tiles to their initial state (so the OS need not save them).
    ///
    /// # Safety
    /// As [`configure`].
    pub(super) unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    macro_rules! tile_load {
        ($tile:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tileloadd tmm", $tile, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride,
                 options(nostack, readonly))
        };
    }
    macro_rules! tile_store {
        ($tile:literal, $ptr:expr, $stride:expr) => {
            asm!(concat!("tilestored [{p} + {s}*1], tmm", $tile), p = in(reg) $ptr, s = in(reg) $stride,
                 options(nostack))
        };
    }

    /// One 32 x 32 block: `out [+]= a[32 rows] · (two panels of b)ᵀ` over `k_count` steps.
    ///
    /// # Safety
    /// Tiles configured; `operands` inside the packed `a` and `b`; `block` writable.
    pub(super) unsafe fn block(operands: Operands, block: OutBlock, accumulate: bool) {
        let full = block.rows == BLOCK && block.cols == BLOCK;
        let out_bytes = block.stride * 4;
        let c = block.ptr;
        if full && accumulate {
            tile_load!("0", c, out_bytes);
            tile_load!("1", c.add(TILE), out_bytes);
            tile_load!("2", c.add(TILE * block.stride), out_bytes);
            tile_load!("3", c.add(TILE * block.stride + TILE), out_bytes);
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        let Operands {
            a,
            panel,
            tile_stride,
            k_count,
        } = operands;
        let (a1, panel1) = (a.add(tile_stride), panel.add(tile_stride));
        for kb in 0..k_count {
            tile_load!("4", a.add(kb * PANEL_BLOCK), 64usize);
            tile_load!("5", a1.add(kb * PANEL_BLOCK), 64usize);
            tile_load!("6", panel.add(kb * PANEL_BLOCK), 64usize);
            tile_load!("7", panel1.add(kb * PANEL_BLOCK), 64usize);
            asm!(
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                options(nostack, nomem)
            );
        }
        if full && !block.has_terms() {
            tile_store!("0", c, out_bytes);
            tile_store!("1", c.add(TILE), out_bytes);
            tile_store!("2", c.add(TILE * block.stride), out_bytes);
            tile_store!("3", c.add(TILE * block.stride + TILE), out_bytes);
        } else {
            let mut tmp = [0f32; BLOCK * BLOCK];
            let t = tmp.as_mut_ptr();
            tile_store!("0", t, BLOCK * 4);
            tile_store!("1", t.add(TILE), BLOCK * 4);
            tile_store!("2", t.add(TILE * BLOCK), BLOCK * 4);
            tile_store!("3", t.add(TILE * BLOCK + TILE), BLOCK * 4);
            // What was loaded from `out` is in the tiles already.
            write_block(tmp.as_ptr(), &block, accumulate && !full);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! AVX512-BF16: `vdpbf16ps` adds, in each of 16 f32 lanes (one output column), the two
    //! products of a broadcast pair of `a` values with that column's pair of `b` values, which
    //! is exactly one row of a packed panel block.

    use std::arch::x86_64::*;

    use super::{write_block, Operands, OutBlock, BLOCK, K_BLOCK, PANEL_BLOCK, TILE};

    /// Rows per register block: 8 rows x 2 panels = 16 accumulators of the 32 registers.
    const ROWS: usize = 8;

    /// Packs one panel (up to 16 rows; missing ones are zero columns) of [`super::PackedRhs`]
    /// from f16 rows and their factors. For each 32-value step: each row's values are widened,
    /// scaled and rounded to 16 bf16 pairs (`vcvtne2ps2bf16`, to nearest even), one register
    /// per row; the 16 x 16 pairs are transposed in registers, so that each register holds one
    /// pair of all 16 rows, which is one 64-byte row of the panel block.
    ///
    /// # Safety
    /// The CPU has AVX512-BF16; each row holds at least `k_blocks * 32` f16 values and `out` is
    /// `k_blocks * 512` long.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_f16_panel(rows: &[(&[u8], f32)], k_blocks: usize, out: &mut [u16]) {
        debug_assert!(rows.len() <= TILE && out.len() == k_blocks * PANEL_BLOCK);
        let mut pairs = [_mm512_setzero_si512(); TILE];
        for kb in 0..k_blocks {
            for (column, slot) in pairs.iter_mut().enumerate() {
                *slot = match rows.get(column) {
                    Some(&(bytes, scale)) => {
                        let factor = _mm512_set1_ps(scale);
                        let at = bytes.as_ptr().add(kb * K_BLOCK * 2);
                        let lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(at as *const __m256i)), factor);
                        let hi = _mm512_mul_ps(
                            _mm512_cvtph_ps(_mm256_loadu_si256(at.add(TILE * 2) as *const __m256i)),
                            factor,
                        );
                        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
                    }
                    None => _mm512_setzero_si512(),
                };
            }
            let block = out.as_mut_ptr().add(kb * PANEL_BLOCK);
            for (p, row) in transpose_16x16(&pairs).iter().enumerate() {
                _mm512_storeu_si512(block.add(p * 2 * TILE) as *mut __m512i, *row);
            }
        }
    }

    /// The 16 x 16 transpose of 32-bit elements: element `j` of input `i` becomes element `i`
    /// of output `j`. Pairs of inputs are interleaved by 32 then 64 bits (each 128-bit lane then
    /// holds one column of four rows), and the lanes are gathered in two 128-bit shuffles.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose_16x16(r: &[__m512i; TILE]) -> [__m512i; TILE] {
        let mut a = [_mm512_setzero_si512(); TILE];
        for i in 0..TILE / 2 {
            a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // b[4g + c], lane L: column 4L + c of rows 4g..4g + 4.
        let mut b = [_mm512_setzero_si512(); TILE];
        for g in 0..TILE / 4 {
            b[4 * g] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
            b[4 * g + 1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
            b[4 * g + 2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
            b[4 * g + 3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
        }
        let mut out = [_mm512_setzero_si512(); TILE];
        for c in 0..4 {
            let (p, q, r, s) = (b[c], b[4 + c], b[8 + c], b[12 + c]);
            let low = (_mm512_shuffle_i32x4::<0x44>(p, q), _mm512_shuffle_i32x4::<0x44>(r, s));
            let high = (_mm512_shuffle_i32x4::<0xee>(p, q), _mm512_shuffle_i32x4::<0xee>(r, s));
            out[c] = _mm512_shuffle_i32x4::<0x88>(low.0, low.1);
            out[4 + c] = _mm512_shuffle_i32x4::<0xdd>(low.0, low.1);
            out[8 + c] = _mm512_shuffle_i32x4::<0x88>(high.0, high.1);
            out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(high.0, high.1);
        }
        out
    }

    /// One 32 x 32 block, as [`super::amx::block`].
    ///
    /// # Safety
    /// The CPU has AVX512-BF16; operands as for the AMX kernel.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn block(operands: Operands, block: OutBlock, accumulate: bool) {
        let Operands {
            a,
            panel,
            tile_stride,
            k_count,
        } = operands;
        // A whole block written over (no terms, nothing to add onto) goes straight to `out`;
        // others through `tmp`. Every value is stored below before `write_block` reads it; not
        // zeroing `tmp` saves a 4 KiB memset per block (a few percent of a 480-deep product).
        let mut tmp = std::mem::MaybeUninit::<[f32; BLOCK * BLOCK]>::uninit();
        let direct = block.rows == BLOCK && block.cols == BLOCK && !accumulate && !block.has_terms();
        let (out, out_stride) = if direct {
            (block.ptr, block.stride)
        } else {
            (tmp.as_mut_ptr() as *mut f32, BLOCK)
        };
        let panel1 = panel.add(tile_stride);
        // Row groups past the block's valid rows (padding of a short `a`) are not computed:
        // `write_block` reads only the valid rows of `tmp`.
        for r0 in (0..block.rows.next_multiple_of(ROWS)).step_by(ROWS) {
            // The 8 rows lie in one 16-row block of `a`.
            let rows = a.add((r0 / TILE) * tile_stride + (r0 % TILE) * K_BLOCK);
            let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
            for kb in 0..k_count {
                for p in 0..K_BLOCK / 2 {
                    let b0: __m512bh = std::mem::transmute(_mm512_loadu_epi16(
                        panel.add(kb * PANEL_BLOCK + p * 2 * TILE) as *const i16,
                    ));
                    let b1: __m512bh = std::mem::transmute(_mm512_loadu_epi16(
                        panel1.add(kb * PANEL_BLOCK + p * 2 * TILE) as *const i16,
                    ));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let at = kb * PANEL_BLOCK + r * K_BLOCK + 2 * p;
                        let pair = (rows.add(at) as *const i32).read_unaligned();
                        let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add((r0 + r) * out_stride), acc[0]);
                _mm512_storeu_ps(out.add((r0 + r) * out_stride + TILE), acc[1]);
            }
        }
        if !direct {
            // SAFETY: the loop above stored the block's valid rows (at least), all BLOCK values
            // of each, and `write_block` reads no others.
            write_block(out, &block, accumulate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    /// f64 reference of round(a) · round(b)ᵀ, and of sum |a||b| (the scale of rounding error).
    fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
        let mut exact = vec![0f64; m * n];
        let mut scale = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    let (x, y) = (round_bf16(a[i * k + l]) as f64, round_bf16(b[j * k + l]) as f64);
                    exact[i * n + j] += x * y;
                    scale[i * n + j] += (x * y).abs();
                }
            }
        }
        (exact, scale)
    }

    fn levels() -> Vec<Level> {
        [Level::F32, Level::Avx512Bf16, Level::Amx]
            .into_iter()
            .filter(|&l| l <= Level::detected())
            .collect()
    }

    #[test]
    // The ties are exact binary fractions; clippy reads their digits as excess precision.
    #[allow(clippy::excessive_precision)]
    fn rounding_is_to_nearest_even_like_the_half_crate() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.00390625,
            1.01171875,
            3.3,
            -2.7e-20,
            65504.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-42,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]
        .into_iter()
        .chain(random(1000, 3))
        {
            assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x}");
        }
        assert!(round_bf16(f32::NAN).is_nan());
        // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    /// Every level, on shapes with edges in m, n and k and both accumulation modes, equals the f64
    /// sum of the same bf16-rounded products to f32 summation error: |err| <= 1e-5 * sum |a_l b_l|
    /// (f32 sums of k <= 1000 terms; about 2^-24 * k in the worst case, far less in practice).
    #[test]
    fn every_level_matches_the_f64_reference_of_the_rounded_operands() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, n, k) in [
            (1, 1, 1),
            (5, 7, 3),
            (32, 32, 32),
            (33, 47, 65),
            (130, 300, 480),
            (64, 96, 1000),
        ] {
            let a = random(m * k, 1);
            let b = random(n * k, 2);
            let (exact, scale) = reference(&a, &b, m, n, k);
            for level in levels() {
                let packed = PackedRhs::pack_at(&b, n, k, level);
                assert_eq!(packed.level(), level);
                for accumulate in [false, true] {
                    let mut out = vec![if accumulate { 0.5 } else { f32::NAN }; m * n];
                    pool.install(|| matmul_abt(&a, m, &packed, &mut out, accumulate));
                    for idx in 0..m * n {
                        let want = exact[idx] + if accumulate { 0.5 } else { 0.0 };
                        let err = (out[idx] as f64 - want).abs();
                        assert!(
                            err <= 1e-5 * scale[idx] + 1e-6,
                            "{level:?} {m}x{n}x{k} acc={accumulate} at {idx}: {} vs {want}",
                            out[idx]
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // i, j index the output, the reference and the bias alike
    fn bias_and_residual_are_added_at_every_level() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // 1100 deep: three chunks of k, the terms added once.
        for (m, n, k) in [(3, 5, 7), (70, 45, 1100), (64, 64, 480)] {
            let a = random(m * k, 11);
            let b = random(n * k, 12);
            let bias = random(n, 13);
            let residual = random(m * n, 14);
            let (exact, scale) = reference(&a, &b, m, n, k);
            for level in levels() {
                let packed = PackedRhs::pack_at(&b, n, k, level);
                for with_residual in [false, true] {
                    let mut out = vec![f32::NAN; m * n];
                    let residual = with_residual.then_some(residual.as_slice());
                    pool.install(|| matmul_abt_bias(&a, m, &packed, &bias, residual, &mut out));
                    for i in 0..m {
                        for j in 0..n {
                            let idx = i * n + j;
                            let want = exact[idx] + bias[j] as f64 + residual.map_or(0.0, |r| r[idx] as f64);
                            let err = (out[idx] as f64 - want).abs();
                            assert!(
                                err <= 1e-5 * (scale[idx] + 2.0) + 1e-6,
                                "{level:?} {m}x{n}x{k} residual={with_residual} at ({i}, {j}): {} vs {want}",
                                out[idx]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strided_operands_touch_only_their_columns() {
        let (m, n, k) = (40, 20, 50);
        let (a_stride, out_stride) = (k + 13, n + 9);
        let a = random(m * a_stride, 5);
        let b = random(n * k, 6);
        let dense: Vec<f32> = (0..m)
            .flat_map(|i| a[i * a_stride..i * a_stride + k].to_vec())
            .collect();
        for level in levels() {
            let packed = PackedRhs::pack_at(&b, n, k, level);
            let mut want = vec![0f32; m * n];
            matmul_abt(&dense, m, &packed, &mut want, false);
            let mut out = vec![-7f32; m * out_stride];
            matmul_abt_strided((&a, a_stride), m, &packed, (&mut out, out_stride), false);
            for i in 0..m {
                assert_eq!(
                    &out[i * out_stride..i * out_stride + n],
                    &want[i * n..(i + 1) * n],
                    "{level:?}"
                );
                assert!(out[i * out_stride + n..(i + 1) * out_stride].iter().all(|&v| v == -7.0));
            }
        }
    }

    #[test]
    fn overlapping_rows_of_a_are_sliding_windows() {
        // Row i = a[3i .. 3i + k]: a convolution's windows over rows of 3 channels.
        let (m, n, k, stride) = (30, 17, 21, 3);
        let a = random((m - 1) * stride + k, 8);
        let b = random(n * k, 9);
        let windows: Vec<f32> = (0..m).flat_map(|i| a[i * stride..i * stride + k].to_vec()).collect();
        for level in levels() {
            let packed = PackedRhs::pack_at(&b, n, k, level);
            let mut want = vec![0f32; m * n];
            matmul_abt(&windows, m, &packed, &mut want, false);
            let mut out = vec![0f32; m * n];
            matmul_abt_strided((&a, stride), m, &packed, (&mut out, n), false);
            assert_eq!(out, want, "{level:?}");
        }
    }

    #[test]
    fn the_error_against_f32_products_is_that_of_bf16_rounding() {
        // What a user sees: against the unrounded f32 product, the error is bf16's (8-bit
        // mantissa: relative 2^-9 per operand), i.e. about 2^-8 * sum |a_l b_l| at worst and
        // ~ sqrt(k) times less on average for random signs.
        let (m, n, k) = (64, 64, 256);
        let a = random(m * k, 8);
        let b = random(n * k, 9);
        let mut out = vec![0f32; m * n];
        matmul_abt(&a, m, &PackedRhs::pack(&b, n, k), &mut out, false);
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut scale) = (0f64, 0f64);
                for l in 0..k {
                    exact += a[i * k + l] as f64 * b[j * k + l] as f64;
                    scale += (a[i * k + l] as f64 * b[j * k + l] as f64).abs();
                }
                assert!((out[i * n + j] as f64 - exact).abs() <= scale / 256.0);
            }
        }
    }

    #[test]
    fn f16_rows_pack_like_their_scaled_f32_values_at_every_size_and_on_reuse() {
        let mut reused = PackedRhs::empty();
        // Larger, then smaller packings into one buffer: nothing of the earlier one may show.
        for (n, k) in [(40, 256), (1, 32), (17, 64), (15, 256), (33, 40), (3, 7)] {
            let values = random(n * k, n as u64);
            let bytes: Vec<Vec<u8>> = values
                .chunks(k)
                .map(|row| row.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect())
                .collect();
            let scales: Vec<f32> = (0..n).map(|j| 0.5 + j as f32 / 7.0).collect();
            let rows: Vec<(&[u8], f32)> = bytes.iter().map(|b| b.as_slice()).zip(scales.iter().copied()).collect();
            let scaled: Vec<f32> = values
                .chunks(k)
                .zip(&scales)
                .flat_map(|(row, &s)| row.iter().map(move |&v| half::f16::from_f32(v).to_f32() * s))
                .collect();
            let want_packed = PackedRhs::pack(&scaled, n, k);
            reused.pack_f16_rows_into(&rows, k);
            assert_eq!((reused.n(), reused.k(), reused.level()), (n, k, want_packed.level()));
            let m = 21;
            let a = random(m * k, 99);
            let (mut want, mut got) = (vec![0f32; m * n], vec![f32::NAN; m * n]);
            matmul_abt(&a, m, &want_packed, &mut want, false);
            matmul_abt(&a, m, &reused, &mut got, false);
            assert_eq!(got, want, "{n} x {k}");
        }
    }

    #[test]
    fn gathered_rows_multiply_like_their_contiguous_copy() {
        let (n, k) = (37, 70);
        let b = random(n * k, 21);
        let pool = random(50 * k, 22);
        let picks = [3usize, 49, 0, 3, 17, 28, 41, 5, 9, 33, 12, 44, 1, 2, 30, 31, 8, 19];
        for level in levels() {
            let packed = PackedRhs::pack_at(&b, n, k, level);
            for m in [0, 1, 16, picks.len()] {
                let rows: Vec<&[f32]> = picks[..m].iter().map(|&i| &pool[i * k..(i + 1) * k]).collect();
                let mut want = vec![0f32; m * n];
                matmul_abt(&rows.concat(), m, &packed, &mut want, false);
                let mut got = vec![f32::NAN; m * n];
                matmul_abt_rows(&rows, &packed, &mut got);
                assert_eq!(got, want, "{level:?}, {m} rows");
            }
        }
    }

    #[test]
    fn level_names_parse_back() {
        for level in [Level::F32, Level::Avx512Bf16, Level::Amx] {
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        assert_eq!(Level::parse("fp8"), None);
    }
}
