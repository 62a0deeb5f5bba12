//! Reports: the one place where evaluation rows ([`ReportRow`]) and per-query
//! predictions become files. `evaluate`, `compare`, `baseline` and `residue`
//! all write through it:
//! - [`write_report`] merges rows into `<report_dir>/<split>/evaluate.{json,csv,md}`
//!   (a rerun of an embedding + classifier pair replaces its row);
//! - [`markdown_table`], [`markdown_size_table`], [`csv_table`], [`json_rows`]
//!   render rows (best first) for people and programs; [`html`] adds the
//!   plots and the self-contained HTML page of a comparison;
//! - [`write_predictions`] writes one line per test query in one format for every
//!   method (id, truth, prediction, score, nearest training id and distance);
//! - [`runs::RunCache`] keeps every evaluated row so a later run reuses it;
//! - [`significance`] puts a 95% interval on every error rate and a paired test
//!   between the best two rows into each report's headline.
//!
//! Every file goes through the crate's atomic writer (temporary file, fsync,
//! rename, fsync of the directory): a crash never leaves half a report.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_bytes_atomic;
pub use crate::metrics::ReportRow;
use crate::metrics::{shown_size_bins, CSV_SCALAR_COLUMNS};

pub mod html;
pub mod runs;
pub mod significance;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{}: not a list of report rows", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    #[error("nothing to report: no rows")]
    Empty,
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn csv(path: &Path, source: csv::Error) -> Self {
        ReportError::Csv {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to `path` atomically, creating its directory.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ReportError::io(parent, e))?;
    }
    write_bytes_atomic(path, bytes).map_err(|e| ReportError::io(path, e))
}

/// Rows as pretty JSON, the format every report shares.
pub fn json_rows(rows: &[ReportRow]) -> String {
    serde_json::to_string_pretty(rows).expect("report rows serialise")
}

/// One test query's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub id: String,
    pub true_family: String,
    pub true_accession: String,
    /// Empty when nothing was predicted.
    pub predicted: String,
    pub predicted_accession: String,
    pub score: f32,
    pub nearest_id: String,
    pub nearest_distance: Option<f32>,
}

/// Writes the predictions CSV of one pair (atomically).
pub fn write_predictions(path: &Path, rows: &[PredictionRow]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| ReportError::csv(path, e))?;
    }
    let bytes = w.into_inner().map_err(|e| ReportError::io(path, e.into_error()))?;
    write_file(path, &bytes)
}

/// Reads a predictions CSV written by [`write_predictions`].
pub fn read_predictions(path: &Path) -> Result<Vec<PredictionRow>, ReportError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| ReportError::csv(path, e))?;
    r.deserialize()
        .collect::<Result<Vec<PredictionRow>, _>>()
        .map_err(|e| ReportError::csv(path, e))
}

/// `s` with every character outside `[A-Za-z0-9._-]` replaced by `_`: safe in a file name.
pub fn clean_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// File name stem of a pair's outputs.
pub fn pair_stem(embedding: &str, classifier: &str) -> String {
    format!("{}__{}", clean_name(embedding), clean_name(classifier))
}

/// Where a split's report files go.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub dir: PathBuf,
}

impl ReportPaths {
    pub fn new(report_dir: &Path, split: &str) -> Self {
        ReportPaths {
            dir: report_dir.join(split),
        }
    }
    pub fn json(&self) -> PathBuf {
        self.dir.join("evaluate.json")
    }
    pub fn csv(&self) -> PathBuf {
        self.dir.join("evaluate.csv")
    }
    pub fn markdown(&self) -> PathBuf {
        self.dir.join("evaluate.md")
    }
    pub fn predictions(&self, embedding: &str, classifier: &str) -> PathBuf {
        self.dir
            .join("predictions")
            .join(format!("{}.csv", pair_stem(embedding, classifier)))
    }

    /// The predictions kept for `row` in this report directory, if any.
    pub fn kept_predictions(&self, row: &ReportRow) -> Option<Vec<PredictionRow>> {
        read_predictions(&self.predictions(&row.embedding, &row.classifier)).ok()
    }

