//! The training and test sides of a split as the baselines need them: the
//! training families' alignments (HMM), the training sequences with their
//! family (BLAST), the test sequences with their true family, and a digest of
//! the training data that keys the database cache.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::BaselineError;
use crate::io::{Family, Record};

/// One family's training rows: `(sequence_name, aligned_sequence)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyRows {
    pub family: Family,
    pub rows: Vec<(String, String)>,
}

/// The training part of a split.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    /// Families sorted by accession, each with its rows in file order.
    pub families: Vec<FamilyRows>,
    /// Every training sequence with the index of its family in `families`, in file order.
    pub sequences: Vec<(String, usize)>,
    /// SHA-256 (hex) over every training record's family, name, aligned and raw sequence, in file order.
    pub digest: String,
}

impl TrainingSet {
    /// Reads `<root>/<split>/train`.
    pub fn read(root: &Path, split: &str) -> Result<TrainingSet, BaselineError> {
        let records = crate::dataset::read_part(root, split, "train")?;
        TrainingSet::from_records(&records, &root.join(split).join("train").display().to_string())
    }

    /// The training set of already read records of the train part (`source` names it in errors).
    pub fn from_records(records: &[Record], source: &str) -> Result<TrainingSet, BaselineError> {
        let mut hasher = Sha256::new();
        let mut by_accession: BTreeMap<String, FamilyRows> = BTreeMap::new();
        let mut raw: Vec<(String, String)> = Vec::new();
        for record in records {
            let family = record.family.clone().expect("Pfam CSV records carry a family");
            let aligned = record.aligned.clone().unwrap_or_default();
            for field in [
                &family.accession,
                &family.family_id,
                &record.id,
                &aligned,
                &record.sequence,
            ] {
                hasher.update(field.as_bytes());
                hasher.update([0u8]);
            }
            hasher.update([b'\n']);
            by_accession
                .entry(family.accession.clone())
                .or_insert_with(|| FamilyRows {
                    family: family.clone(),
                    rows: Vec::new(),
                })
                .rows
                .push((record.id.clone(), aligned));
            raw.push((record.sequence.clone(), family.accession));
        }
        if raw.is_empty() {
            return Err(BaselineError::Data(format!("{source}: no training records")));
        }
        let index: BTreeMap<&str, usize> = by_accession.keys().enumerate().map(|(i, a)| (a.as_str(), i)).collect();
        let sequences = raw
            .iter()
            .map(|(seq, acc)| (seq.clone(), index[acc.as_str()]))
            .collect();
        Ok(TrainingSet {
            families: by_accession.into_values().collect(),
            sequences,
            digest: hex::encode(hasher.finalize()),
        })
    }

    /// Number of training examples per family accession.
    pub fn family_sizes(&self) -> BTreeMap<String, usize> {
        self.families
            .iter()
            .map(|f| (f.family.accession.clone(), f.rows.len()))
            .collect()
    }
}

impl FamilyRows {
    /// Checks that the rows form an alignment: non-empty, letters and `.`/`-`
    /// gaps only, all of one length. The error names the family and the row.
    pub fn check_alignment(&self) -> Result<usize, BaselineError> {
        let bad = |message: String| BaselineError::Alignment {
            family: self.family.family_id.clone(),
            accession: self.family.accession.clone(),
            message,
        };
        let (first_name, first) = self.rows.first().ok_or_else(|| bad("no training rows".to_string()))?;
        let width = first.len();
        for (name, row) in &self.rows {
            if row.is_empty() {
                return Err(bad(format!("row {name} has an empty aligned_sequence")));
            }
            if let Some(c) = row
                .chars()
                .find(|c| !(c.is_ascii_alphabetic() || *c == '.' || *c == '-'))
            {
                return Err(bad(format!(
                    "row {name}: aligned_sequence has character {c:?} (expected letters and `.`/`-` gaps)"
                )));
            }
            if row.len() != width {
                return Err(bad(format!(
                    "aligned_sequence rows have unequal lengths: {name} has {} columns but {first_name} has {width}",
                    row.len()
                )));
            }
        }
        Ok(width)
    }

