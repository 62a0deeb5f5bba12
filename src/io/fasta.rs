//! Reading and writing FASTA files, shaped like rust-bio's `io::fasta`.
//!
//! [`Reader`] streams [`Record`]s (`id`, `description`, upper-case `sequence`)
//! from any [`BufRead`]; [`open`] reads a path, `-` for standard input, and
//! gzip files (recognised by their magic bytes). It accepts what real FASTA
//! files contain: sequences over several lines, lower case (upper-cased),
//! a trailing `*` (dropped), blank lines, CRLF line ends, `;` comment lines
//! before a header. Errors name the file, the line and the record: a header
//! with no id, a record with no residues, a residue outside the
//! [`alphabet`](super::alphabet) policy (digits, `-`, ...), text before the
//! first `>`. Record-level errors do not stop the reader, so a lenient caller
//! ([`alphabet::checked`](super::alphabet::checked)) can skip them. Duplicate
//! ids are logged with a warning and listed by [`Reader::duplicates`], or
//! rejected with [`Reader::reject_duplicates`].
//!
//! # Example
//!
//! ## Read
//!
//! ```
//! use protfam::io::fasta;
//!
//! let text = ">sp|P69905|HBA_HUMAN Hemoglobin subunit alpha\nmvlspadktn\nVKAAWGKV*\r\n\n>seq2\nMKV\n";
//! let mut reader = fasta::Reader::with_name(text.as_bytes(), "example.fa");
//! let mut residues = 0;
//! for result in reader.records() {
//!     let record = result.expect("valid FASTA");
//!     residues += record.seq().len();
//! }
//! assert_eq!(residues, 21);
//! assert!(reader.duplicates().is_empty());
//! ```
//!
//! Errors say where the problem is:
//!
//! ```
//! use protfam::io::fasta;
//!
//! let text = ">ok\nMKV\n>bad\nMKV\nMK7V\n";
//! let errors: Vec<String> = fasta::Reader::with_name(text.as_bytes(), "in.fa")
//!     .filter_map(|r| r.err())
//!     .map(|e| e.to_string())
//!     .collect();
//! assert_eq!(errors, ["in.fa:5 (record bad): invalid residue digit '7' at position 6"]);
//! ```
//!
//! ## Read a file, standard input or a gzip file
//!
//! ```no_run
//! use std::path::Path;
//! use protfam::io::fasta;
//!
//! for path in ["proteins.fa", "proteins.fa.gz", "-"] {
//!     let reader = fasta::open(Path::new(path))?;
//!     println!("{path}: {} records", reader.count());
//! }
//! # Ok::<(), protfam::io::ReadError>(())
//! ```
//!
//! ## Write
//!
//! ```
//! use protfam::io::{fasta, Record};
//!
//! let mut out = Vec::new();
//! let mut writer = fasta::Writer::new(&mut out);
//! writer.write_record(&Record::new("seq1", "MKVLA")).unwrap();
//! writer.flush().unwrap();
//! drop(writer);
//! assert_eq!(String::from_utf8(out).unwrap(), ">seq1\nMKVLA\n");
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

use super::alphabet;
use super::{ReadError, Record};

/// How many duplicate-id warnings are logged (all are listed by [`Reader::duplicates`]).
const LOGGED_DUPLICATES: usize = 10;

/// An id seen more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateId {
    pub id: String,
    /// Header line of the first record with this id.
    pub first_line: usize,
    /// Header line of the repeat.
    pub line: usize,
}

/// Opens a FASTA file for reading: a path, `-` for standard input, gzip or plain.
pub fn open(path: &Path) -> Result<Reader<Box<dyn BufRead>>, ReadError> {
    let input = super::open_input(path)?;
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    Ok(Reader::with_name(input, name))
}

/// A streaming FASTA reader; an iterator of `Result<Record, ReadError>`.
pub struct Reader<R> {
    reader: R,
    name: String,
    line_no: usize,
    line: Vec<u8>,
    /// The header that ended the previous record: (line number, text after `>`).
    pending_header: Option<(usize, Vec<u8>)>,
    seen: HashMap<String, usize>,
    duplicates: Vec<DuplicateId>,
    reject_duplicates: bool,
    finished: bool,
    /// A header has been read: an input without any is an error, not an empty result.
    any_record: bool,
}