    /// The Markdown headline of `rows` (see [`significance::Headline`]), paired on the kept predictions.
    pub fn headline(&self, rows: &[ReportRow]) -> String {
        significance::Headline::of(rows, |r| self.kept_predictions(r))
            .map(|h| h.markdown())
            .unwrap_or_default()
    }
}

/// Reads a report JSON (a list of rows).
pub fn read_report(path: &Path) -> Result<Vec<ReportRow>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Merges `new` rows into the split's `evaluate.json` (same embedding + classifier
/// replaces) and rewrites the JSON, CSV and Markdown reports; returns all rows.
pub fn write_report(paths: &ReportPaths, new: &[ReportRow]) -> Result<Vec<ReportRow>, ReportError> {
    let mut rows = if paths.json().exists() {
        read_report(&paths.json())?
    } else {
        Vec::new()
    };
    for row in new {
        match rows
            .iter_mut()
            .find(|r| r.embedding == row.embedding && r.classifier == row.classifier)
        {
            Some(old) => *old = row.clone(),
            None => rows.push(row.clone()),
        }
    }
    write_file(&paths.json(), json_rows(&rows).as_bytes())?;
    write_file(&paths.csv(), csv_table(&rows).as_bytes())?;
    write_file(
        &paths.markdown(),
        format!(
            "{}\n\n{}\n{}",
            paths.headline(&rows),
            markdown_table(&rows),
            markdown_size_table(&rows)
        )
        .as_bytes(),
    )?;
    Ok(rows)
}

/// Rows best first (lowest error rate; ties by name), as the table shows them.
pub fn ranked(rows: &[ReportRow]) -> Vec<ReportRow> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| {
        a.error_rate
            .total_cmp(&b.error_rate)
            .then_with(|| a.name().cmp(&b.name()))
    });
    rows
}

/// The Table-1-style Markdown table (rows best first, the best in bold).
pub fn markdown_table(rows: &[ReportRow]) -> String {
    let mut out = String::from(
        "| rank | embedding | classifier | n | errors | error % | 95% CI | precision | recall | F1 | train s | predict s |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, r) in ranked(rows).iter().enumerate() {
        let mut cells = r.table_cells();
        // The best of several rows in bold; one row alone is no comparison.
        if i == 0 && rows.len() > 1 {
            cells[4] = format!("**{}**", cells[4]);
        }
        out.push_str(&format!("| {} | {} |\n", i + 1, cells.join(" | ")));
    }
    out
}

/// The short table of a README or a slide: rank, method, errors of n, error % and
/// its 95% interval, best first.
pub fn summary_table(rows: &[ReportRow]) -> String {
    let mut out = String::from("| rank | method | errors | error % | 95% CI |\n|---:|---|---:|---:|---:|\n");
    for (i, r) in ranked(rows).iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} of {} | {:.2} | {} |\n",
            i + 1,
            r.name(),
            r.errors,
            r.n,
            100.0 * r.error_rate,
            r.error_interval_cell()
        ));
    }
    out
}

/// Size bins shown ([`shown_size_bins`]), by label.
pub(crate) fn bins_of(rows: &[ReportRow]) -> Vec<String> {
    shown_size_bins(rows).into_iter().map(|(bin, _)| bin).collect()
}

/// The error-by-size grid of `ranked` rows: per bin of [`shown_size_bins`], its label, its
/// test n and one cell per row ([`ReportRow::size_bin_percent`]).
pub(crate) fn size_grid(ranked: &[ReportRow]) -> Vec<(String, usize, Vec<String>)> {
    shown_size_bins(ranked)
        .into_iter()
        .map(|(bin, n)| {
            let cells = ranked.iter().map(|r| r.size_bin_percent(&bin)).collect();
            (bin, n, cells)
        })
        .collect()
}