    /// The family as a Stockholm alignment. Row names are made unique by a
    /// running number, since a repeated name would make Stockholm readers
    /// join the rows into one sequence.
    pub fn to_stockholm(&self) -> String {
        let mut out = String::from("# STOCKHOLM 1.0\n");
        out.push_str(&format!(
            "#=GF ID {}\n#=GF AC {}\n",
            self.family.accession, self.family.accession
        ));
        out.push_str(&format!("#=GF DE {}\n", self.family.family_id));
        let names: Vec<String> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("{i}|{}", name.replace(|c: char| c.is_whitespace(), "_")))
            .collect();
        let pad = names.iter().map(String::len).max().unwrap_or(0);
        for (name, (_, row)) in names.iter().zip(&self.rows) {
            out.push_str(&format!("{name:<pad$} {row}\n"));
        }
        out.push_str("//\n");
        out
    }
}

/// The test part of a split.
#[derive(Debug, Clone)]
pub struct TestSet {
    pub names: Vec<String>,
    pub sequences: Vec<String>,
    /// True families (empty for [`TestSet::of_sequences`]).
    pub truth: Vec<Family>,
}

impl TestSet {
    /// Reads `<root>/<split>/test`.
    pub fn read(root: &Path, split: &str) -> Result<TestSet, BaselineError> {
        let records = crate::dataset::read_part(root, split, "test")?;
        TestSet::from_records(&records, &root.join(split).join("test").display().to_string())
    }

    /// The test set of already read records of the test part (`source` names it in errors).
    pub fn from_records(records: &[Record], source: &str) -> Result<TestSet, BaselineError> {
        let mut set = TestSet {
            names: Vec::new(),
            sequences: Vec::new(),
            truth: Vec::new(),
        };
        for record in records {
            let family = record
                .family
                .clone()
                .ok_or_else(|| BaselineError::Data(format!("{source}: test record {} has no family", record.id)))?;
            set.truth.push(family);
            set.names.push(record.id.clone());
            set.sequences.push(record.sequence.clone());
        }
        if set.names.is_empty() {
            return Err(BaselineError::Data(format!("{source}: no test records")));
        }
        Ok(set)
    }

    /// Query sequences to search, labelled or not (`truth` stays empty): what the
    /// hybrid annotator hands HMMER.
    pub fn of_sequences(records: &[Record]) -> TestSet {
        TestSet {
            names: records.iter().map(|r| r.id.clone()).collect(),
            sequences: records.iter().map(|r| r.sequence.clone()).collect(),
            truth: Vec::new(),
        }
    }

    /// The test sequences as FASTA with ids `q<index>`, which every tool keeps verbatim.
    pub fn write_fasta(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        for (i, seq) in self.sequences.iter().enumerate() {
            writeln!(out, ">q{i}\n{seq}")?;
        }
        Ok(())
    }
}

/// Parses the `q<index>` / `t<index>` ids the baselines give sequences.
pub fn parse_index(id: &str, prefix: char) -> Option<usize> {
    id.strip_prefix(prefix)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(rows: &[(&str, &str)]) -> FamilyRows {
        FamilyRows {
            family: Family::new("Kinase_X", "PF99999.1"),
            rows: rows.iter().map(|(n, r)| (n.to_string(), r.to_string())).collect(),
        }
    }

    #[test]
    fn unequal_rows_name_the_family_and_row() {
        let err = family(&[("A/1-4", "AC.DE"), ("B/1-3", "AC.D")])
            .check_alignment()
            .unwrap_err()
            .to_string();
        assert!(err.contains("Kinase_X") && err.contains("PF99999"), "{err}");
        assert!(err.contains("B/1-3") && err.contains("unequal lengths"), "{err}");
    }

    #[test]
    fn bad_characters_are_rejected() {
        let err = family(&[("A/1-4", "AC.D1")]).check_alignment().unwrap_err().to_string();
        assert!(err.contains("'1'"), "{err}");
        assert_eq!(family(&[("A", "ac.D-"), ("B", "ACDE.")]).check_alignment().unwrap(), 5);
    }

    #[test]
    fn stockholm_rows_get_unique_names() {
        let sto = family(&[("A/1-4", "AC.DE"), ("A/1-4", "ACQDE")]).to_stockholm();
        assert!(sto.starts_with("# STOCKHOLM 1.0\n#=GF ID PF99999\n#=GF AC PF99999\n#=GF DE Kinase_X\n"));
        assert!(sto.contains("0|A/1-4 AC.DE\n1|A/1-4 ACQDE\n//\n"), "{sto}");
    }
}
