//! Residue policy: which letters a protein sequence may contain, and the
//! strict/lenient wrapper every command puts around a reader.
//!
//! The 20 standard amino acids and `X` are accepted; the ambiguous or rare
//! `B`, `Z`, `U`, `O`, `J` are accepted too and each model maps them as its
//! reference implementation does. Anything else (digits, gaps `-`/`.`, `*`
//! inside a sequence, punctuation, non-ASCII bytes) and empty sequences are
//! errors naming the file and record. The readers in [`crate::io`] apply the
//! policy themselves, so their errors also carry the line of the bad residue;
//! [`Checked`] then decides what an error means: strict reading stops at the
//! first one, lenient reading skips bad records with a counted warning and
//! still stops at errors that concern the whole file.
//!
//! ```
//! use protfam::io::{alphabet, fasta};
//!
//! let text = ">ok\nMKV\n>bad\nMK1V\n>ok2\nACD\n";
//! let reader = fasta::Reader::with_name(text.as_bytes(), "in.fa");
//! let mut records = alphabet::checked(reader, true);
//! let ids: Vec<String> = records.by_ref().map(|r| r.unwrap().id).collect();
//! assert_eq!(ids, ["ok", "ok2"]);
//! assert_eq!(records.report().skipped, 1);
//! assert!(records.report().first_errors[0].contains("in.fa:4"));
//! ```

use std::fmt;

use super::{ReadError, Record};

/// Letters every model accepts (after upper-casing).
pub const ACCEPTED: &[u8] = b"ACDEFGHIKLMNPQRSTVWYXBZUOJ";

/// The 20 standard amino acids.
pub const STANDARD: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";

/// How many skipped-record messages a [`SkipReport`] keeps and logs.
pub const KEPT_ERRORS: usize = 10;

const fn accepted_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ACCEPTED.len() {
        table[ACCEPTED[i] as usize] = true;
        table[ACCEPTED[i].to_ascii_lowercase() as usize] = true;
        i += 1;
    }
    table
}

static IS_ACCEPTED: [bool; 256] = accepted_table();

/// Whether one byte (either case) is an accepted residue letter.
pub fn is_accepted(residue: u8) -> bool {
    IS_ACCEPTED[residue as usize]
}

/// The first residue outside the policy: its 0-based position and byte.
pub fn find_invalid(sequence: &[u8]) -> Option<(usize, u8)> {
    sequence.iter().position(|&b| !is_accepted(b)).map(|i| (i, sequence[i]))
}

/// A human-readable description of why `byte` is rejected.
pub fn describe_invalid(byte: u8, position: usize) -> String {
    let what = match byte {
        b'-' | b'.' => format!("gap {:?} (sequences must be unaligned)", byte as char),
        b'*' => "stop '*' inside the sequence".to_string(),
        b'0'..=b'9' => format!("digit {:?}", byte as char),
        b if b.is_ascii_graphic() => format!("{:?}", b as char),
        b => format!("byte 0x{b:02x}"),
    };
    format!("invalid residue {what} at position {}", position + 1)
}

/// Checks a sequence; on failure returns a message naming the first bad residue.
pub fn check(sequence: &str) -> Result<(), String> {
    if sequence.is_empty() {
        return Err("empty sequence".to_string());
    }
    match find_invalid(sequence.as_bytes()) {
        Some((i, b)) => Err(describe_invalid(b, i)),
        None => Ok(()),
    }
}

/// What lenient reading skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkipReport {
    /// Records skipped.
    pub skipped: usize,
    /// The messages of the first [`KEPT_ERRORS`] skipped records.
    pub first_errors: Vec<String>,
}

