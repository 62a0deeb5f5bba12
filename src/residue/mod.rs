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
pub mod score;
pub mod search;
pub mod store;

pub use align::AlignParams;
pub use classifier::{IndexKind, ResidueKnn, ResidueKnnParams, ResiduePrediction};
pub use score::{Aggregate, ScoreParams};
pub use store::{ResidueStore, StoreConfig};

use std::path::{Path, PathBuf};

use crate::BoxError;

/// Errors of the residue store, search and classifier. Every file error names
/// the file and keeps its cause as the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ResidueError {
    #[error("invalid residue-knn parameter: {0}")]
    InvalidParams(String),
    /// A file of a store, a hits cache or a saved classifier cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is there but does not hold what it must.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A file that a library below could not parse, or that refers to something unusable.
    #[error("{}: {what}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        what: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Vocab(#[from] crate::io::vocab::VocabError),
    #[error(transparent)]
    Embed(#[from] crate::embedder::EmbedError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Data(String),
}

impl ResidueError {
    /// `map_err` adapter for an I/O error on `path`.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResidueError {
        let path = path.to_path_buf();
        move |source| ResidueError::Io { path, source }
    }

    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> ResidueError {
        ResidueError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// `map_err` adapter for a parse error of `path`, described by `what`.
    pub(crate) fn unreadable<E: Into<BoxError>>(
        path: &Path,
        what: impl Into<String>,
    ) -> impl FnOnce(E) -> ResidueError {
        let (path, what) = (path.to_path_buf(), what.into());
        move |source| ResidueError::Unreadable {
            path,
            what,
            source: source.into(),
        }
    }
}
