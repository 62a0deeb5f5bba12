//! One entry point for sequence files of any supported format: FASTA,
//! Stockholm or a Pfam split CSV shard, plain or gzip, from a path or `-`
//! (standard input). The format is given or detected from the content.
//!
//! ```
//! use protfam::io::input::{Format, SequenceReader};
//!
//! let stockholm = "# STOCKHOLM 1.0\n#=GF ID fn3\n#=GF AC PF00041.20\na/1-3 MKV\n//\n";
//! let mut reader = SequenceReader::from_reader(Box::new(stockholm.as_bytes()), "in", None).unwrap();
//! assert_eq!(reader.format(), Format::Stockholm);
//! let record = reader.next().unwrap().unwrap();
//! assert_eq!(record.family.unwrap().accession, "PF00041");
//! ```

use std::io::BufRead;
use std::path::Path;

use super::{fasta, pfam_csv, stockholm, ReadError, Record};

/// The sequence file formats protfam reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Fasta,
    Stockholm,
    /// One shard of a Pfam seed split (`family_id,sequence_name,...` CSV).
    PfamCsv,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Fasta => "FASTA",
            Format::Stockholm => "Stockholm",
            Format::PfamCsv => "Pfam split CSV",
        })
    }
}

/// Recognises a format from the first bytes of (decompressed) content.
pub fn detect(start: &[u8]) -> Option<Format> {
    let start = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(start);
    let first = start
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &start[i..])?;
    if first.starts_with(b"# STOCKHOLM") {
        Some(Format::Stockholm)
    } else if first.starts_with(b">") || first.starts_with(b";") {
        Some(Format::Fasta)
    } else if first.starts_with(pfam_csv::HEADER[0].as_bytes()) {
        Some(Format::PfamCsv)
    } else {
        None
    }
}

/// A reader for any [`Format`]; an iterator of `Result<Record, ReadError>`.
pub enum SequenceReader {
    Fasta(fasta::Reader<Box<dyn BufRead>>),
    Stockholm(stockholm::Reader<Box<dyn BufRead>>),
    PfamCsv(pfam_csv::ShardReader<Box<dyn BufRead>>),
}

impl SequenceReader {
    /// Opens a path (`-` is standard input, gzip is decompressed); `format`
    /// `None` detects it from the content.
    pub fn open(path: &Path, format: Option<Format>) -> Result<Self, ReadError> {
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        Self::from_reader(super::open_input(path)?, name, format)
    }

    /// Reads from an already opened input named `name` in errors.
    pub fn from_reader(
        mut input: Box<dyn BufRead>,
        name: impl Into<String>,
        format: Option<Format>,
    ) -> Result<Self, ReadError> {
        let name = name.into();
        let format = match format {
            Some(format) => format,
            None => {
                let start = input.fill_buf().map_err(|e| ReadError::io(&name, "cannot read", &e))?;
                if start.iter().all(u8::is_ascii_whitespace) {
                    // One rule for every reader: an input without a record is an error.
                    return Err(ReadError::new(&name, "no record: the input is empty"));
                }
                detect(start).ok_or_else(|| {
                    ReadError::new(
                        &name,
                        "unknown format: expected FASTA ('>'), Stockholm ('# STOCKHOLM 1.0') or a Pfam split CSV shard",
                    )
                    .at_line(1)
                })?
            }
        };
        Ok(match format {
            Format::Fasta => SequenceReader::Fasta(fasta::Reader::with_name(input, name)),
            Format::Stockholm => SequenceReader::Stockholm(stockholm::Reader::with_name(input, name)),
            Format::PfamCsv => SequenceReader::PfamCsv(pfam_csv::ShardReader::from_reader(input, name)?),
        })
    }

    pub fn format(&self) -> Format {
        match self {
            SequenceReader::Fasta(_) => Format::Fasta,
            SequenceReader::Stockholm(_) => Format::Stockholm,
            SequenceReader::PfamCsv(_) => Format::PfamCsv,
        }
    }

    /// Makes a repeated id (FASTA) or `sequence_name` (Pfam CSV) an error for
    /// that record. Stockholm needs none: its format merges rows by name.
    pub fn reject_duplicates(self, reject: bool) -> Self {
        match self {
            SequenceReader::Fasta(r) => SequenceReader::Fasta(r.reject_duplicates(reject)),
            SequenceReader::PfamCsv(r) => SequenceReader::PfamCsv(r.reject_duplicates(reject)),
            other => other,
        }
    }

    /// Repeated ids so far (FASTA ids, Pfam CSV sequence names).
    pub fn duplicates(&self) -> &[fasta::DuplicateId] {
        match self {
            SequenceReader::Fasta(reader) => reader.duplicates(),
            SequenceReader::PfamCsv(reader) => reader.duplicates(),
            SequenceReader::Stockholm(_) => &[],
        }
    }
}

impl Iterator for SequenceReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SequenceReader::Fasta(reader) => reader.next(),
            SequenceReader::Stockholm(reader) => reader.next(),
            SequenceReader::PfamCsv(reader) => reader.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect(b"\n\n>x\nMK\n"), Some(Format::Fasta));
        assert_eq!(detect(b";c\n>x\n"), Some(Format::Fasta));
        assert_eq!(detect(b"\xef\xbb\xbf# STOCKHOLM 1.0\n"), Some(Format::Stockholm));
        assert_eq!(
            detect(b"family_id,sequence_name,family_accession,aligned_sequence,sequence\r\n"),
            Some(Format::PfamCsv)
        );
        assert_eq!(detect(b"ID   7LESS_DROME"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn unknown_content_is_an_error() {
        let e = SequenceReader::from_reader(Box::new(&b"hello"[..]), "x", None)
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("x:1: unknown format"), "{e}");
        for empty in [&b""[..], &b"\n \n"[..]] {
            let e = SequenceReader::from_reader(Box::new(empty), "e.fa", None)
                .err()
                .unwrap();
            assert_eq!(e.to_string(), "e.fa: no record: the input is empty");
        }
        let forced = SequenceReader::from_reader(Box::new(&b">a\nMK\n"[..]), "x", Some(Format::Fasta)).unwrap();
        assert_eq!(forced.count(), 1);
    }
}
