//! protfam: Pfam family annotation of proteins by transfer learning.
//!
//! Raw sequences go through a protein language model ([`models`]) that turns each
//! one into a per-protein vector (the mean of its residue embeddings); vectors are
//! kept in a content-addressed on-disk [`cache`]; simple [`classify`] models
//! (1-NN, kNN ensembles, MLPs) trained on them predict the family, and
//! [`evaluate`] measures them against HMM and BLAST [`baseline`]s.

pub mod annotate;
pub mod atomic;
pub mod baseline;
pub mod cache;
pub mod classifier;
pub mod classify;
pub mod dataset;
pub mod domains;
pub mod embedder;
pub mod experiment;
pub mod file_error;
#[doc(hidden)]
pub mod fusion;
pub mod fuzzing;
pub mod gemm;
pub mod io;
pub mod lowp;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod report;
pub mod residue;
pub mod shard;
pub mod simd;
pub mod suggest;
pub mod vectors;

/// A cause from a library below (safetensors, JSON, Candle), kept whole as an error's `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
