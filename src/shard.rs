//! Splitting `protfam annotate` and `protfam domains scan` over the tasks of a
//! job array (Slurm `--array`, Kubernetes indexed jobs, GNU parallel) and
//! merging their parts back into the output a single process would have written.
//!
//! Every task reads the whole input and keeps the records whose position
//! (counted from 0 over every record, invalid ones included) is `K` modulo
//! `N`: reading is cheap next to embedding, and a position-based split needs no
//! pass to count the records first, works on standard input, and is balanced
//! whatever the sequences are. Reading the whole input also keeps everything
//! that depends on the other records (duplicate-id notes, the input digest)
//! the same in every task.
//!
//! Task `K` writes `part-K-of-N.jsonl` (numbers zero-padded to 5 digits) into
//! a shared parts directory, atomically (see [`crate::cache::atomic`]), so a
//! part is either complete or absent. Its first line is a [`PartHeader`]
//! (which input, which settings, how many rows, the SHA-256 of the rest);
//! every further line is one [`PartRow`]: the record's input position and its
//! row, of a [`PartRowKind`] the header names (so a merge never takes another
//! command's parts): an [`Annotation`], whose `f32` scores JSON round-trips
//! exactly, or a protein's domain calls already formatted as the output will
//! hold them. [`merge_parts`] thus rebuilds the very rows of a single-process
//! run and the caller writes them with the same writer, byte for byte.
//!
//! The merge refuses to run while a part is missing, damaged (digest, row
//! count, positions) or from another run (input, settings or `N` differ),
//! naming the part, so a failed task is re-run alone (`sbatch --array=K`)
//! before anything is merged.
//!
//! ```
//! use protfam::annotate::InputItem;
//! use protfam::pipeline::WorkShard;
//! use protfam::shard::RecordSelection;
//!
//! let items: Vec<InputItem> = (0..5)
//!     .map(|i| InputItem::Invalid { id: format!("r{i}"), message: "bad".into() })
//!     .collect();
//! let picked = RecordSelection::select(items, Vec::new(), "1/2".parse::<WorkShard>().unwrap());
//! assert_eq!(picked.placement.ordinals, vec![1, 3]);
//! assert_eq!(picked.placement.input_records, 5);
//! ```

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::annotate::{Annotation, InputItem};
use crate::cache::atomic;
use crate::io::Record;
use crate::pipeline::WorkShard;

/// Version of the part layout; the merge refuses others.
pub const PART_VERSION: u32 = 1;

/// What one row of a part holds (one per input record).
pub trait PartRowKind: Serialize + DeserializeOwned + Clone {
    /// The `format` of this kind's part headers; a merge refuses any other.
    const FORMAT: &'static str;
}

impl PartRowKind for Annotation {
    const FORMAT: &'static str = "protfam-annotate-part";
}

impl PartRowKind for crate::domains::output::FormattedProtein {
    const FORMAT: &'static str = "protfam-domains-part";
}

/// Why parts could not be written or merged. Every variant names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no annotation parts (part-K-of-N.jsonl) found")]
    NoParts { dir: PathBuf },
    #[error("{dir}: {} of {count} part(s) missing: {} (re-run those tasks, e.g. `sbatch --array={}`, then merge again)",
        .missing.len(), .missing.join(", "), .indices)]
    Missing {
        dir: PathBuf,
        count: usize,
        missing: Vec<String>,
        indices: String,
    },
    #[error("{path}: damaged annotation part: {reason} (delete it and re-run its task)")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path}: not from the same run as {reference}: {reason}")]
    Mismatch {
        path: PathBuf,
        reference: PathBuf,
        reason: String,
    },
}

impl ShardError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ShardError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn damaged(path: &Path, reason: impl Into<String>) -> Self {
        ShardError::Damaged {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The records of one task: its share of the input, with each record's position in the whole input.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSelection {
    /// This task's items (valid and invalid), in input order.
    pub items: Vec<InputItem>,
    /// The records of this task's valid items, in the same order.
    pub records: Vec<Record>,
    /// Where these items sit in the whole input.
    pub placement: Placement,
}

/// Where the items of one task sit in the whole input; what its part records besides the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Position in the whole input of each item of the task, ascending.
    pub ordinals: Vec<u64>,
    /// Records (valid and invalid) in the whole input.
    pub input_records: usize,
    /// SHA-256 over every record of the whole input (ids, sequences, errors), so
    /// the merge can tell that all tasks read the same input.
    pub input_digest: String,
}

