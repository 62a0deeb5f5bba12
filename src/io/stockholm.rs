//! Reader for Stockholm multiple alignments such as Pfam seed alignments
//! (`Pfam-A.seed`, HMMER's tutorial files).
//!
//! Each alignment starts with `# STOCKHOLM 1.0` and ends with `//`; a file may
//! hold many. `#=GF ID` and `#=GF AC` give the family of every sequence in the
//! alignment (the accession version is stripped, `PF00041.20` -> `PF00041`;
//! an alignment with an `ID` but no `AC` uses its `ID` as accession, one with
//! neither has no family). `#=GS <name> DE` becomes the record description;
//! other `#=GS`, `#=GR`, `#=GC` and `#` lines are skipped. Alignments may be
//! split into blocks separated by blank lines; every block must list the same
//! names in the same order, and a block with an unknown, missing or
//! misplaced name is an error naming the file and line. Each record's
//! `sequence` is its aligned row with the gaps (`.`, `-`, `~`) removed and
//! upper-cased; `aligned` keeps the row as written.
//!
//! ```
//! use protfam::io::stockholm;
//!
//! let text = "\
//! ## STOCKHOLM 1.0
//! #=GF ID   fn3
//! #=GF AC   PF00041.20
//! #=GS A/1-5 DE first
//! A/1-5   MK.va
//! B/3-6   -KIV.
//!
//! A/1-5   LL
//! B/3-6   L-
//! //
//! ";
//! let records: Vec<_> = stockholm::Reader::with_name(text.as_bytes(), "fn3.sto")
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[0].sequence, "MKVALL");
//! assert_eq!(records[0].description, "first");
//! assert_eq!(records[1].sequence, "KIVL");
//! let family = records[1].family.as_ref().unwrap();
//! assert_eq!((family.family_id.as_str(), family.accession.as_str()), ("fn3", "PF00041"));
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::Path;

use super::alphabet;
use super::{Family, ReadError, Record};

/// Opens a Stockholm file: a path, `-` for standard input, gzip or plain.
pub fn open(path: &Path) -> Result<Reader<Box<dyn BufRead>>, ReadError> {
    let input = super::open_input(path)?;
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    Ok(Reader::with_name(input, name))
}

/// One whole alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    /// `#=GF ID`, if given.
    pub id: Option<String>,
    /// `#=GF AC` as written (with its version), if given.
    pub accession: Option<String>,
    /// The family its sequences belong to (see the module docs).
    pub family: Option<Family>,
    /// Line of the `# STOCKHOLM` header.
    pub line: usize,
    /// The rows, in file order; records that broke the residue policy are
    /// errors here, in their place.
    pub records: Vec<Result<Record, ReadError>>,
}

/// Streams the records of every alignment in a Stockholm file.
pub struct Reader<R> {
    reader: R,
    name: String,
    line_no: usize,
    line: Vec<u8>,
    queue: VecDeque<Result<Record, ReadError>>,
    finished: bool,
}