impl Reader<Box<dyn BufRead>> {
    /// Opens a file (see [`open`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        open(path.as_ref())
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads from `reader`; errors name the input `<input>`.
    pub fn new(reader: R) -> Self {
        Self::with_name(reader, "<input>")
    }

    /// Reads from `reader`; errors name the input `name` (usually its path).
    pub fn with_name(reader: R, name: impl Into<String>) -> Self {
        Reader {
            reader,
            name: name.into(),
            line_no: 0,
            line: Vec::new(),
            pending_header: None,
            seen: HashMap::new(),
            duplicates: Vec::new(),
            reject_duplicates: false,
            finished: false,
            any_record: false,
        }
    }

    /// Makes a repeated id an error for that record instead of a warning.
    pub fn reject_duplicates(mut self, reject: bool) -> Self {
        self.reject_duplicates = reject;
        self
    }

    /// The records, rust-bio style (the reader is itself the iterator; this
    /// borrows it so [`Reader::duplicates`] can be asked afterwards).
    pub fn records(&mut self) -> &mut Self {
        self
    }

    /// The ids seen more than once so far, in order of their repeats.
    pub fn duplicates(&self) -> &[DuplicateId] {
        &self.duplicates
    }

    /// The name errors use for this input.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the next line into `self.line` without its line end; false at end of input.
    fn read_line(&mut self) -> Result<bool, ReadError> {
        super::read_line(&mut self.reader, &mut self.line, &mut self.line_no, &self.name)
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ReadError {
        ReadError::new(&self.name, message).at_line(line)
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        let (header_line, header) = match self.pending_header.take() {
            Some(pending) => pending,
            None => loop {
                if !self.read_line()? {
                    return Ok(None);
                }
                let line = self.line.trim_ascii();
                if line.is_empty() || line.starts_with(b";") {
                    continue;
                }
                if let Some(rest) = self.line.strip_prefix(b">") {
                    self.any_record = true;
                    break (self.line_no, rest.to_vec());
                }
                return Err(self.error(
                    self.line_no,
                    "sequence data before the first '>' header (not a FASTA file?)",
                ));
            },
        };

        // Sequence lines up to the next header; remember where each line
        // starts in the sequence so a bad residue can be reported by line.
        let mut sequence: Vec<u8> = Vec::new();
        let mut line_starts: Vec<(usize, usize)> = Vec::new();
        while self.read_line()? {
            if let Some(rest) = self.line.strip_prefix(b">") {
                self.pending_header = Some((self.line_no, rest.to_vec()));
                break;
            }
            let before = sequence.len();
            sequence.extend(
                self.line
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .map(u8::to_ascii_uppercase),
            );
            if sequence.len() > before {
                line_starts.push((before, self.line_no));
            }
        }

        // The id names the record everywhere (caches, predictions): it must be
        // exact, so bytes that are not UTF-8 are an error; a description is only
        // shown, so there they become U+FFFD with a warning.
        let split = header
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(header.len());
        let (raw_id, raw_rest) = header.split_at(split);
        let id = match std::str::from_utf8(raw_id) {
            Ok(id) => id.to_string(),
            Err(e) => {
                return Err(self
                    .error(
                        header_line,
                        format!(
                            "id is not valid UTF-8 (byte {:#04x} at column {}); fix the header's encoding",
                            raw_id[e.valid_up_to()],
                            e.valid_up_to() + 2
                        ),
                    )
                    .in_record(String::from_utf8_lossy(raw_id).into_owned())
                    .invalid_record())
            }
        };
        let description = match std::str::from_utf8(raw_rest) {
            Ok(d) => d.trim().to_string(),
            Err(_) => {
                tracing::warn!(
                    "{}:{}: description of {id} is not valid UTF-8; invalid bytes shown as U+FFFD",
                    self.name,
                    header_line
                );
                String::from_utf8_lossy(raw_rest).trim().to_string()
            }
        };
        if id.is_empty() {
            let err = self.error(header_line, "header has no id (the id must follow '>' directly)");
            let err = if description.is_empty() {
                err
            } else {
                err.in_record(description)
            };
            return Err(err.invalid_record());
        }
        if let Some(&first_line) = self.seen.get(&id) {
            let duplicate = DuplicateId {
                id: id.clone(),
                first_line,
                line: header_line,
            };
            if self.reject_duplicates {
                return Err(self
                    .error(header_line, format!("duplicate id (first seen on line {first_line})"))
                    .in_record(id)
                    .invalid_record());
            }
            if self.duplicates.len() < LOGGED_DUPLICATES {
                tracing::warn!(
                    "{}:{}: duplicate id {} (first seen on line {})",
                    self.name,
                    header_line,
                    id,
                    first_line
                );
            }
            self.duplicates.push(duplicate);
        } else {
            self.seen.insert(id.clone(), header_line);
        }

        if sequence.last() == Some(&b'*') {
            sequence.pop();
        }
        if sequence.is_empty() {
            return Err(self.error(header_line, "empty sequence").in_record(id).invalid_record());
        }
        if alphabet::looks_like_nucleotides(&sequence) {
            return Err(self
                .error(
                    header_line,
                    format!(
                        "looks like a nucleotide sequence ({} residues, all A/C/G/T/U/N); protfam embeds \
                         proteins: translate it first",
                        sequence.len()
                    ),
                )
                .in_record(id)
                .invalid_record());
        }
        if let Some((position, byte)) = alphabet::find_invalid(&sequence) {
            let line = line_starts
                .iter()
                .rev()
                .find(|(start, _)| *start <= position)
                .map_or(header_line, |&(_, l)| l);
            return Err(self
                .error(line, alphabet::describe_invalid(byte, position))
                .in_record(id)
                .invalid_record());
        }
        // Only accepted ASCII letters remain, so this cannot fail.
        let sequence = String::from_utf8(sequence).map_err(|e| self.error(header_line, e.to_string()))?;
        Ok(Some(Record {
            id,
            description,
            sequence,
            family: None,
            aligned: None,
        }))
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.finished = true;
                if self.any_record {
                    None
                } else {
                    Some(Err(ReadError::new(&self.name, "no FASTA record (the input is empty)")))
                }
            }
            Err(error) => {
                if !error.is_skippable() {
                    self.finished = true;
                }
                Some(Err(error))
            }
        }
    }
}

