//! The label vocabulary: a stable family <-> class index mapping built from
//! training data and saved as JSON next to every trained model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Family, Record};

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid label vocabulary JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: family {family_id} appears with accessions {first} and {second}")]
    Inconsistent {
        path: PathBuf,
        family_id: String,
        first: String,
        second: String,
    },
}

/// Families sorted by accession, then family id; the class index of a family is
/// its position in that order, so the same training data always gives the same
/// indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LabelVocab {
    pub families: Vec<Family>,
    #[serde(skip)]
    by_accession: BTreeMap<String, usize>,
    #[serde(skip)]
    by_family_id: BTreeMap<String, usize>,
}

impl LabelVocab {
    /// Builds the vocabulary from the labels of training records (duplicates collapse).
    pub fn from_families<'a>(labels: impl IntoIterator<Item = &'a Family>) -> Self {
        let mut families: Vec<Family> = labels.into_iter().cloned().collect();
        families.sort_by(|a, b| (&a.accession, &a.family_id).cmp(&(&b.accession, &b.family_id)));
        families.dedup();
        Self::from_sorted(families)
    }

    /// Builds the vocabulary from the labelled records of a training set
    /// (records without a family are ignored).
    ///
    /// ```
    /// use protfam::io::{vocab::LabelVocab, Family, Record};
    ///
    /// let mut a = Record::new("a/1-9", "MKV");
    /// a.family = Some(Family::new("Pkinase", "PF00069.25"));
    /// let vocab = LabelVocab::from_records([&a, &Record::new("unlabelled", "MK")]);
    /// assert_eq!(vocab.len(), 1);
    /// assert_eq!(vocab.index_of_family_id("Pkinase"), Some(0));
    /// ```
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        Self::from_families(records.into_iter().filter_map(|r| r.family.as_ref()))
    }

    /// Whether the family (by accession or family id) has a class index.
    pub fn contains(&self, family: &Family) -> bool {
        self.index_of(family).is_some()
    }

    /// Families with the same `family_id` under different accessions (or the
    /// reverse) make indices ambiguous; this names the first such pair.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
        let mut by_acc: BTreeMap<&str, &str> = BTreeMap::new();
        for f in &self.families {
            if let Some(first) = by_id.insert(&f.family_id, &f.accession) {
                return Err(format!(
                    "family {} appears with accessions {first} and {}",
                    f.family_id, f.accession
                ));
            }
            if let Some(first) = by_acc.insert(&f.accession, &f.family_id) {
                return Err(format!(
                    "accession {} appears with family ids {first} and {}",
                    f.accession, f.family_id
                ));
            }
        }
        Ok(())
    }

    fn from_sorted(families: Vec<Family>) -> Self {
        let by_accession = families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.accession.clone(), i))
            .collect();
        let by_family_id = families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.family_id.clone(), i))
            .collect();
        LabelVocab {
            families,
            by_accession,
            by_family_id,
        }
    }

    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Class index of a family (matched by accession, falling back to family id).
    pub fn index_of(&self, family: &Family) -> Option<usize> {
        self.by_accession
            .get(&family.accession)
            .or_else(|| self.by_family_id.get(&family.family_id))
            .copied()
    }

    pub fn index_of_accession(&self, accession: &str) -> Option<usize> {
        let stripped = accession.split('.').next().unwrap_or(accession);
        self.by_accession.get(stripped).copied()
    }

    pub fn index_of_family_id(&self, family_id: &str) -> Option<usize> {
        self.by_family_id.get(family_id).copied()
    }

    pub fn family(&self, index: usize) -> &Family {
        &self.families[index]
    }

    pub fn save(&self, path: &Path) -> Result<(), VocabError> {
        let p = path.to_path_buf();
        let json = serde_json::to_string_pretty(self).map_err(|source| VocabError::Json {
            path: p.clone(),
            source,
        })?;
        crate::atomic::write_bytes_atomic(path, json.as_bytes()).map_err(|source| VocabError::Io { path: p, source })
    }

    pub fn load(path: &Path) -> Result<Self, VocabError> {
        let p = path.to_path_buf();
        let text = std::fs::read_to_string(path).map_err(|source| VocabError::Io {
            path: p.clone(),
            source,
        })?;
        let raw: LabelVocab = serde_json::from_str(&text).map_err(|source| VocabError::Json {
            path: p.clone(),
            source,
        })?;
        let vocab = Self::from_sorted(raw.families);
        if vocab.by_family_id.len() != vocab.families.len() {
            let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
            for f in &vocab.families {
                if let Some(first) = seen.insert(&f.family_id, &f.accession) {
                    return Err(VocabError::Inconsistent {
                        path: p,
                        family_id: f.family_id.clone(),
                        first: first.to_string(),
                        second: f.accession.clone(),
                    });
                }
            }
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_order_and_round_trip() {
        let labels = [
            Family::new("Pkinase", "PF00069.25"),
            Family::new("ABC_tran", "PF00005.27"),
            Family::new("Pkinase", "PF00069.25"),
        ];
        let vocab = LabelVocab::from_families(labels.iter());
        assert_eq!(vocab.len(), 2);
        assert_eq!(vocab.family(0).family_id, "ABC_tran");
        assert_eq!(vocab.index_of_accession("PF00069.3"), Some(1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.json");
        vocab.save(&path).unwrap();
        assert_eq!(LabelVocab::load(&path).unwrap(), vocab);
    }

    #[test]
    fn from_records_and_consistency() {
        let mut records = vec![Record::new("a", "MK"), Record::new("b", "MK"), Record::new("c", "MK")];
        records[0].family = Some(Family::new("B", "PF2.1"));
        records[1].family = Some(Family::new("A", "PF1.1"));
        let vocab = LabelVocab::from_records(&records);
        assert_eq!(vocab.len(), 2);
        assert_eq!(vocab.family(0).family_id, "A");
        assert!(vocab.contains(&Family::new("B", "PF2")));
        assert!(vocab.check_consistent().is_ok());
        records[2].family = Some(Family::new("A", "PF3"));
        let clash = LabelVocab::from_records(&records).check_consistent().unwrap_err();
        assert_eq!(clash, "family A appears with accessions PF1 and PF3");
    }
}