impl<R: BufRead> Reader<R> {
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
            queue: VecDeque::new(),
            finished: false,
        }
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ReadError {
        ReadError::new(&self.name, message).at_line(line)
    }

    fn read_line(&mut self) -> Result<bool, ReadError> {
        super::read_line(&mut self.reader, &mut self.line, &mut self.line_no, &self.name)
    }

    /// Reads the next whole alignment; `None` at the end of the input.
    pub fn next_alignment(&mut self) -> Option<Result<Alignment, ReadError>> {
        if self.finished {
            return None;
        }
        let result = self.read_alignment();
        if !matches!(result, Ok(Some(_))) {
            self.finished = true;
        }
        result.transpose()
    }

    /// One alignment: its header, its markup and sequence lines up to `//`,
    /// then the checks that need the whole alignment and the records.
    fn read_alignment(&mut self) -> Result<Option<Alignment>, ReadError> {
        let Some(header_line) = self.read_header()? else {
            return Ok(None);
        };
        let mut draft = Draft::default();
        loop {
            if !self.read_line()? {
                return Err(self.error(self.line_no, "alignment not terminated by '//' (truncated file?)"));
            }
            let line = String::from_utf8_lossy(self.line.trim_ascii()).into_owned();
            if line.is_empty() || line == "//" {
                self.end_block(&mut draft)?;
                if line == "//" {
                    break;
                }
            } else if line.starts_with("#=") {
                self.markup_line(&line, &mut draft)?;
            } else if !line.starts_with('#') {
                self.sequence_line(&line, &mut draft)?;
            }
        }
        self.check_complete(&draft, header_line)?;
        Ok(Some(self.assemble(draft, header_line)))
    }

    /// Skips blank lines up to the `# STOCKHOLM 1.x` header and returns its
    /// line; `None` at the end of the input.
    fn read_header(&mut self) -> Result<Option<usize>, ReadError> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let line = self.line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if line.starts_with(b"# STOCKHOLM 1.") {
                return Ok(Some(self.line_no));
            }
            return Err(self.error(
                self.line_no,
                "expected '# STOCKHOLM 1.0' header (not a Stockholm file?)",
            ));
        }
    }

    /// A blank line or `//`: closes the open block, which after the first
    /// block must have listed every name.
    fn end_block(&self, draft: &mut Draft) -> Result<(), ReadError> {
        if !draft.in_block {
            return Ok(());
        }
        if draft.block > 0 && draft.block_row < draft.rows.len() {
            return Err(self.error(
                self.line_no,
                format!(
                    "block starting at line {} has {} sequence(s), expected {}: `{}` is missing",
                    draft.block_start,
                    draft.block_row,
                    draft.rows.len(),
                    draft.rows[draft.block_row].name
                ),
            ));
        }
        draft.in_block = false;
        draft.block += 1;
        Ok(())
    }

    /// A `#=` line: `#=GF ID` / `AC` set the family, `#=GS <name> DE` the
    /// description; every `#=GS` / `#=GR` name is kept for `check_complete`.
    fn markup_line(&self, line: &str, draft: &mut Draft) -> Result<(), ReadError> {
        let (markup, rest) = split_token(line);
        let (first, after_first) = split_token(rest);
        let (second, third) = split_token(after_first);
        if first.is_empty() {
            return Err(self.error(self.line_no, format!("{markup} line without a tag")));
        }
        match markup {
            "#=GF" => {
                let value = after_first.trim();
                match first {
                    "ID" | "AC" if value.is_empty() => {
                        return Err(self.error(self.line_no, format!("#=GF {first} line without a value")))
                    }
                    "ID" => draft.id = Some(value.to_string()),
                    "AC" => draft.accession = Some(value.to_string()),
                    _ => {}
                }
            }
            "#=GS" | "#=GR" => {
                if second.is_empty() {
                    return Err(self.error(self.line_no, format!("{markup} line without a tag for `{first}`")));
                }
                draft.annotated.push((first.to_string(), self.line_no));
                if markup == "#=GS" && second == "DE" {
                    let description = draft.descriptions.entry(first.to_string()).or_default();
                    if !description.is_empty() {
                        description.push(' ');
                    }
                    description.push_str(third.trim());
                }
            }
            "#=GC" => {}
            _ => {
                return Err(self.error(
                    self.line_no,
                    format!("unknown markup {markup} (expected #=GF, #=GS, #=GR or #=GC)"),
                ))
            }
        }
        Ok(())
    }

    /// A `<name> <aligned residues>` line: in the first block it adds a row,
    /// in later blocks it extends the row expected at its place.
    fn sequence_line(&self, line: &str, draft: &mut Draft) -> Result<(), ReadError> {
        let mut fields = line.split_ascii_whitespace();
        let name = fields.next().unwrap_or_default().to_string();
        let Some(residues) = fields.next() else {
            return Err(self.error(self.line_no, format!("sequence line for `{name}` has no residues")));
        };
        if fields.next().is_some() {
            return Err(self.error(
                self.line_no,
                format!("sequence line for `{name}` has spaces inside the sequence"),
            ));
        }
        if !draft.in_block {
            draft.in_block = true;
            draft.block_row = 0;
            draft.block_start = self.line_no;
        }
        let rows = &mut draft.rows;
        if draft.block == 0 {
            if let Some(&first) = draft.index.get(&name) {
                return Err(self.error(
                    self.line_no,
                    format!(
                        "`{name}` appears twice in the first block (also on line {})",
                        rows[first].line
                    ),
                ));
            }
            draft.index.insert(name.clone(), rows.len());
            rows.push(Row {
                name,
                line: self.line_no,
                aligned: residues.as_bytes().to_vec(),
            });
        } else {
            let Some(expected) = rows.get(draft.block_row) else {
                return Err(self.error(
                    self.line_no,
                    format!(
                        "block starting at line {} has more sequences than the first block ({}): `{name}`",
                        draft.block_start,
                        rows.len()
                    ),
                ));
            };
            if expected.name != name {
                let what = if draft.index.contains_key(&name) {
                    "out of order"
                } else {
                    "unknown name"
                };
                return Err(self.error(
                    self.line_no,
                    format!(
                        "{what}: found `{name}` where `{}` was expected (same order in every block)",
                        expected.name
                    ),
                ));
            }
            rows[draft.block_row].aligned.extend_from_slice(residues.as_bytes());
        }
        draft.block_row += 1;
        Ok(())
    }

    /// Checks that need the whole alignment: at least one row, every
    /// annotated name a row, and all rows equally long.
    fn check_complete(&self, draft: &Draft, header_line: usize) -> Result<(), ReadError> {
        let rows = &draft.rows;
        if rows.is_empty() {
            return Err(self.error(header_line, "alignment has no sequences"));
        }
        if let Some((name, line)) = draft.annotated.iter().find(|(name, _)| !draft.index.contains_key(name)) {
            return Err(self.error(
                *line,
                format!("annotation for `{name}`, which has no sequence in this alignment"),
            ));
        }
        let width = rows[0].aligned.len();
        if let Some(row) = rows.iter().find(|r| r.aligned.len() != width) {
            return Err(self.error(
                row.line,
                format!(
                    "`{}` has {} aligned columns, `{}` has {width}: rows of an alignment must be equally long",
                    row.name,
                    row.aligned.len(),
                    rows[0].name
                ),
            ));
        }
        Ok(())
    }

    /// The checked alignment: its family from `ID` / `AC`, and one record per
    /// row with the gaps removed; a row that breaks the residue policy is an
    /// error in its place.
    fn assemble(&self, draft: Draft, header_line: usize) -> Alignment {
        let Draft {
            id,
            accession,
            mut descriptions,
            rows,
            ..
        } = draft;
        let family = match (&id, &accession) {
            (_, Some(ac)) => {
                let accession = Family::new("", ac).accession;
                Some(Family::new(id.clone().unwrap_or_else(|| accession.clone()), &accession))
            }
            (Some(id), None) => Some(Family::new(id.clone(), id)),
            (None, None) => None,
        };
        let records = rows
            .into_iter()
            .map(|row| {
                let sequence: Vec<u8> = row
                    .aligned
                    .iter()
                    .filter(|b| !matches!(b, b'.' | b'-' | b'~'))
                    .map(u8::to_ascii_uppercase)
                    .collect();
                if sequence.is_empty() {
                    return Err(self
                        .error(row.line, "empty sequence (only gaps)")
                        .in_record(row.name)
                        .invalid_record());
                }
                if let Some((position, byte)) = alphabet::find_invalid(&sequence) {
                    return Err(self
                        .error(row.line, alphabet::describe_invalid(byte, position))
                        .in_record(row.name)
                        .invalid_record());
                }
                Ok(Record {
                    description: descriptions.remove(&row.name).unwrap_or_default(),
                    // Only accepted ASCII letters remain.
                    sequence: String::from_utf8_lossy(&sequence).into_owned(),
                    aligned: Some(String::from_utf8_lossy(&row.aligned).into_owned()),
                    family: family.clone(),
                    id: row.name,
                })
            })
            .collect();
        Alignment {
            id,
            accession,
            family,
            line: header_line,
            records,
        }
    }
}

