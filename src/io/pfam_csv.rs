//! Reader for the Pfam seed split CSV shards of Bileschi et al.:
//! `<root>/<split>/<part>/data-NNNNN-of-NNNNN`, each with the header
//! `family_id,sequence_name,family_accession,aligned_sequence,sequence`.
//!
//! The public Pfam 32 splits come as `random_split` (80/10/10 shards for
//! train/dev/test) and `clustered_split` (100/10/10); any split directory with
//! any number of shards is read the same way. The shard set is checked (all
//! `data-K-of-N` for `K < N`, with one `N`), every header is checked, and
//! shards are read in order and streamed record by record, so the full Pfam 32
//! split (1.3M training domains) never has to sit in memory. Shards may be
//! gzip-compressed (recognised by their magic bytes).
//!
//! Errors name the shard and line: a wrong header, a row with too few or too
//! many fields (truncated file) or broken quoting end the part; a row with an
//! empty field, residues outside the [`alphabet`](super::alphabet) policy or a
//! `sequence` that is not its de-gapped, upper-cased `aligned_sequence` (a row
//! cut inside its last field, a hand edit) is a record error that lenient
//! reading may skip.
//!
//! ```
//! use protfam::io::pfam_csv;
//!
//! let shard = "family_id,sequence_name,family_accession,aligned_sequence,sequence\n\
//!              Pkinase,KC1_YEAST/9-280,PF00069.25,.yrvg.KKIG,YRVGKKIG\n";
//! let records: Vec<_> = pfam_csv::ShardReader::from_reader(shard.as_bytes(), "data-00000-of-00001")
//!     .unwrap()
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(records[0].id, "KC1_YEAST/9-280");
//! assert_eq!(records[0].family.as_ref().unwrap().accession, "PF00069");
//! assert_eq!(records[0].sequence, "YRVGKKIG");
//! ```

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::alphabet;
use super::{Family, ReadError, Record};

/// The published column order; any other header is rejected.
pub const HEADER: [&str; 5] = [
    "family_id",
    "sequence_name",
    "family_accession",
    "aligned_sequence",
    "sequence",
];

/// The three parts of a split.
pub const PARTS: [&str; 3] = ["train", "dev", "test"];

/// The two published splits.
pub const SPLITS: [&str; 2] = ["random_split", "clustered_split"];

/// Parses a shard file name `data-K-of-N` (an extension such as `.csv` or
/// `.gz` is allowed) into `(K, N)`.
pub fn parse_shard_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("data-")?;
    let (index, rest) = rest.split_once("-of-")?;
    let count = rest.split('.').next()?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(index) || !all_digits(count) {
        return None;
    }
    Some((index.parse().ok()?, count.parse().ok()?))
}

