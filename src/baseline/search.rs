//! What the HMM and BLAST searches share: one single-threaded tool process per
//! chunk of work on the worker pool with a progress bar, the tools' text tables
//! read line by line with errors that name the file and line, and test-sequence
//! ids (`q<index>`) mapped back to the test set.

use std::io::BufRead;
use std::path::Path;
use std::str::FromStr;

use rayon::prelude::*;

use super::data::parse_index;
use super::{BaselineError, BaselineOptions};

/// Runs `search(c, chunk)` for the chunks of `items` ([`BaselineOptions::chunk_size`]) on the
/// worker pool, counting `unit`s on a progress bar labelled `tool`; returns every chunk's rows
/// in chunk order, so the answer does not depend on which worker finished first.
pub(crate) fn in_chunks<T: Sync, R: Send>(
    opts: &BaselineOptions,
    items: &[T],
    unit: &str,
    tool: &'static str,
    search: impl Fn(usize, &[T]) -> Result<Vec<R>, BaselineError> + Sync,
) -> Result<Vec<R>, BaselineError> {
    let chunks: Vec<&[T]> = items.chunks(opts.chunk_size(items.len())).collect();
    let bar = opts.progress_bar(items.len() as u64, unit);
    bar.set_message(tool);
    let results: Vec<Vec<R>> = opts.pool()?.install(|| {
        chunks
            .par_iter()
            .enumerate()
            .map(|(c, chunk)| {
                let rows = search(c, chunk)?;
                bar.inc(chunk.len() as u64);
                Ok(rows)
            })
            .collect::<Result<Vec<_>, BaselineError>>()
    })?;
    bar.finish_and_clear();
    Ok(results.into_iter().flatten().collect())
}

/// One data line of a tool's table, for errors that name the file and the line.
pub(crate) struct TableLine<'a> {
    path: &'a Path,
    number: usize,
}

impl TableLine<'_> {
    pub fn error(&self, message: String) -> BaselineError {
        BaselineError::Parse {
            path: self.path.display().to_string(),
            line: self.number,
            message,
        }
    }

    /// Column `k` (0-based) of `fields` as a `T`; `what` names the column and `kind` the
    /// expected value (`number`, `count`) in the error.
    pub fn parse<T: FromStr>(&self, fields: &[&str], k: usize, what: &str, kind: &str) -> Result<T, BaselineError> {
        fields[k]
            .trim()
            .parse::<T>()
            .map_err(|_| self.error(format!("column {} ({what}) is not a {kind}: {:?}", k + 1, fields[k])))
    }
}

/// Parses every line of a tool's table that is neither blank nor a `#` comment with `row`.
pub(crate) fn parse_table<R>(
    reader: impl BufRead,
    path: &Path,
    mut row: impl FnMut(&str, &TableLine) -> Result<R, BaselineError>,
) -> Result<Vec<R>, BaselineError> {
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let at = TableLine { path, number: i + 1 };
        let line = line.map_err(|e| at.error(e.to_string()))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        rows.push(row(&line, &at)?);
    }
    Ok(rows)
}

/// The test-set index of a tool's `q<index>` id; an id outside the test set means the tool
/// answered for something we did not ask, reported as `<tool> reported unknown <what> <id>`.
pub(crate) fn test_index(
    id: &str,
    n_queries: usize,
    context: &Path,
    tool: &str,
    what: &str,
) -> Result<usize, BaselineError> {
    parse_index(id, 'q')
        .filter(|&i| i < n_queries)
        .ok_or_else(|| BaselineError::Parse {
            path: context.display().to_string(),
            line: 0,
            message: format!("{tool} reported unknown {what} {id:?}"),
        })
}
