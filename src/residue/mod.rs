//! Family classification by residue-level embedding retrieval (`residue-knn`).
//!
//! Mean pooling throws away where in a sequence each signal is. Here every
//! kept residue of every training sequence is stored ([`store`]); each query
//! residue finds its nearest training residues by cosine ([`search`]); their
//! families collect similarity-weighted votes, raised where hits on one
//! training sequence line up on a diagonal ([`score`]); the best candidate
//! training sequences are then aligned to the query ([`align`]); [`classifier`] ties
//! it together behind fit / predict and a saved form that references the
//! store.

pub mod align;
pub mod classifier;
pub mod eval;
pub mod index;
pub mod ivf;
pub mod score;
pub mod search;
pub mod shortlist;
pub mod store;

pub use align::AlignParams;
pub use classifier::{IndexKind, ResidueKnn, ResidueKnnParams, ResiduePrediction};
pub use score::{Aggregate, ScoreParams};
pub use store::{ResidueStore, StoreConfig};

/// Errors of the residue store, search and classifier. Every file error names
/// the file and keeps its cause as the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ResidueError {
    #[error("invalid residue-knn parameter: {0}")]
    InvalidParams(String),
    /// A file of a store, a hits cache or a saved classifier.
    #[error(transparent)]
    File(#[from] crate::file_error::FileError),
    #[error(transparent)]
    Shard(#[from] crate::cache::shard::ShardError),
    #[error(transparent)]
    Vocab(#[from] crate::io::vocab::VocabError),
    #[error(transparent)]
    Embed(#[from] crate::embedder::EmbedError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Data(String),
}