/// Editor backups and temporary copies next to shards (`data-…~`, `.bak`,
/// `.orig`, `.swp`, `.tmp`, dot files): warned about and skipped, never read.
fn is_backup_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".bak", ".orig", ".swp", ".tmp", ".rej"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// The shard files of one part, in shard order, after checking that the set
/// is complete.
pub fn shard_paths(root: &Path, split: &str, part: &str) -> Result<Vec<PathBuf>, ReadError> {
    let split_dir = root.join(split);
    if !root.is_dir() {
        // Absolute in the message: a relative root is taken from the working directory.
        let shown = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        return Err(ReadError::new(shown, "no such dataset directory"));
    }
    if !split_dir.is_dir() {
        let mut found: Vec<String> = std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        return Err(ReadError::new(
            &split_dir,
            format!(
                "no such split directory (found under {}: {})",
                root.display(),
                found.join(", ")
            ),
        ));
    }
    let dir = split_dir.join(part);
    let entries = std::fs::read_dir(&dir).map_err(|e| ReadError::io(&dir, "cannot list shard directory", &e))?;
    let mut shards: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::io(&dir, "cannot list shard directory", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("data-") && is_backup_name(&name) {
            tracing::warn!(
                "{}: editor backup or temporary file, not a shard: ignored",
                entry.path().display()
            );
            continue;
        }
        match parse_shard_name(&name) {
            Some((index, count)) => shards.push((index, count, entry.path())),
            None if name.starts_with("data-") => {
                return Err(ReadError::new(
                    entry.path(),
                    "shard name is not of the form data-NNNNN-of-NNNNN",
                ))
            }
            None => {}
        }
    }
    if shards.is_empty() {
        return Err(ReadError::new(&dir, "no `data-NNNNN-of-NNNNN` shard files"));
    }
    shards.sort();
    // The count most shards agree on is taken as right; the others are named.
    let mut tally: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
    for s in &shards {
        *tally.entry(s.1).or_default() += 1;
    }
    let count = tally
        .iter()
        .max_by_key(|&(c, n)| (*n, std::cmp::Reverse(*c)))
        .map(|(c, _)| *c)
        .unwrap_or(0);
    let odd: Vec<String> = shards
        .iter()
        .filter(|s| s.1 != count)
        .map(|s| s.2.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect();
    if !odd.is_empty() {
        return Err(ReadError::new(
            &dir,
            format!(
                "{} say a different shard count than the {} shards of -of-{count:05}: mixed shard sets",
                odd.join(", "),
                tally[&count]
            ),
        ));
    }
    for (expected, (index, _, path)) in shards.iter().enumerate() {
        if *index != expected {
            let problem = if *index < expected {
                "duplicate shard"
            } else {
                "missing shard"
            };
            return Err(ReadError::new(
                &dir,
                format!(
                    "{problem} data-{expected:05}-of-{count:05} (next found: {})",
                    path.display()
                ),
            ));
        }
    }
    if shards.len() != count {
        return Err(ReadError::new(
            &dir,
            format!(
                "missing shard(s): found {} of {count}, data-{:05}-of-{count:05} onwards absent",
                shards.len(),
                shards.len()
            ),
        ));
    }
    Ok(shards.into_iter().map(|(_, _, path)| path).collect())
}

/// Streams the records of one part across all its shards.
pub fn read_part(root: &Path, split: &str, part: &str) -> Result<PartReader, ReadError> {
    Ok(PartReader {
        shards: shard_paths(root, split, part)?.into_iter(),
        current: None,
        finished: false,
    })
}

/// Iterator over all records of a part; see [`read_part`]. It ends after an
/// error that is not a record error.
pub struct PartReader {
    shards: std::vec::IntoIter<PathBuf>,
    current: Option<ShardReader<Box<dyn BufRead>>>,
    finished: bool,
}

/// `data-…~` style names are skipped only when they do not parse as shards.
#[cfg(test)]
mod backup_names {
    #[test]
    fn backups_are_recognised() {
        for n in [
            "data-00000-of-00004~",
            ".data-00000-of-00004.swp",
            "data-00001-of-00004.bak",
        ] {
            assert!(super::is_backup_name(n), "{n}");
        }
        assert!(!super::is_backup_name("data-00000-of-00004"));
    }
}

impl PartReader {
    /// The shards not yet opened.
    pub fn remaining_shards(&self) -> &[PathBuf] {
        self.shards.as_slice()
    }
}

impl Iterator for PartReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(shard) = &mut self.current {
                match shard.next() {
                    Some(Err(e)) if !e.is_skippable() => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                    Some(item) => return Some(item),
                    None => self.current = None,
                }
            }
            let path = self.shards.next()?;
            match ShardReader::open(&path) {
                Ok(reader) => self.current = Some(reader),
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Why `sequence` is not the de-gapped (`.` and `-` removed), upper-cased
/// `aligned_sequence`, or `None` when it is.
pub fn degapped_mismatch(aligned: &str, sequence: &str) -> Option<String> {
    let mut residues = aligned
        .bytes()
        .filter(|b| *b != b'.' && *b != b'-')
        .map(|b| b.to_ascii_uppercase());
    let mut position = 0usize;
    for s in sequence.bytes().map(|b| b.to_ascii_uppercase()) {
        match residues.next() {
            Some(a) if a == s => position += 1,
            Some(a) => {
                return Some(format!(
                    "sequence differs from the de-gapped aligned_sequence at residue {} ({:?} vs {:?}): edited row?",
                    position + 1,
                    s as char,
                    a as char
                ))
            }
            None => {
                return Some(format!(
                    "sequence has {} residues, the de-gapped aligned_sequence only {position}",
                    sequence.len()
                ))
            }
        }
    }
    let rest = residues.count();
    (rest > 0).then(|| {
        format!(
            "sequence has {position} residues, the de-gapped aligned_sequence {}: truncated row?",
            position + rest
        )
    })
}

/// Iterator over the records of one shard.
pub struct ShardReader<R: std::io::Read> {
    name: String,
    rows: csv::StringRecordsIntoIter<R>,
    finished: bool,
    /// A row was read: a shard with a header and no row is an error.
    any_row: bool,
    /// sequence_name -> line of its first row.
    seen: std::collections::HashMap<String, usize>,
    duplicates: Vec<super::fasta::DuplicateId>,
    reject_duplicates: bool,
}

impl ShardReader<Box<dyn BufRead>> {
    /// Opens a shard file (plain or gzip) and checks its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Self::from_reader(super::open_input(path)?, path.display().to_string())
    }
}

impl<R: std::io::Read> ShardReader<R> {
    /// Reads a shard from any reader; errors name it `name`.
    pub fn from_reader(reader: R, name: impl Into<String>) -> Result<Self, ReadError> {
        let name = name.into();
        // Records end at '\n' only (a CR before it is trimmed below): the csv
        // crate's own CRLF handling reports every line number one too low.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(reader);
        let header = reader
            .headers()
            .map_err(|e| ReadError::new(&name, format!("cannot read CSV header: {e}")).at_line(1))?;
        let found: Vec<&str> = header.iter().map(|f| f.trim_end_matches('\r')).collect();
        if found != HEADER {
            let shown = if found.iter().all(|f| f.is_empty()) {
                "an empty file".to_string()
            } else {
                format!("{:?}", found.join(","))
            };
            return Err(ReadError::new(
                &name,
                format!("wrong CSV header: found {shown}, expected {:?}", HEADER.join(",")),
            )
            .at_line(1));
        }
        Ok(ShardReader {
            name,
            rows: reader.into_records(),
            finished: false,
            any_row: false,
            seen: std::collections::HashMap::new(),
            duplicates: Vec::new(),
            reject_duplicates: false,
        })
    }

    /// Makes a repeated `sequence_name` an error for that row instead of a warning.
    pub fn reject_duplicates(mut self, reject: bool) -> Self {
        self.reject_duplicates = reject;
        self
    }

    /// The `sequence_name`s seen more than once so far.
    pub fn duplicates(&self) -> &[super::fasta::DuplicateId] {
        &self.duplicates
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ReadError {
        ReadError::new(&self.name, message).at_line(line)
    }
}

impl<R: std::io::Read> Iterator for ShardReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        // Blank lines (e.g. a lone CRLF at the end of a shard) are skipped.
        let row = loop {
            let Some(next) = self.rows.next() else {
                self.finished = true;
                return (!self.any_row).then(|| {
                    Err(ReadError::new(
                        &self.name,
                        "no record: the shard has a header and no row",
                    ))
                });
            };
            self.any_row = true;
            match next {
                Ok(row) if row.len() == 1 && row[0].trim().is_empty() => continue,
                Ok(row) => break row,
                Err(e) => {
                    self.finished = true;
                    let line = e.position().map(|p| p.line() as usize);
                    let mut err = match e.kind() {
                        csv::ErrorKind::Io(io) => ReadError::io(&self.name, "cannot read", io),
                        csv::ErrorKind::Utf8 { .. } => ReadError::new(&self.name, "invalid UTF-8 in row"),
                        _ => ReadError::new(&self.name, format!("malformed CSV: {e}")),
                    };
                    err.line = line;
                    return Some(Err(err));
                }
            }
        };
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        if row.len() != HEADER.len() {
            // A short row is what a shard cut off mid-write looks like; nothing after it is trustworthy.
            self.finished = true;
            let why = if row.len() < HEADER.len() {
                "truncated row?"
            } else {
                "unquoted comma?"
            };
            return Some(Err(self.error(
                line,
                format!("expected {} fields, found {} ({why})", HEADER.len(), row.len()),
            )));
        }
        let (family_id, name, accession, aligned) = (&row[0], &row[1], &row[2], &row[3]);
        let sequence = row[4].trim_end_matches('\r');
        let record_error = |message: String| {
            let err = self.error(line, message).invalid_record();
            if name.is_empty() {
                err
            } else {
                err.in_record(name)
            }
        };
        for (value, column) in [
            (family_id, "family_id"),
            (name, "sequence_name"),
            (accession, "family_accession"),
        ] {
            if value.trim().is_empty() {
                return Some(Err(record_error(format!("empty {column}"))));
            }
        }
        if sequence.is_empty() {
            return Some(Err(record_error("empty sequence".to_string())));
        }
        if let Some((position, byte)) = alphabet::find_invalid(sequence.as_bytes()) {
            return Some(Err(record_error(alphabet::describe_invalid(byte, position))));
        }
        // The two residue columns say the same thing twice; a row cut off mid-write
        // (or edited by hand) is caught by their disagreeing.
        if !aligned.is_empty() {
            if let Some(message) = degapped_mismatch(aligned, sequence) {
                return Some(Err(record_error(message)));
            }
        }
        // Duplicate names last: the checks above borrow the reader.
        let id = name.trim();
        match self.seen.get(id) {
            Some(&first_line) if self.reject_duplicates => {
                return Some(Err(self
                    .error(
                        line,
                        format!("duplicate sequence_name (first seen on line {first_line})"),
                    )
                    .in_record(id)
                    .invalid_record()));
            }
            Some(&first_line) => {
                if self.duplicates.len() < 10 {
                    tracing::warn!(
                        "{}:{line}: duplicate sequence_name {id} (first seen on line {first_line})",
                        self.name
                    );
                }
                self.duplicates.push(super::fasta::DuplicateId {
                    id: id.to_string(),
                    first_line,
                    line,
                });
            }
            None => {
                self.seen.insert(id.to_string(), line);
            }
        }
        Some(Ok(Record {
            id: name.trim().to_string(),
            description: String::new(),
            sequence: sequence.to_ascii_uppercase(),
            family: Some(Family::new(family_id.trim(), accession.trim())),
            aligned: if aligned.is_empty() {
                None
            } else {
                Some(aligned.to_string())
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "family_id,sequence_name,family_accession,aligned_sequence,sequence\n";

    fn read(body: &str) -> Vec<Result<Record, ReadError>> {
        let text = format!("{HEAD}{body}");
        ShardReader::from_reader(text.as_bytes(), "shard").unwrap().collect()
    }

    #[test]
    fn shard_names() {
        assert_eq!(parse_shard_name("data-00003-of-00080"), Some((3, 80)));
        assert_eq!(parse_shard_name("data-1-of-2.csv.gz"), Some((1, 2)));
        assert_eq!(parse_shard_name("data-x-of-2"), None);
        assert_eq!(parse_shard_name("data--of-2"), None);
        assert_eq!(parse_shard_name("README"), None);
    }

    #[test]
    fn quoted_fields_crlf_and_lower_case() {
        let out = read("\"A,B\",\"n/1-3\",PF1.2,\"m.kv\",mkv\r\nC,n2/1-2,PF2,,MK\r\n");
        let r0 = out[0].as_ref().unwrap();
        assert_eq!(r0.family, Some(Family::new("A,B", "PF1")));
        assert_eq!(r0.sequence, "MKV");
        assert_eq!(r0.aligned.as_deref(), Some("m.kv"));
        assert_eq!(out[1].as_ref().unwrap().aligned, None);
    }

    #[test]
    fn crlf_line_numbers_and_blank_lines() {
        let text = format!(
            "{}\r\nA,n1,PF1,MK,MK\r\nA,n2,PF1,M1,M1\r\n\r\nA,n3,PF1,\"MK\",\"MK\"\r\nA,n4\r\n",
            HEAD.trim_end()
        );
        let out: Vec<_> = ShardReader::from_reader(text.as_bytes(), "s").unwrap().collect();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].as_ref().unwrap().sequence, "MK");
        assert_eq!(out[1].as_ref().unwrap_err().line, Some(3));
        assert_eq!(out[2].as_ref().unwrap().sequence, "MK");
        assert_eq!(
            out[3].as_ref().unwrap_err().to_string(),
            "s:6: expected 5 fields, found 2 (truncated row?)"
        );
    }

    #[test]
    fn header_is_checked() {
        let bad = "family_id,sequence_name,family_accession,sequence,aligned_sequence\nA,n,PF1,MK,MK\n";
        let e = ShardReader::from_reader(bad.as_bytes(), "s").err().unwrap();
        assert!(e.to_string().starts_with("s:1: wrong CSV header"), "{e}");
        let e = ShardReader::from_reader(&b""[..], "s").err().unwrap();
        assert!(e.message.contains("empty file"), "{e}");
    }

    #[test]
    fn truncated_row_ends_the_shard() {
        let out = read("A,n1,PF1,MK,MK\nA,n2,PF1\nA,n3,PF1,MK,MK\n");
        assert_eq!(out.len(), 2);
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(e.to_string(), "shard:3: expected 5 fields, found 3 (truncated row?)");
        assert!(!e.is_skippable());
    }

    #[test]
    fn empty_fields_and_bad_residues_are_record_errors() {
        let out = read(",n1,PF1,MK,MK\nA,n2,PF1,,\nA,n3,PF1,M1,M1\nA,n4,PF1,MK,MK\n");
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[0].as_ref().unwrap_err().to_string(),
            "shard:2 (record n1): empty family_id"
        );
        assert_eq!(
            out[1].as_ref().unwrap_err().to_string(),
            "shard:3 (record n2): empty sequence"
        );
        assert!(out[2].as_ref().unwrap_err().message.contains("digit '1'"));
        assert!(out.iter().take(3).all(|r| r.as_ref().unwrap_err().is_skippable()));
        assert_eq!(out[3].as_ref().unwrap().id, "n4");
    }

    /// Issue 15 item 3: a shard cut inside the last row's `sequence` field was accepted.
    #[test]
    fn sequence_must_be_the_degapped_alignment() {
        let out = read("A,n1,PF1,.mK-v.,MKV\nA,n2,PF1,.MKV-AG,MKV\nA,n3,PF1,MKVAG,MKLAG\nA,n4,PF1,MK,MKV");
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].as_ref().unwrap().sequence, "MKV");
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(
            e.to_string(),
            "shard:3 (record n2): sequence has 3 residues, the de-gapped aligned_sequence 5: truncated row?"
        );
        assert!(e.is_skippable());
        let e = out[2].as_ref().unwrap_err().to_string();
        assert!(e.starts_with("shard:4 (record n3): sequence differs"), "{e}");
        assert!(e.contains("residue 3"), "{e}");
        let e = out[3].as_ref().unwrap_err().to_string();
        assert_eq!(
            e,
            "shard:5 (record n4): sequence has 3 residues, the de-gapped aligned_sequence only 2"
        );
        assert_eq!(degapped_mismatch("..a-b.", "AB"), None);
    }

    #[test]
    fn unterminated_quote_is_an_error_not_a_panic() {
        let out = read("A,n1,PF1,MK,\"MK\n");
        assert!(out.iter().any(|r| r.is_err()));
    }

    fn write_part(root: &Path, part: &str, shards: &[&str]) {
        let dir = root.join("s").join(part);
        std::fs::create_dir_all(&dir).unwrap();
        for name in shards {
            std::fs::write(dir.join(name), format!("{HEAD}F,{name}/1-2,PF1.1,MK,MK\n")).unwrap();
        }
    }

    #[test]
    fn shard_set_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        write_part(
            dir.path(),
            "train",
            &["data-00001-of-00003", "data-00000-of-00003", "data-00002-of-00003"],
        );
        let ids: Vec<String> = read_part(dir.path(), "s", "train")
            .unwrap()
            .map(|r| r.unwrap().id)
            .collect();
        assert_eq!(
            ids,
            [
                "data-00000-of-00003/1-2",
                "data-00001-of-00003/1-2",
                "data-00002-of-00003/1-2"
            ]
        );

        write_part(dir.path(), "dev", &["data-00000-of-00003", "data-00002-of-00003"]);
        let e = read_part(dir.path(), "s", "dev").err().unwrap();
        assert!(e.message.contains("missing shard data-00001-of-00003"), "{e}");
        write_part(dir.path(), "test", &["data-00000-of-00002"]);
        assert!(read_part(dir.path(), "s", "test")
            .err()
            .unwrap()
            .message
            .contains("found 1 of 2"));
        let e = read_part(dir.path(), "nosplit", "train").err().unwrap();
        assert!(e.message.contains("no such split directory (found under"), "{e}");
        assert!(e.message.contains(": s"), "{e}");
    }

    #[test]
    fn part_reader_stops_at_a_broken_shard() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("s/train");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("data-00000-of-00002"), "wrong,header\n").unwrap();
        std::fs::write(part.join("data-00001-of-00002"), format!("{HEAD}F,n/1-2,PF1,MK,MK\n")).unwrap();
        let out: Vec<_> = read_part(dir.path(), "s", "train").unwrap().collect();
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("data-00000-of-00002:1: wrong CSV header"));
    }
}
