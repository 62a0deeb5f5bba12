//! Overlapping windows for sequences longer than a model takes in one pass.
//!
//! Any [`crate::embedder::Embedder`] whose spec has `max_residues` routes its
//! batches through [`embed_windowed`]: a sequence that fits is embedded whole;
//! a longer one is cut into equally long windows of `max_residues`, evenly
//! spaced so that neighbours overlap by at least a quarter window, each window
//! is embedded as if it were a sequence of its own, and every residue's
//! embedding is the mean over the windows that contain it. Nothing is ever
//! truncated, and the policy is logged when it applies.

use std::ops::Range;

use crate::embedder::{EmbedError, ResidueMatrix};

/// How sequences longer than a model's limit are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// Residues per window (the model's limit).
    pub max_len: usize,
    /// Least number of residues shared by neighbouring windows.
    pub min_overlap: usize,
}

impl WindowPolicy {
    /// Windows of `max_len` residues overlapping by at least `max_len / 4`.
    pub fn new(max_len: usize) -> Self {
        assert!(max_len > 0, "a window holds at least one residue");
        WindowPolicy {
            max_len,
            min_overlap: max_len / 4,
        }
    }

    /// The windows covering `0..len`: one `0..len` when it fits, else `n` windows of exactly
    /// `max_len` with starts spread evenly from 0 to `len - max_len`.
    pub fn windows(&self, len: usize) -> Vec<Range<usize>> {
        if len <= self.max_len {
            #[allow(clippy::single_range_in_vec_init)] // one window covering the whole sequence
            return vec![0..len];
        }
        let stride_max = self.max_len - self.min_overlap.min(self.max_len - 1);
        let span = len - self.max_len;
        let gaps = span.div_ceil(stride_max);
        (0..=gaps)
            .map(|i| {
                let start = (i * span + gaps / 2) / gaps;
                start..start + self.max_len
            })
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "sequences over {} residues are embedded in overlapping {}-residue windows \
             (overlap >= {}) averaged per residue, never truncated",
            self.max_len, self.max_len, self.min_overlap
        )
    }
}

/// Embeds `batch` with `embed` (which must accept sequences of up to `policy.max_len` residues and
/// return one matrix per input), splitting longer sequences into windows and averaging the
/// overlaps. `embed` is called once with every whole sequence and window together, so it can
/// batch them as it likes.
pub fn embed_windowed<F>(
    batch: &[&str],
    policy: &WindowPolicy,
    model: &str,
    mut embed: F,
) -> Result<Vec<ResidueMatrix>, EmbedError>
where
    F: FnMut(&[&str]) -> Result<Vec<ResidueMatrix>, EmbedError>,
{
    let mut pieces: Vec<&str> = Vec::with_capacity(batch.len());
    // For each input: (index of its first piece, its windows).
    let mut layout: Vec<(usize, Vec<Range<usize>>)> = Vec::with_capacity(batch.len());
    let mut windowed = 0usize;
    for seq in batch {
        let len = seq.len();
        let windows = policy.windows(len);
        if windows.len() > 1 {
            windowed += 1;
            tracing::debug!("{model}: {len}-residue sequence split into windows {windows:?}");
        }
        layout.push((pieces.len(), windows.clone()));
        // Residue strings are ASCII (validated upstream), so byte ranges are residue ranges.
        pieces.extend(windows.iter().map(|w| &seq[w.clone()]));
    }
    if windowed > 0 {
        tracing::info!(
            "{model}: {windowed} sequence(s) longer than {} residues: {}",
            policy.max_len,
            policy.describe()
        );
    }
    let embedded = embed(&pieces)?;
    if embedded.len() != pieces.len() {
        return Err(EmbedError::Model {
            model: model.to_string(),
            message: format!("embedded {} pieces, expected {}", embedded.len(), pieces.len()),
        });
    }
    let mut embedded: Vec<Option<ResidueMatrix>> = embedded.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(batch.len());
    for (seq, (first, windows)) in batch.iter().zip(layout) {
        if windows.len() == 1 {
            out.push(embedded[first].take().expect("each piece used once"));
            continue;
        }
        let len = seq.len();
        let dim = embedded[first].as_ref().map_or(0, |m| m.dim);
        let mut sum = vec![0f32; len * dim];
        let mut count = vec![0u32; len];
        for (k, w) in windows.iter().enumerate() {
            let m = embedded[first + k].take().expect("each piece used once");
            if m.len != w.len() || m.dim != dim {
                return Err(EmbedError::Model {
                    model: model.to_string(),
                    message: format!(
                        "window {w:?} came back as {}x{}, expected {}x{dim}",
                        m.len,
                        m.dim,
                        w.len()
                    ),
                });
            }
            for (r, pos) in w.clone().enumerate() {
                for (s, v) in sum[pos * dim..(pos + 1) * dim].iter_mut().zip(m.row(r)) {
                    *s += v;
                }
                count[pos] += 1;
            }
        }
        for (pos, &c) in count.iter().enumerate() {
            let inv = 1.0 / c as f32;
            sum[pos * dim..(pos + 1) * dim].iter_mut().for_each(|v| *v *= inv);
        }
        out.push(ResidueMatrix { len, dim, data: sum });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cover(policy: &WindowPolicy, len: usize) {
        let w = policy.windows(len);
        assert_eq!(w[0].start, 0);
        assert_eq!(w.last().unwrap().end, len);
        for pair in w.windows(2) {
            assert!(pair[1].start > pair[0].start);
            // Rounding the evenly spread starts may cost one residue of overlap.
            assert!(
                pair[0].end >= pair[1].start + policy.min_overlap.saturating_sub(1),
                "{w:?}"
            );
        }
        for r in &w {
            assert!(r.len() <= policy.max_len);
        }
    }

    #[test]
    fn windows_cover_with_overlap() {
        let p = WindowPolicy::new(1022);
        assert_eq!(p.windows(10), vec![0..10]);
        assert_eq!(p.windows(1022), vec![0..1022]);
        assert_eq!(p.windows(1023).len(), 2);
        for len in [1023, 1500, 2500, 5000, 35213] {
            check_cover(&p, len);
        }
        let small = WindowPolicy::new(5);
        for len in 6..60 {
            check_cover(&small, len);
        }
        check_cover(&WindowPolicy::new(1), 7);
    }

    #[test]
    fn overlaps_are_averaged() {
        // A fake "model" whose residue embedding is (position-in-window, 1): overlapping residues
        // must get the mean of their positions in the windows that hold them.
        let policy = WindowPolicy {
            max_len: 4,
            min_overlap: 2,
        };
        let seq = "ABCDEFG";
        let out = embed_windowed(&[seq, "AB"], &policy, "test", |pieces| {
            Ok(pieces
                .iter()
                .map(|p| ResidueMatrix {
                    len: p.len(),
                    dim: 2,
                    data: (0..p.len()).flat_map(|i| [i as f32, 1.0]).collect(),
                })
                .collect())
        })
        .unwrap();
        let windows = policy.windows(seq.len());
        assert_eq!(windows, vec![0..4, 2..6, 3..7]);
        let m = &out[0];
        assert_eq!(m.len, 7);
        // Residue 3 is at window positions 3, 1, 0.
        assert_eq!(m.row(3), &[4.0 / 3.0, 1.0]);
        assert_eq!(m.row(0), &[0.0, 1.0]);
        assert_eq!(m.row(6), &[3.0, 1.0]);
        assert_eq!(out[1].len, 2);
    }
}
