//! Reader for the Pfam seed split CSV shards of Bileschi et al.:
//! `<root>/<split>/<part>/data-NNNNN-of-NNNNN`, each with the header
//! `family_id,sequence_name,family_accession,aligned_sequence,sequence`.
//!
//! Shards are read in name order and streamed record by record, so the full
//! Pfam 32 split (1.3M training domains) never has to sit in memory.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::{Family, ReadError, Record};

/// The published column order; any other header is rejected.
pub const HEADER: [&str; 5] = ["family_id", "sequence_name", "family_accession", "aligned_sequence", "sequence"];

/// The three parts of a split.
pub const PARTS: [&str; 3] = ["train", "dev", "test"];

/// The shard files of one part, sorted by name.
pub fn shard_paths(root: &Path, split: &str, part: &str) -> Result<Vec<PathBuf>, ReadError> {
    let dir = root.join(split).join(part);
    let entries = std::fs::read_dir(&dir).map_err(|e| ReadError::new(&dir, format!("cannot list shard directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::new(&dir, e.to_string()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("data-") {
            paths.push(entry.path());
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(ReadError::new(&dir, "no `data-*` shard files"));
    }
    Ok(paths)
}

/// Streams the records of one part across all its shards.
pub fn read_part(root: &Path, split: &str, part: &str) -> Result<PartReader, ReadError> {
    Ok(PartReader { shards: shard_paths(root, split, part)?.into_iter(), current: None })
}

/// Iterator over all records of a part; see [`read_part`].
pub struct PartReader {
    shards: std::vec::IntoIter<PathBuf>,
    current: Option<ShardReader>,
}

impl Iterator for PartReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(shard) = &mut self.current {
                if let Some(item) = shard.next() {
                    return Some(item);
                }
                self.current = None;
            }
            let path = self.shards.next()?;
            match ShardReader::open(&path) {
                Ok(reader) => self.current = Some(reader),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Iterator over the records of one shard file.
pub struct ShardReader {
    path: PathBuf,
    rows: csv::StringRecordsIntoIter<BufReader<File>>,
    failed: bool,
}

impl ShardReader {
    /// Opens a shard and checks its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|e| ReadError::new(path, format!("cannot open: {e}")))?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(BufReader::new(file));
        let header = reader.headers().map_err(|e| ReadError::new(path, format!("cannot read CSV header: {e}")).at_line(1))?;
        let found: Vec<&str> = header.iter().collect();
        if found != HEADER {
            return Err(ReadError::new(path, format!("wrong CSV header {:?}, expected {:?}", found.join(","), HEADER.join(",")))
                .at_line(1));
        }
        Ok(ShardReader { path: path.to_path_buf(), rows: reader.into_records(), failed: false })
    }
}

impl Iterator for ShardReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => {
                self.failed = true;
                let line = e.position().map(|p| p.line() as usize);
                let mut err = ReadError::new(&self.path, format!("malformed CSV: {e}"));
                err.line = line;
                return Some(Err(err));
            }
        };
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        if row.len() != HEADER.len() {
            return Some(Err(ReadError::new(
                &self.path,
                format!("expected {} fields, found {} (truncated row?)", HEADER.len(), row.len()),
            )
            .at_line(line)));
        }
        let (family_id, name, accession, aligned, sequence) = (&row[0], &row[1], &row[2], &row[3], &row[4]);
        if name.is_empty() || family_id.is_empty() || accession.is_empty() {
            return Some(Err(ReadError::new(&self.path, "empty family_id, sequence_name or family_accession").at_line(line)));
        }
        if sequence.is_empty() {
            return Some(Err(ReadError::new(&self.path, "empty sequence").at_line(line).in_record(name)));
        }
        Some(Ok(Record {
            id: name.to_string(),
            description: String::new(),
            sequence: sequence.to_ascii_uppercase(),
            family: Some(Family::new(family_id, accession)),
            aligned: Some(aligned.to_string()),
        }))
    }
}