/// Writes [`Record`]s as FASTA (60 residues a line) through rust-bio's writer.
pub struct Writer<W: Write> {
    inner: bio::io::fasta::Writer<W>,
}

impl<W: Write> Writer<W> {
    /// Writes to `writer` (buffered internally), 60 residues a line.
    pub fn new(writer: W) -> Self {
        let mut inner = bio::io::fasta::Writer::new(writer);
        inner.set_linewrap(Some(60));
        Writer { inner }
    }

    /// Writes one record (`>id description`, then the sequence).
    pub fn write_record(&mut self, record: &Record) -> io::Result<()> {
        self.inner.write(&record.id, record.desc(), record.seq())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes records to a FASTA file at `path`.
pub fn write_file<'a>(path: &Path, records: impl IntoIterator<Item = &'a Record>) -> io::Result<()> {
    crate::atomic::write_atomic(path, |file| {
        let mut writer = Writer::new(file);
        for record in records {
            writer.write_record(record)?;
        }
        writer.flush()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Record, ReadError>> {
        Reader::with_name(text.as_bytes(), "t.fa").collect()
    }

    fn ok(text: &str) -> Vec<Record> {
        read(text).into_iter().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn multi_line_lower_case_stop_blank_lines_crlf() {
        let records = ok(";comment\r\n\r\n>a  first protein \r\nmkv\r\nLA \r\n\r\n\r\nGG*\r\n>b\r\nM\r\n");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, "a");
        assert_eq!(records[0].description, "first protein");
        assert_eq!(records[0].sequence, "MKVLAGG");
        assert_eq!(records[1].id, "b");
        assert_eq!(records[1].desc(), None);
        assert_eq!(records[1].sequence, "M");
    }

    #[test]
    fn no_final_newline_and_tab_separated_description() {
        let records = ok(">x\tdesc here\nACDE");
        assert_eq!(records[0].description, "desc here");
        assert_eq!(records[0].sequence, "ACDE");
        // An input with no record is an error naming the file (one rule for every reader).
        for empty in ["", "\n\n  \n"] {
            let out = read(empty);
            assert_eq!(out.len(), 1, "{empty:?}");
            let err = out[0].as_ref().unwrap_err().to_string();
            assert!(err.contains("t.fa") && err.contains("no FASTA record"), "{err}");
        }
    }

    #[test]
    fn empty_id_and_empty_record_are_record_errors() {
        let out = read(">\nMK\n> orphan\nMK\n>e\n>f\nMK\n");
        assert_eq!(out.len(), 4);
        let e0 = out[0].as_ref().unwrap_err();
        assert_eq!(
            e0.to_string(),
            "t.fa:1: header has no id (the id must follow '>' directly)"
        );
        assert!(e0.is_skippable());
        assert_eq!(out[1].as_ref().unwrap_err().line, Some(3));
        let e2 = out[2].as_ref().unwrap_err();
        assert_eq!(e2.to_string(), "t.fa:5 (record e): empty sequence");
        assert_eq!(out[3].as_ref().unwrap().id, "f");
        // A lone '*' is an empty sequence too.
        assert!(read(">s\n*\n")[0].as_ref().unwrap_err().message.contains("empty"));
    }

    #[test]
    fn bad_residues_name_their_line() {
        let out = read(">a\nMKV\nMK-V\n");
        let e = out[0].as_ref().unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.record.as_deref(), Some("a"));
        assert!(e.message.contains("gap '-'"), "{e}");
        let out = read(">a\nMK*V\n");
        assert!(out[0].as_ref().unwrap_err().message.contains("stop"));
    }

    #[test]
    fn text_before_first_header_is_fatal() {
        let out = read("MKV\n>a\nMK\n");
        assert_eq!(out.len(), 1);
        let e = out[0].as_ref().unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(!e.is_skippable());
    }

    #[test]
    fn duplicates_reported_or_rejected() {
        let text = ">a\nMK\n>b\nMK\n>a second\nMK\n";
        let mut reader = Reader::with_name(text.as_bytes(), "t.fa");
        assert_eq!(reader.records().filter(|r| r.is_ok()).count(), 3);
        assert_eq!(
            reader.duplicates(),
            [DuplicateId {
                id: "a".into(),
                first_line: 1,
                line: 5
            }]
        );
        let out: Vec<_> = Reader::with_name(text.as_bytes(), "t.fa")
            .reject_duplicates(true)
            .collect();
        assert!(out[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("t.fa:5 (record a): duplicate id"));
    }

    #[test]
    fn non_utf8_id_is_a_record_error_and_a_non_utf8_description_is_read_lossily() {
        // An id that is not UTF-8 would silently become another id: refused, naming the byte.
        let bytes = b">id\xff rest\nMK\n";
        let records: Vec<_> = Reader::new(&bytes[..]).collect();
        let err = records[0].as_ref().unwrap_err();
        assert!(err.is_skippable() && err.to_string().contains("0xff"), "{err}");
        let bytes = b">id rest\xff\nMK\n";
        let records: Vec<_> = Reader::new(&bytes[..]).collect();
        let record = records[0].as_ref().unwrap();
        assert_eq!(
            (record.id.as_str(), record.description.as_str()),
            ("id", "rest\u{fffd}")
        );
    }

    #[test]
    fn gzip_and_plain_files_open_the_same() {
        use flate2::write::GzEncoder;
        let dir = tempfile::tempdir().unwrap();
        let text = b">a\nMKV\n>b\nLLA\n";
        let plain = dir.path().join("a.fa");
        std::fs::write(&plain, text).unwrap();
        // gzip detected by content, whatever the name
        let gz = dir.path().join("a.fasta.data");
        let mut enc = GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
        enc.write_all(text).unwrap();
        enc.finish().unwrap();
        let a: Vec<_> = open(&plain).unwrap().map(|r| r.unwrap()).collect();
        let b: Vec<_> = open(&gz).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        let missing = open(&dir.path().join("nope.fa")).err().unwrap();
        assert!(missing.to_string().contains("nope.fa: cannot open"));
    }

    #[test]
    fn writer_round_trips() {
        let records = vec![
            Record {
                description: "d e".into(),
                ..Record::new("x", "M".repeat(130))
            },
            Record::new("y", "K"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.fa");
        write_file(&path, &records).unwrap();
        let back: Vec<_> = open(&path).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(back, records);
    }
}