/// What has been read of one alignment so far.
#[derive(Default)]
struct Draft {
    /// `#=GF ID` and `#=GF AC` as written.
    id: Option<String>,
    accession: Option<String>,
    /// `#=GS <name> DE` lines, joined with spaces per name.
    descriptions: HashMap<String, String>,
    /// (name, line) of every `#=GS` / `#=GR` line, checked against the rows at the end.
    annotated: Vec<(String, usize)>,
    /// The rows in first-block order, and each name's place among them.
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    /// Blocks closed so far: the first block defines the names and their order.
    block: usize,
    /// Rows seen in the open block, and its first line.
    block_row: usize,
    block_start: usize,
    /// Whether a block is open (a sequence line since the last blank line).
    in_block: bool,
}

/// One row being assembled.
struct Row {
    name: String,
    line: usize,
    aligned: Vec<u8>,
}

/// Splits off the first whitespace-delimited token: `(token, rest without leading space)`.
fn split_token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(|c: char| c.is_ascii_whitespace()) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            match self.next_alignment()? {
                Ok(alignment) => self.queue.extend(alignment.records),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Record, ReadError>> {
        Reader::with_name(text.as_bytes(), "t.sto").collect()
    }

    #[test]
    fn multiple_alignments_and_annotation_lines() {
        let text = "# STOCKHOLM 1.0\r\n#=GF ID a\r\n#=GF AC PF00001.3\r\n#=GS s1   WT   0.5\r\n#=GS  s2 DE   second  one\r\n#=GS s2 DE more\r\n#=GC SS_cons ..\r\ns1 MK\r\n#=GR s1 SS ..\r\ns2 m.\r\n//\r\n\n# STOCKHOLM 1.0\n#=GF ID b\ns3 -V-\n//\n# STOCKHOLM 1.0\nx AC\n//\n";
        let records: Vec<Record> = read(text).into_iter().map(|r| r.unwrap()).collect();
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2", "s3", "x"]);
        assert_eq!(records[1].sequence, "M");
        assert_eq!(records[1].aligned.as_deref(), Some("m."));
        assert_eq!(records[1].description, "second  one more");
        assert_eq!(records[0].family, Some(Family::new("a", "PF00001")));
        assert_eq!(records[2].family, Some(Family::new("b", "b")));
        assert_eq!(records[3].family, None);
    }

    #[test]
    fn alignment_metadata() {
        let mut reader = Reader::new("\n# STOCKHOLM 1.0\n#=GF AC PF9.1\ns A\n//\n".as_bytes());
        let alignment = reader.next_alignment().unwrap().unwrap();
        assert_eq!(alignment.line, 2);
        assert_eq!(alignment.accession.as_deref(), Some("PF9.1"));
        assert_eq!(alignment.family, Some(Family::new("PF9", "PF9")));
        assert!(reader.next_alignment().is_none());
    }

    fn first_error(text: &str) -> ReadError {
        read(text).into_iter().find_map(|r| r.err()).expect("an error")
    }

    #[test]
    fn block_errors_name_the_line() {
        let e = first_error("# STOCKHOLM 1.0\na MK\nb MK\n\na LL\nc LL\n//\n");
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("unknown name: found `c` where `b`"), "{e}");
        let e = first_error("# STOCKHOLM 1.0\na MK\nb MK\n\nb LL\na LL\n//\n");
        assert!(e.message.contains("out of order"), "{e}");
        let e = first_error("# STOCKHOLM 1.0\na MK\nb MK\n\na LL\n//\n");
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("`b` is missing"), "{e}");
        let e = first_error("# STOCKHOLM 1.0\na MK\nb MK\n\na LL\nb LL\nc LL\n//\n");
        assert!(e.message.contains("more sequences"), "{e}");
        let e = first_error("# STOCKHOLM 1.0\na MK\na MK\n//\n");
        assert!(e.message.contains("twice"), "{e}");
        let e = first_error("# STOCKHOLM 1.0\na MKV\nb MK\n//\n");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn structural_errors() {
        assert!(first_error("a MK\n//\n").message.contains("header"));
        let e = first_error("# STOCKHOLM 1.0\na MK\n");
        assert!(e.message.contains("not terminated"), "{e}");
        assert!(first_error("# STOCKHOLM 1.0\n//\n").message.contains("no sequences"));
        assert!(first_error("# STOCKHOLM 1.0\na\n//\n").message.contains("no residues"));
        assert!(first_error("# STOCKHOLM 1.0\n#=GF ID\na M\n//\n")
            .message
            .contains("without a value"));
        assert!(first_error("# STOCKHOLM 1.0\n#=GF \na M\n//\n")
            .message
            .contains("without a tag"));
        assert!(first_error("# STOCKHOLM 1.0\n#=GFX tag\na M\n//\n")
            .message
            .contains("unknown markup #=GFX"));
        let e = first_error("# STOCKHOLM 1.0\n#=GS a WT 1\n#=GS b WT 1\na M\n//\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("annotation for `b`"), "{e}");
    }

    #[test]
    fn record_errors_are_skippable_and_reading_goes_on() {
        let out = read("# STOCKHOLM 1.0\na M1K\nb ...\nc MK.\n//\n");
        assert_eq!(out.len(), 3);
        let e = out[0].as_ref().unwrap_err();
        assert!(e.is_skippable());
        assert_eq!(
            e.to_string(),
            "t.sto:2 (record a): invalid residue digit '1' at position 2"
        );
        assert!(out[1].as_ref().unwrap_err().message.contains("only gaps"));
        assert_eq!(out[2].as_ref().unwrap().sequence, "MK");
    }
}
