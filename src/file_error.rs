//! The error of one file that a store, cache or saved classifier is made of:
//! it names the file and keeps the cause as the `source`, so `{:#}` shows the chain.
//! [`crate::classify::ClassifyError`] and [`crate::residue::ResidueError`] wrap it.

use std::path::{Path, PathBuf};

use crate::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is there but does not hold what it must.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A library below (JSON, safetensors) could not parse the file, or it refers to something unusable.
    #[error("{}: {what}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        what: String,
        #[source]
        source: BoxError,
    },
}

impl FileError {
    /// `map_err` adapter for an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError::Io { path, source }
    }

    pub fn invalid(path: &Path, message: impl Into<String>) -> FileError {
        FileError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// `map_err` adapter for a parse error of `path`, described by `what`.
    pub fn unreadable<E: Into<BoxError>>(path: &Path, what: impl Into<String>) -> impl FnOnce(E) -> FileError {
        let (path, what) = (path.to_path_buf(), what.into());
        move |source| FileError::Unreadable {
            path,
            what,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn every_variant_names_the_file_and_keeps_its_cause() {
        let path = Path::new("store/manifest.json");
        let io = FileError::io(path)(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(io.to_string(), "store/manifest.json: gone");
        assert!(io.source().is_some());
        let bad_json = serde_json::from_str::<u32>("x").unwrap_err();
        let unreadable = FileError::unreadable(path, "not a manifest")(bad_json);
        assert!(unreadable
            .to_string()
            .starts_with("store/manifest.json: not a manifest: "));
        assert!(unreadable.source().is_some());
        assert_eq!(
            FileError::invalid(path, "no rows").to_string(),
            "store/manifest.json: no rows"
        );
    }
}
