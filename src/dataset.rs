//! A Pfam split on disk (`<root>/<split>/{train,dev,test}/data-*`), read once
//! per run: every consumer of one run (the embedding cache, residue-knn, the
//! HMM and BLAST baselines, the run cache's digest) takes its records from one
//! [`Split`], which parses each part at most once.
//!
//! [`find_root`] is the one rule for where the data lives: an explicit path,
//! else `$PROTFAM_DATA`, else the bundled dataset found relative to the working
//! directory or to the binary (`data/pfam35-uniprot20k`, or
//! `../shared/data/pfam35-uniprot20k` beside the checkout).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use crate::io::{ReadError, Record};

/// Directory name of the bundled dataset.
pub const BUNDLED_NAME: &str = "pfam35-uniprot20k";

/// Where the bundled dataset may sit, relative to a checkout (or working directory).
const BUNDLED_PLACES: [&str; 2] = ["data/pfam35-uniprot20k", "../shared/data/pfam35-uniprot20k"];

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "no dataset found: pass --data DIR, set PROTFAM_DATA, or run `make data` \
         (looked for {BUNDLED_NAME} under data/ and ../shared/data/ of the working directory and of the binary)"
    )]
    NotFound,
    #[error("{}: no such split directory (pass --data DIR or set PROTFAM_DATA; `make data` links the bundled one)", .0.display())]
    NoSplit(PathBuf),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The dataset root: `explicit`, else `$PROTFAM_DATA`, else the bundled dataset
/// next to the working directory or the binary.
pub fn find_root(explicit: Option<&Path>) -> Result<PathBuf, DatasetError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("PROTFAM_DATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    bundled_root().ok_or(DatasetError::NotFound)
}

/// The bundled dataset relative to the working directory, else to the
/// directories above the running binary (`target/release/protfam` sits two
/// levels below its checkout).
pub fn bundled_root() -> Option<PathBuf> {
    let mut bases = vec![PathBuf::from(".")];
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        bases.extend(exe_dir.ancestors().take(4).map(Path::to_path_buf));
    }
    bases
        .iter()
        .flat_map(|base| BUNDLED_PLACES.iter().map(move |place| base.join(place)))
        .find(|p| p.is_dir())
}

/// One split of a dataset, its parts parsed on first use and kept.
#[derive(Debug)]
pub struct Split {
    root: PathBuf,
    name: String,
    parts: [OnceLock<Arc<Vec<Record>>>; 3],
}

impl Split {
    /// The split `name` under `root`; fails when its directory is missing. The
    /// root is made absolute, so sources recorded from it (a classifier's
    /// training split) still resolve from another working directory.
    pub fn open(root: impl Into<PathBuf>, name: impl Into<String>) -> Result<Split, DatasetError> {
        let mut split = Split {
            root: root.into(),
            name: name.into(),
            parts: Default::default(),
        };
        if !split.dir().is_dir() {
            return Err(DatasetError::NoSplit(split.dir()));
        }
        if let Ok(absolute) = std::path::absolute(&split.root) {
            split.root = absolute;
        }
        Ok(split)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<root>/<split>`.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// `<root>/<split>/<part>` as text, for messages and recorded sources.
    pub fn part_label(&self, part: &str) -> String {
        self.dir().join(part).display().to_string()
    }

    /// Every record of `part` (`train`, `dev` or `test`) in file order.
    pub fn records(&self, part: &str) -> Result<Arc<Vec<Record>>, DatasetError> {
        let Some(slot) = crate::io::pfam_csv::PARTS
            .iter()
            .position(|p| *p == part)
            .map(|i| &self.parts[i])
        else {
            return Ok(Arc::new(read_part(&self.root, &self.name, part)?));
        };
        if let Some(records) = slot.get() {
            return Ok(records.clone());
        }
        let records = Arc::new(read_part(&self.root, &self.name, part)?);
        Ok(slot.get_or_init(|| records).clone())
    }

    /// SHA-256 over every record of the three parts (part, id, family, aligned
    /// and raw sequence): cached evaluations are reused only on the same data.
    pub fn digest(&self) -> Result<String, DatasetError> {
        let mut h = Sha256::new();
        for part in crate::io::pfam_csv::PARTS {
            for r in self.records(part)?.iter() {
                let family = r.family.as_ref();
                for field in [
                    part,
                    &r.id,
                    family.map_or("", |f| f.accession.as_str()),
                    family.map_or("", |f| f.family_id.as_str()),
                    r.aligned.as_deref().unwrap_or(""),
                    &r.sequence,
                ] {
                    h.update(field.as_bytes());
                    h.update([0u8]);
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// Every record of one part of a Pfam split, in file order.
pub fn read_part(root: &Path, split: &str, part: &str) -> Result<Vec<Record>, ReadError> {
    crate::io::pfam_csv::read_part(root, split, part)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_split(root: &Path) {
        let header = "family_id,sequence_name,family_accession,aligned_sequence,sequence\n";
        for (part, rows) in [
            ("train", "Fam_A,S1/1-4,PF00001.1,ACDE,ACDE\nFam_B,S2/1-4,PF00002.1,FGHI,FGHI\n"),
            ("dev", "Fam_A,S3/1-4,PF00001.1,ACDF,ACDF\n"),
            ("test", "Fam_B,S4/1-4,PF00002.1,FGHK,FGHK\n"),
        ] {
            let dir = root.join("split").join(part);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("data-00000-of-00001"), format!("{header}{rows}")).unwrap();
        }
    }

    #[test]
    fn parts_are_read_once_and_digest_follows_the_data() {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path());
        let split = Split::open(dir.path(), "split").unwrap();
        let a = split.records("train").unwrap();
        let b = split.records("train").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second call reuses the parsed part");
        assert_eq!(a.len(), 2);
        let digest = split.digest().unwrap();
        assert_eq!(digest, Split::open(dir.path(), "split").unwrap().digest().unwrap());
        let shard = dir.path().join("split/test/data-00000-of-00001");
        let text = std::fs::read_to_string(&shard).unwrap().replace("FGHK,FGHK", "FGHM,FGHM");
        std::fs::write(&shard, text).unwrap();
        assert_ne!(digest, Split::open(dir.path(), "split").unwrap().digest().unwrap());
    }

    #[test]
    fn missing_split_names_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = Split::open(dir.path(), "nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("--data"), "{err}");
    }

    #[test]
    fn explicit_root_wins() {
        assert_eq!(find_root(Some(Path::new("x/y"))).unwrap(), PathBuf::from("x/y"));
    }
}
