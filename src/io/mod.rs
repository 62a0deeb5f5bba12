//! Readers for the sequence formats protfam consumes and the label vocabulary.
//!
//! Every reader is a streaming iterator of [`Record`]s; errors carry the file
//! path and the record or line they concern.

pub mod alphabet;
pub mod fasta;
pub mod pfam_csv;
pub mod stockholm;
pub mod vocab;

/// A Pfam family label: the short name (`family_id`, e.g. `Pkinase`) and the
/// accession with its version stripped (e.g. `PF00069`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Family {
    pub family_id: String,
    pub accession: String,
}

impl Family {
    /// Builds a label, stripping a version suffix (`PF00069.25` -> `PF00069`).
    pub fn new(family_id: impl Into<String>, accession: &str) -> Self {
        let accession = accession.split('.').next().unwrap_or(accession).to_string();
        Family { family_id: family_id.into(), accession }
    }
}

/// One protein (or domain) sequence from any input format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Identifier: FASTA id, Stockholm name, or Pfam `sequence_name` (`NAME/start-end`).
    pub id: String,
    /// Free text after the id (FASTA), empty where the format has none.
    pub description: String,
    /// Raw residues, upper case, no gaps, no terminal `*`.
    pub sequence: String,
    /// Family label where the format carries one (Pfam CSV, Stockholm).
    pub family: Option<Family>,
    /// Aligned sequence where the format carries one (Pfam CSV `aligned_sequence`).
    pub aligned: Option<String>,
}

impl Record {
    pub fn new(id: impl Into<String>, sequence: impl Into<String>) -> Self {
        Record {
            id: id.into(),
            description: String::new(),
            sequence: sequence.into(),
            family: None,
            aligned: None,
        }
    }
}

/// A read failure, always naming the file and, where known, the line and record.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), record.as_ref().map(|r| format!(" (record {r})")).unwrap_or_default())]
pub struct ReadError {
    pub path: String,
    pub line: Option<usize>,
    pub record: Option<String>,
    pub message: String,
}

impl ReadError {
    pub fn new(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        ReadError { path: path.as_ref().display().to_string(), line: None, record: None, message: message.into() }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn in_record(mut self, record: impl Into<String>) -> Self {
        self.record = Some(record.into());
        self
    }
}