impl RecordSelection {
    /// Keeps the items whose position is `shard.index` modulo `shard.count`.
    /// `records` are the sequences of the `Valid` items, in order (as the annotator reads them).
    pub fn select(items: Vec<InputItem>, records: Vec<Record>, shard: WorkShard) -> Self {
        let input_records = items.len();
        let mut hasher = Sha256::new();
        let mut records = records.into_iter();
        let mut kept = RecordSelection {
            items: Vec::new(),
            records: Vec::new(),
            placement: Placement {
                ordinals: Vec::new(),
                input_records,
                input_digest: String::new(),
            },
        };
        for (ordinal, item) in items.into_iter().enumerate() {
            let record = match &item {
                InputItem::Valid { id, .. } => {
                    let record = records.next();
                    hasher.update(b"V");
                    hasher.update(id.as_bytes());
                    hasher.update([0]);
                    if let Some(r) = &record {
                        hasher.update(r.sequence.as_bytes());
                    }
                    record
                }
                InputItem::Invalid { id, message } => {
                    hasher.update(b"I");
                    hasher.update(id.as_bytes());
                    hasher.update([0]);
                    hasher.update(message.as_bytes());
                    None
                }
            };
            hasher.update(b"\n");
            if ordinal % shard.count == shard.index {
                kept.placement.ordinals.push(ordinal as u64);
                kept.items.push(item);
                kept.records.extend(record);
            }
        }
        kept.placement.input_digest = hex(&hasher.finalize());
        kept
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// First line of a part file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    /// [`PartRowKind::FORMAT`] of its rows.
    pub format: String,
    /// Always [`PART_VERSION`].
    pub version: u32,
    /// `K` of `K/N`.
    pub index: usize,
    /// `N` of `K/N`.
    pub count: usize,
    /// The input as named on the command line (informational).
    pub input: String,
    /// [`Placement::input_digest`].
    pub input_digest: String,
    /// Records in the whole input.
    pub input_records: usize,
    /// Repeated ids in the whole input (for the merged summary).
    pub duplicate_ids: usize,
    /// What else must match across tasks: classifier, its training digest,
    /// calibration, `--top-k`. The merge compares them as a whole.
    pub settings: serde_json::Value,
    /// Row lines after the header.
    pub rows: usize,
    /// SHA-256 of every byte after the header line.
    pub rows_sha256: String,
}

/// One row line of a part file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRow<T> {
    /// Position of the record in the whole input.
    pub ordinal: u64,
    pub row: T,
}

/// File name of part `K` of `N`.
pub fn part_file_name(shard: WorkShard) -> String {
    format!("part-{:05}-of-{:05}.jsonl", shard.index, shard.count)
}

/// `(K, N)` of a part file name, `None` for other names.
pub fn parse_part_file_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    let (k, n) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(k) || !digits(n) {
        return None;
    }
    Some((k.parse().ok()?, n.parse().ok()?))
}

/// What a task records about its run besides the rows.
#[derive(Debug, Clone)]
pub struct PartContext<'a> {
    pub shard: WorkShard,
    pub input: &'a str,
    pub duplicate_ids: usize,
    pub settings: serde_json::Value,
}