impl SkipReport {
    fn add(&mut self, error: &ReadError) {
        self.skipped += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            tracing::warn!("skipping record: {error}");
            self.first_errors.push(error.to_string());
            if self.first_errors.len() == KEPT_ERRORS {
                tracing::warn!("further skipped records are counted but not logged");
            }
        }
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} record(s) skipped", self.skipped)?;
        if let Some(first) = self.first_errors.first() {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// A reader wrapped with the residue policy; see [`checked`].
pub struct Checked<I> {
    inner: I,
    lenient: bool,
    source: String,
    report: SkipReport,
    finished: bool,
}

/// Wraps any record iterator with the residue policy.
///
/// Strict (`lenient == false`): every record is passed through; the first
/// error is returned and the iteration ends. Lenient: errors that concern one
/// record ([`ReadError::is_skippable`]) are logged, counted in
/// [`Checked::report`] and skipped; any other error still ends the iteration.
/// Records are re-checked against the policy, so iterators that do not come
/// from this crate's readers get the same guarantee.
pub fn checked<I>(records: I, lenient: bool) -> Checked<I::IntoIter>
where
    I: IntoIterator<Item = Result<Record, ReadError>>,
{
    Checked {
        inner: records.into_iter(),
        lenient,
        source: "<records>".to_string(),
        report: SkipReport::default(),
        finished: false,
    }
}

impl<I> Checked<I> {
    /// Names the input in errors raised by the re-check (readers name their own file).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// What has been skipped so far.
    pub fn report(&self) -> &SkipReport {
        &self.report
    }

    pub fn into_report(self) -> SkipReport {
        self.report
    }

    /// The wrapped reader (e.g. to ask a FASTA reader for duplicate ids).
    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    pub fn into_inner(self) -> I {
        self.inner
    }
}

impl<I: Iterator<Item = Result<Record, ReadError>>> Iterator for Checked<I> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            let item = match self.inner.next() {
                Some(item) => item,
                None => {
                    self.finished = true;
                    return None;
                }
            };
            let error = match item {
                Ok(record) => match check(&record.sequence) {
                    Ok(()) => return Some(Ok(record)),
                    Err(message) => ReadError::new(&self.source, message)
                        .in_record(record.id)
                        .invalid_record(),
                },
                Err(error) => error,
            };
            if self.lenient && error.is_skippable() {
                self.report.add(&error);
                continue;
            }
            self.finished = true;
            return Some(Err(error));
        }
    }
}

/// Shortest sequence [`looks_like_nucleotides`] judges: short peptides of
/// A, C, G, T and N residues do occur.
pub const NUCLEOTIDE_MIN_LEN: usize = 20;

/// Whether a sequence is almost surely DNA or RNA rather than protein: at least
/// [`NUCLEOTIDE_MIN_LEN`] letters, all of them A, C, G, T, U or N. (Twenty
/// residues drawn from those five amino acids alone is vanishingly rare in
/// real proteins; a nucleotide FASTA given by mistake would otherwise be
/// embedded as a protein without a word.)
pub fn looks_like_nucleotides(sequence: &[u8]) -> bool {
    sequence.len() >= NUCLEOTIDE_MIN_LEN
        && sequence
            .iter()
            .all(|b| matches!(b.to_ascii_uppercase(), b'A' | b'C' | b'G' | b'T' | b'U' | b'N'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str, seq: &str) -> Result<Record, ReadError> {
        Ok(Record::new(id, seq))
    }

    #[test]
    fn policy_accepts_standard_ambiguous_and_lower_case() {
        assert!(check("ACDEFGHIKLMNPQRSTVWYXBZUOJ").is_ok());
        assert!(check("acdefghiklmnpqrstvwyxbzuoj").is_ok());
    }

    #[test]
    fn policy_rejects_with_position() {
        assert_eq!(check(""), Err("empty sequence".to_string()));
        assert!(check("MK1").unwrap_err().contains("digit '1' at position 3"));
        assert!(check("M-K").unwrap_err().contains("gap '-'"));
        assert!(check("MK*V").unwrap_err().contains("stop"));
        assert!(check("MKé").unwrap_err().contains("byte 0xc3"));
        for b in 0..=255u8 {
            let expected = ACCEPTED.contains(&b.to_ascii_uppercase());
            assert_eq!(is_accepted(b), expected, "byte {b}");
        }
    }

    #[test]
    fn strict_stops_at_first_error() {
        let input = vec![ok("a", "MK"), ok("b", "M1"), ok("c", "MK")];
        let out: Vec<_> = checked(input, false).with_source("x.fa").collect();
        assert_eq!(out.len(), 2);
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.fa (record b): invalid residue digit '1' at position 2"
        );
    }

    #[test]
    fn lenient_skips_record_errors_but_not_format_errors() {
        let input = vec![
            ok("a", "MK"),
            ok("b", ""),
            Err(ReadError::new("f", "bad residue").at_line(3).invalid_record()),
            ok("c", "MK"),
            Err(ReadError::new("f", "truncated").at_line(9)),
            ok("d", "MK"),
        ];
        let mut it = checked(input, true);
        let out: Vec<_> = it.by_ref().collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].as_ref().unwrap().id, "c");
        assert!(out[2].as_ref().unwrap_err().to_string().contains("f:9"));
        assert_eq!(it.report().skipped, 2);
        assert_eq!(it.report().first_errors.len(), 2);
        assert!(it.report().to_string().starts_with("2 record(s) skipped"));
    }

    #[test]
    fn report_keeps_only_the_first_errors() {
        let input: Vec<_> = (0..25).map(|i| ok(&format!("r{i}"), "M?")).collect();
        let report = {
            let mut it = checked(input, true);
            assert_eq!(it.by_ref().count(), 0);
            it.into_report()
        };
        assert_eq!(report.skipped, 25);
        assert_eq!(report.first_errors.len(), KEPT_ERRORS);
        assert!(report.first_errors[0].contains("record r0"));
    }
}
