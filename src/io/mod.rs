//! Readers for the sequence formats protfam consumes and the label vocabulary.
//!
//! Every reader is a streaming iterator of [`Record`]s; errors carry the file
//! path and the record or line they concern.

pub mod alphabet;
pub mod fasta;
pub mod input;
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
        Family {
            family_id: family_id.into(),
            accession,
        }
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

    /// The identifier (rust-bio style accessor).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The description, `None` where there is none (rust-bio style accessor).
    pub fn desc(&self) -> Option<&str> {
        if self.description.is_empty() {
            None
        } else {
            Some(&self.description)
        }
    }

    /// The residues as bytes (rust-bio style accessor).
    pub fn seq(&self) -> &[u8] {
        self.sequence.as_bytes()
    }

    /// Number of residues.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }
}

/// What kind of failure a [`ReadError`] is, which decides whether lenient
/// reading may skip past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadErrorKind {
    /// The file cannot be opened or read (missing, permissions, corrupt gzip).
    Io,
    /// The file is not in the expected format (wrong header, truncated row,
    /// misaligned Stockholm block); nothing after it can be trusted.
    Format,
    /// One record is unusable (bad residue, empty sequence, empty id) but the
    /// file around it is fine: lenient reading skips it with a warning.
    InvalidRecord,
}

/// Reads the next line of a text reader's input into `line` without its line end
/// (`\n` or `\r\n`) and counts it in `line_no`; false at the end of input. A
/// failure names the input `name` and the line it was reading.
pub(crate) fn read_line(
    reader: &mut impl std::io::BufRead,
    line: &mut Vec<u8>,
    line_no: &mut usize,
    name: &str,
) -> Result<bool, ReadError> {
    line.clear();
    let n = reader
        .read_until(b'\n', line)
        .map_err(|e| ReadError::io(name, "cannot read", &e).at_line(*line_no + 1))?;
    if n == 0 {
        return Ok(false);
    }
    *line_no += 1;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(true)
}

/// A read failure, always naming the file and, where known, the line and record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), record.as_ref().map(|r| format!(" (record {r})")).unwrap_or_default())]
pub struct ReadError {
    pub path: String,
    pub line: Option<usize>,
    pub record: Option<String>,
    pub message: String,
    pub kind: ReadErrorKind,
}

impl ReadError {
    /// A [`ReadErrorKind::Format`] error about `path`.
    pub fn new(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        ReadError {
            path: path.as_ref().display().to_string(),
            line: None,
            record: None,
            message: message.into(),
            kind: ReadErrorKind::Format,
        }
    }

    /// A [`ReadErrorKind::Io`] error about `path`.
    pub fn io(path: impl AsRef<std::path::Path>, context: &str, source: &std::io::Error) -> Self {
        ReadError {
            kind: ReadErrorKind::Io,
            ..ReadError::new(path, format!("{context}: {source}"))
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn in_record(mut self, record: impl Into<String>) -> Self {
        self.record = Some(record.into());
        self
    }

    /// Marks the error as concerning one record only ([`ReadErrorKind::InvalidRecord`]).
    pub fn invalid_record(mut self) -> Self {
        self.kind = ReadErrorKind::InvalidRecord;
        self
    }

    /// Whether lenient reading may skip the record and go on.
    pub fn is_skippable(&self) -> bool {
        self.kind == ReadErrorKind::InvalidRecord
    }
}

/// Opens a file for buffered reading, `-` meaning standard input; gzip input
/// (recognised by its magic bytes, whatever the file is called) is
/// decompressed on the fly, including multi-member files such as bgzip output.
pub fn open_input(path: &std::path::Path) -> Result<Box<dyn std::io::BufRead>, ReadError> {
    use std::io::BufRead;
    let inner: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| ReadError::io(path, "cannot open", &e))?)
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 16, inner);
    let magic = reader.fill_buf().map_err(|e| ReadError::io(path, "cannot read", &e))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        let decoder = flate2::bufread::MultiGzDecoder::new(reader);
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, decoder)))
    } else {
        Ok(Box::new(reader))
    }
}