/// Writes this task's part into `dir` (created if missing), atomically, and returns its path.
/// `rows` are the annotations of the task's items, in order (one per `placement.ordinals`).
pub fn write_part<T: PartRowKind>(
    dir: &Path,
    context: &PartContext<'_>,
    placement: &Placement,
    rows: &[T],
) -> Result<PathBuf, ShardError> {
    if rows.len() != placement.ordinals.len() {
        // A caller bug, but never write a part the merge would have to reject.
        return Err(ShardError::damaged(
            dir,
            format!("{} rows for {} selected records", rows.len(), placement.ordinals.len()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| ShardError::io(dir, e))?;
    let path = dir.join(part_file_name(context.shard));
    let mut body = Vec::new();
    for (ordinal, row) in placement.ordinals.iter().zip(rows) {
        let line = PartRow {
            ordinal: *ordinal,
            row: row.clone(),
        };
        serde_json::to_writer(&mut body, &line).map_err(|e| ShardError::io(&path, e.into()))?;
        body.push(b'\n');
    }
    let header = PartHeader {
        format: T::FORMAT.to_string(),
        version: PART_VERSION,
        index: context.shard.index,
        count: context.shard.count,
        input: context.input.to_string(),
        input_digest: placement.input_digest.clone(),
        input_records: placement.input_records,
        duplicate_ids: context.duplicate_ids,
        settings: context.settings.clone(),
        rows: rows.len(),
        rows_sha256: hex(&Sha256::digest(&body)),
    };
    let header = serde_json::to_string(&header).map_err(|e| ShardError::io(&path, e.into()))?;
    // A temporary file a killed earlier attempt of this task left behind is of no use.
    atomic::remove_stale_temp_files(dir).map_err(|e| ShardError::io(dir, e))?;
    atomic::write_atomic(&path, |w| {
        w.write_all(header.as_bytes())?;
        w.write_all(b"\n")?;
        w.write_all(&body)
    })
    .map_err(|e| ShardError::io(&path, e))?;
    Ok(path)
}

/// The merged rows of all parts, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged<T> {
    pub rows: Vec<T>,
    /// Tasks the input was split over.
    pub parts: usize,
    /// The header of part 0 (input, digest, settings, duplicate ids).
    pub header: PartHeader,
}

/// Reads and checks one part file.
pub fn read_part<T: PartRowKind>(path: &Path) -> Result<(PartHeader, Vec<PartRow<T>>), ShardError> {
    let file = std::fs::File::open(path).map_err(|e| ShardError::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut header_line = String::new();
    reader
        .read_line(&mut header_line)
        .map_err(|e| ShardError::io(path, e))?;
    if !header_line.ends_with('\n') {
        return Err(ShardError::damaged(path, "no complete header line"));
    }
    let header: PartHeader =
        serde_json::from_str(header_line.trim_end()).map_err(|e| ShardError::damaged(path, format!("header: {e}")))?;
    if header.format != T::FORMAT || header.version != PART_VERSION {
        return Err(ShardError::damaged(
            path,
            format!(
                "header says {:?} version {}, expected {:?} version {PART_VERSION}",
                header.format,
                header.version,
                T::FORMAT
            ),
        ));
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut body).map_err(|e| ShardError::io(path, e))?;
    let digest = hex(&Sha256::digest(&body));
    if digest != header.rows_sha256 {
        return Err(ShardError::damaged(
            path,
            format!(
                "rows have SHA-256 {digest}, the header says {} (truncated or modified)",
                header.rows_sha256
            ),
        ));
    }
    if body.last().is_some_and(|&b| b != b'\n') {
        return Err(ShardError::damaged(path, "the last row line is incomplete"));
    }
    let mut rows = Vec::with_capacity(header.rows);
    for (n, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        let row: PartRow<T> = serde_json::from_slice(&line[..line.len() - 1])
            .map_err(|e| ShardError::damaged(path, format!("row line {}: {e}", n + 2)))?;
        rows.push(row);
    }
    if rows.len() != header.rows {
        return Err(ShardError::damaged(
            path,
            format!("{} rows, the header says {}", rows.len(), header.rows),
        ));
    }
    Ok((header, rows))
}

/// Merges the parts in `dir` into the rows of the whole input, in input order.
///
/// Refuses (naming the files) when any part of `0..N` is missing, when a part
/// is damaged, when parts of different `N` are present, or when parts read
/// a different input or ran with different settings.
pub fn merge_parts<T: PartRowKind>(dir: &Path) -> Result<Merged<T>, ShardError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ShardError::io(dir, e))?;
    let mut found: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ShardError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((k, n)) = parse_part_file_name(&name) {
            found.push((k, n, entry.path()));
        }
    }
    if found.is_empty() {
        return Err(ShardError::NoParts { dir: dir.to_path_buf() });
    }
    found.sort();
    let count = found[0].1;
    if let Some((_, _, other)) = found.iter().find(|(_, n, _)| *n != count) {
        return Err(ShardError::Mismatch {
            path: other.clone(),
            reference: found[0].2.clone(),
            reason: "split into a different number of parts (parts of two runs in one directory?)".into(),
        });
    }
    if let Some((k, _, path)) = found.iter().find(|(k, n, _)| k >= n) {
        return Err(ShardError::damaged(path, format!("part {k} of {count} does not exist")));
    }
    let missing: Vec<usize> = (0..count).filter(|k| !found.iter().any(|(f, _, _)| f == k)).collect();
    if !missing.is_empty() {
        let names = missing
            .iter()
            .map(|&k| {
                dir.join(part_file_name(WorkShard { index: k, count }))
                    .display()
                    .to_string()
            })
            .collect();
        let indices = missing.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        return Err(ShardError::Missing {
            dir: dir.to_path_buf(),
            count,
            missing: names,
            indices,
        });
    }

    let mut first: Option<(PartHeader, PathBuf)> = None;
    let mut rows: Vec<Option<T>> = Vec::new();
    for (k, _, path) in &found {
        let (header, part_rows) = read_part::<T>(path)?;
        if header.index != *k || header.count != count {
            return Err(ShardError::damaged(
                path,
                format!(
                    "header says part {}/{}, the name {k}/{count}",
                    header.index, header.count
                ),
            ));
        }
        match &first {
            None => {
                rows = vec![None; header.input_records];
                first = Some((header.clone(), path.clone()));
            }
            Some((reference, reference_path)) => {
                let mismatch = |reason: &str| ShardError::Mismatch {
                    path: path.clone(),
                    reference: reference_path.clone(),
                    reason: reason.to_string(),
                };
                if header.input_digest != reference.input_digest || header.input_records != reference.input_records {
                    return Err(mismatch(&format!(
                        "read another input ({} records, digest {}; the reference: {} records, digest {})",
                        header.input_records, header.input_digest, reference.input_records, reference.input_digest
                    )));
                }
                if header.settings != reference.settings {
                    return Err(mismatch(&format!(
                        "ran with other settings ({} vs {})",
                        header.settings, reference.settings
                    )));
                }
                if header.duplicate_ids != reference.duplicate_ids {
                    return Err(mismatch("counted other duplicate ids"));
                }
            }
        }
        let total = rows.len();
        let expected = (total + count - 1 - k) / count;
        if part_rows.len() != expected {
            return Err(ShardError::damaged(
                path,
                format!(
                    "{} rows; part {k} of {count} of {total} records has {expected}",
                    part_rows.len()
                ),
            ));
        }
        for (j, part_row) in part_rows.into_iter().enumerate() {
            let ordinal = (k + j * count) as u64;
            if part_row.ordinal != ordinal {
                return Err(ShardError::damaged(
                    path,
                    format!(
                        "row {} is record {}, expected record {ordinal}",
                        j + 1,
                        part_row.ordinal
                    ),
                ));
            }
            rows[ordinal as usize] = Some(part_row.row);
        }
    }
    let (header, _) = first.expect("at least one part");
    // Every position k + j*N for every k < N was filled above.
    let rows = rows
        .into_iter()
        .map(|r| r.expect("every position filled by its part"))
        .collect();
    Ok(Merged {
        rows,
        parts: count,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> (Vec<InputItem>, Vec<Record>) {
        let mut items = Vec::new();
        let mut records = Vec::new();
        for i in 0..n {
            if i % 4 == 3 {
                items.push(InputItem::Invalid {
                    id: format!("bad{i}"),
                    message: "digit in sequence".into(),
                });
            } else {
                let sequence = "MKV".repeat(i + 1);
                items.push(InputItem::Valid {
                    id: format!("p{i}"),
                    length: sequence.len(),
                    note: String::new(),
                });
                records.push(Record::new(format!("p{i}"), sequence));
            }
        }
        (items, records)
    }

    #[test]
    fn selections_partition_the_input_and_agree_on_its_digest() {
        let (all, records) = items(11);
        let parts: Vec<RecordSelection> = (0..3)
            .map(|k| RecordSelection::select(all.clone(), records.clone(), WorkShard::new(k, 3).unwrap()))
            .collect();
        let mut ordinals: Vec<u64> = parts.iter().flat_map(|p| p.placement.ordinals.clone()).collect();
        ordinals.sort();
        assert_eq!(ordinals, (0..11).collect::<Vec<u64>>());
        assert!(parts
            .iter()
            .all(|p| p.placement.input_digest == parts[0].placement.input_digest));
        for p in &parts {
            let valid = p.items.iter().filter(|i| matches!(i, InputItem::Valid { .. })).count();
            assert_eq!(valid, p.records.len());
            for (item, ordinal) in p.items.iter().zip(&p.placement.ordinals) {
                assert_eq!(*item, all[*ordinal as usize]);
            }
        }
        let (mut other, other_records) = items(11);
        other.swap(0, 1);
        let changed = RecordSelection::select(other, other_records, WorkShard::new(0, 3).unwrap());
        assert_ne!(changed.placement.input_digest, parts[0].placement.input_digest);
    }

    #[test]
    fn part_names_round_trip() {
        let name = part_file_name(WorkShard::new(7, 12).unwrap());
        assert_eq!(name, "part-00007-of-00012.jsonl");
        assert_eq!(parse_part_file_name(&name), Some((7, 12)));
        assert_eq!(parse_part_file_name("part-1-of-x.jsonl"), None);
        assert_eq!(parse_part_file_name(".tmp-host-1-ab-part-00000-of-00002.jsonl"), None);
    }
}
