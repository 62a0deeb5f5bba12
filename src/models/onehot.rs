//! The paper's no-transfer baseline input: a fixed-length one-hot encoding of the
//! raw sequence, flattened into one vector for the baseline MLP.
//!
//! 21 symbols per position: the 20 standard amino acids in alphabetical order
//! (`ACDEFGHIKLMNPQRSTVWY`, columns 0-19) and column 20 for everything else (`X`
//! and the ambiguous or rare letters `B`, `Z`, `J`, `U`, `O`), so no residue is
//! silently dropped. A sequence longer than the length parameter keeps its first
//! `length` residues; a shorter one is padded with all-zero rows, so padding is
//! distinguishable from any residue. The per-protein vector is the `length x 21`
//! matrix flattened row by row ([`Pooling::Flatten`]).
//!
//! Registry names: `onehot` is [`DEFAULT_LENGTH`] positions; `onehot<L>` (e.g.
//! `onehot256`) any other length. 512 positions cover 98.8% of the bundled
//! dataset's domains (13..1,185 residues, median 134) whole, while 16k training
//! vectors stay at about 0.7 GB of f32.

use sha2::{Digest, Sha256};

use super::{LoadOptions, ModelError};
use crate::embedder::{EmbedError, Embedder, EmbedderSpec, Pooling, ResidueMatrix};

/// The 20 standard amino acids, in column order.
pub const AMINO_ACIDS: &[u8; 20] = b"ACDEFGHIKLMNPQRSTVWY";
/// Symbols per position: the 20 amino acids plus "other".
pub const SYMBOLS: usize = 21;
/// Positions of the `onehot` registry entry.
pub const DEFAULT_LENGTH: usize = 512;
/// Longest length accepted (keeps a single vector under ~4 MB).
pub const MAX_LENGTH: usize = 50_000;

/// Column of a residue letter (case-insensitive): 0-19 for the standard amino acids, 20 otherwise.
pub fn column(residue: u8) -> usize {
    let r = residue.to_ascii_uppercase();
    AMINO_ACIDS.iter().position(|&a| a == r).unwrap_or(SYMBOLS - 1)
}

/// The length a registry name asks for: `onehot` -> [`DEFAULT_LENGTH`],
/// `onehot<L>` -> `L`; `None` if `name` is not a one-hot name.
pub fn parse_name(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("onehot")?;
    if rest.is_empty() {
        return Some(DEFAULT_LENGTH);
    }
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Fixed-length one-hot encoder.
pub struct OneHot {
    length: usize,
    spec: EmbedderSpec,
}

impl OneHot {
    pub fn new(name: &str, length: usize) -> Result<Self, ModelError> {
        if length == 0 || length > MAX_LENGTH {
            return Err(ModelError::Other(format!(
                "{name}: one-hot length {length} is out of range 1..={MAX_LENGTH}"
            )));
        }
        // Weightless: the digest covers everything that determines the numbers.
        let settings = format!(
            "onehot;symbols={};other=20;length={length};truncate=keep-first;pad=zero-rows",
            std::str::from_utf8(AMINO_ACIDS).expect("ascii")
        );
        let spec = EmbedderSpec {
            name: name.to_string(),
            architecture: "onehot".into(),
            weights_digest: hex::encode(Sha256::digest(settings.as_bytes())),
            dim: length * SYMBOLS,
            layer: None,
            pooling: Pooling::Flatten,
            max_residues: None,
            dtype: "f32".into(),
        };
        Ok(OneHot { length, spec })
    }

    pub fn length(&self) -> usize {
        self.length
    }

    /// The flattened `length x 21` encoding of one sequence.
    pub fn encode(&self, sequence: &str) -> Vec<f32> {
        let mut out = vec![0f32; self.length * SYMBOLS];
        for (p, &r) in sequence.as_bytes().iter().take(self.length).enumerate() {
            out[p * SYMBOLS + column(r)] = 1.0;
        }
        out
    }
}

impl Embedder for OneHot {
    fn spec(&self) -> &EmbedderSpec {
        &self.spec
    }

    /// One 21-wide row per residue kept (at most `length`), no padding rows.
    fn embed_residues(&self, batch: &[&str]) -> Result<Vec<ResidueMatrix>, EmbedError> {
        Ok(batch
            .iter()
            .map(|seq| {
                let len = seq.len().min(self.length);
                let mut data = self.encode(seq);
                data.truncate(len * SYMBOLS);
                ResidueMatrix {
                    len,
                    dim: SYMBOLS,
                    data,
                }
            })
            .collect())
    }

    /// The padded/truncated one-hot matrix, flattened.
    fn embed_pooled(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(batch.iter().map(|seq| self.encode(seq)).collect())
    }

    fn default_batch_tokens(&self) -> usize {
        1 << 16
    }
}

/// A one-hot encoder of `length` positions, registered as `name`.
pub fn load_embedder(name: &str, length: usize, opts: &LoadOptions) -> Result<Box<dyn Embedder>, ModelError> {
    if opts.layer.is_some() {
        return Err(ModelError::Other(format!(
            "{name}: one-hot has no layers; --layer does not apply"
        )));
    }
    Ok(Box::new(OneHot::new(name, length)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_cover_the_alphabet_and_other() {
        assert_eq!(column(b'A'), 0);
        assert_eq!(column(b'Y'), 19);
        assert_eq!(column(b'w'), 18);
        for r in [b'X', b'B', b'Z', b'J', b'U', b'O'] {
            assert_eq!(column(r), 20, "{}", r as char);
        }
    }

    #[test]
    fn pads_with_zero_rows_and_truncates_to_the_first_residues() {
        let enc = OneHot::new("onehot4", 4).unwrap();
        let short = enc.encode("CA");
        assert_eq!(short.len(), 4 * SYMBOLS);
        assert_eq!(short[1], 1.0, "C is column 1");
        assert_eq!(short[SYMBOLS], 1.0, "A is column 0");
        assert!(short[2 * SYMBOLS..].iter().all(|&v| v == 0.0), "padding rows are zero");
        assert_eq!(short.iter().sum::<f32>(), 2.0);

        let long = enc.encode("WWWWYY");
        assert_eq!(long.iter().sum::<f32>(), 4.0, "only the first 4 residues are kept");
        assert!((0..4).all(|p| long[p * SYMBOLS + 18] == 1.0));
    }

    #[test]
    fn embedder_outputs_match_encode() {
        let enc = OneHot::new("onehot", DEFAULT_LENGTH).unwrap();
        assert_eq!(enc.spec().dim, DEFAULT_LENGTH * SYMBOLS);
        assert_eq!(enc.spec().pooling, Pooling::Flatten);
        let pooled = enc.embed_pooled(&["MKX", ""]).unwrap();
        assert_eq!(pooled[0], enc.encode("MKX"));
        assert!(pooled[1].iter().all(|&v| v == 0.0));
        let residues = enc.embed_residues(&["MKX"]).unwrap();
        assert_eq!(residues[0].len, 3);
        assert_eq!(residues[0].row(2)[20], 1.0);
    }

    #[test]
    fn names_and_lengths() {
        assert_eq!(parse_name("onehot"), Some(DEFAULT_LENGTH));
        assert_eq!(parse_name("onehot256"), Some(256));
        assert_eq!(parse_name("onehotx"), None);
        assert_eq!(parse_name("unirep1900"), None);
        assert!(OneHot::new("onehot0", 0).is_err());
        let a = OneHot::new("onehot256", 256).unwrap();
        let b = OneHot::new("onehot512", 512).unwrap();
        assert_ne!(a.spec().weights_digest, b.spec().weights_digest);
    }
}