/// Error rate (%) by training-family size: one line per bin, one column per row.
pub fn markdown_size_table(rows: &[ReportRow]) -> String {
    let rows = ranked(rows);
    let mut out = String::from("| training examples of the family | test n |");
    for r in &rows {
        out.push_str(&format!(" {} |", r.name()));
    }
    out.push_str("\n|---|---:|");
    out.push_str(&"---:|".repeat(rows.len()));
    out.push('\n');
    for (bin, n, cells) in size_grid(&rows) {
        out.push_str(&format!("| {bin} | {n} |"));
        for cell in cells {
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

/// CSV: the scalar fields, then `n_<bin>` / `error_rate_<bin>` per size bin.
pub fn csv_table(rows: &[ReportRow]) -> String {
    let bins = bins_of(rows);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = CSV_SCALAR_COLUMNS.iter().map(|s| s.to_string()).collect();
    for b in &bins {
        header.push(format!("n_{b}"));
        header.push(format!("error_rate_{b}"));
    }
    w.write_record(&header).expect("in-memory CSV");
    for r in ranked(rows) {
        let mut rec = r.csv_scalars();
        for b in &bins {
            match r.size_bin(b) {
                Some(x) => {
                    rec.push(x.n.to_string());
                    rec.push(if x.n > 0 {
                        format!("{:.6}", x.error_rate)
                    } else {
                        String::new()
                    });
                }
                None => {
                    rec.push(String::new());
                    rec.push(String::new());
                }
            }
        }
        w.write_record(&rec).expect("in-memory CSV");
    }
    String::from_utf8(w.into_inner().expect("in-memory CSV")).expect("UTF-8")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::{SizeBinError, SIZE_BINS};

    fn row(embedding: &str, classifier: &str, error_rate: f64, bins: &[(&str, usize, f64)]) -> ReportRow {
        let n = 100;
        ReportRow {
            embedding: embedding.into(),
            classifier: classifier.into(),
            n,
            errors: (error_rate * n as f64).round() as usize,
            error_rate,
            precision: 1.0 - error_rate,
            recall: 1.0 - error_rate,
            f1: 1.0 - error_rate,
            train_seconds: 1.5,
            predict_seconds: 0.25,
            by_family_size: bins
                .iter()
                .map(|(bin, n, e)| SizeBinError {
                    bin: bin.to_string(),
                    n: *n,
                    errors: (*e * *n as f64).round() as usize,
                    error_rate: *e,
                })
                .collect(),
        }
    }

    pub(crate) fn rows() -> Vec<ReportRow> {
        let bins = |s: f64| {
            vec![
                ("1", 10, 0.9 * s),
                ("2-4", 20, 0.7 * s),
                ("5-9", 20, 0.5 * s),
                ("10-49", 30, 0.3 * s),
                ("50+", 20, 0.1 * s),
            ]
        };
        vec![
            row("unirep1900", "knn", 0.61, &bins(1.0)),
            row("unirep1900", "mlp", 0.55, &bins(0.9)),
            row("onehot", "knn", 0.80, &bins(1.1)),
            row("onehot", "mlp", 0.72, &bins(1.05)),
            row("none", "hmm", 0.198, &bins(0.3)),
        ]
    }

    #[test]
    fn tables_rank_rows_and_cover_every_bin() {
        let rows = rows();
        let md = markdown_table(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 2 + rows.len());
        assert!(
            lines[2].contains("| none | hmm |") && lines[2].contains("**19.80**"),
            "{}",
            lines[2]
        );
        assert!(lines[6].contains("| onehot | knn |"), "{}", lines[6]);
        let sizes = markdown_size_table(&rows);
        assert!(sizes.lines().next().unwrap().contains("unirep1900 + mlp"));
        assert_eq!(sizes.lines().count(), 2 + SIZE_BINS.len());
        assert!(sizes.contains("| 1 | 10 | 27.0 |"), "{sizes}");
        // A bin no row has test items in is left out.
        let mut sparse = rows.clone();
        for r in &mut sparse {
            r.by_family_size.retain(|b| b.bin != "5-9");
        }
        assert_eq!(markdown_size_table(&sparse).lines().count(), 1 + SIZE_BINS.len());
        let csv = csv_table(&rows);
        assert_eq!(csv.lines().count(), 1 + rows.len());
        assert!(csv.lines().next().unwrap().ends_with("n_50+,error_rate_50+"));
    }

    #[test]
    fn absent_families_get_their_own_bin() {
        let mut rows = rows();
        rows[0].by_family_size.insert(
            0,
            SizeBinError {
                bin: "0".into(),
                n: 7,
                errors: 7,
                error_rate: 1.0,
            },
        );
        assert!(markdown_size_table(&rows).contains("| 0 | 7 |"));
    }
}
