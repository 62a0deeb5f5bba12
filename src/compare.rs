//! One comparison of embedding models x classifiers (+ HMM / BLAST baselines)
//! on a split, from evaluation [`ReportRow`]s: the Table-1-style table, the
//! error rate by training-family size, two plots (SVG + PNG, see [`crate::plot`])
//! and a self-contained HTML report that inlines the SVGs and tables.
//!
//! [`write_comparison`] writes into one directory:
//! - `comparison.md`, `comparison.csv`, `comparison.json` (the rows, the shared report format);
//! - `error_rate.svg` / `.png` (grouped bars) and `error_by_family_size.svg` / `.png` (lines);
//! - `comparison.html`.
//!
//! Evaluations are cached per run in `<report_dir>/<split>/runs/` (see
//! [`RunCache`]): the key is the embedder spec key (name + digest of weights and
//! settings), the classifier label and the training-data digest, so `compare`
//! reruns only what changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::atomic::write_bytes_atomic;
use crate::metrics::{ReportRow, CSV_SCALAR_COLUMNS, SIZE_BINS};
use crate::plot::{self, PlotError};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("nothing to compare: no report rows")]
    Empty,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> CompareError {
    CompareError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The files [`write_comparison`] wrote.
#[derive(Debug, Clone)]
pub struct ComparisonFiles {
    pub markdown: PathBuf,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub html: PathBuf,
    pub bars_svg: PathBuf,
    pub bars_png: PathBuf,
    pub sizes_svg: PathBuf,
    pub sizes_png: PathBuf,
}

/// Name of a row in tables and legends.
pub fn row_name(row: &ReportRow) -> String {
    if row.embedding == "none" || row.embedding.is_empty() {
        row.classifier.clone()
    } else {
        format!("{} + {}", row.embedding, row.classifier)
    }
}

/// Rows best first (lowest error rate; ties by name), as the table shows them.
pub fn ranked(rows: &[ReportRow]) -> Vec<ReportRow> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| {
        a.error_rate
            .total_cmp(&b.error_rate)
            .then_with(|| row_name(a).cmp(&row_name(b)))
    });
    rows
}

/// The Table-1-style Markdown table (rows best first, the best in bold).
pub fn markdown_table(rows: &[ReportRow]) -> String {
    let mut out = String::from(
        "| rank | embedding | classifier | n | errors | error % | precision | recall | F1 | train s | predict s |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, r) in ranked(rows).iter().enumerate() {
        let mut cells = r.table_cells();
        if i == 0 {
            cells[4] = format!("**{}**", cells[4]);
        }
        out.push_str(&format!("| {} | {} |\n", i + 1, cells.join(" | ")));
    }
    out
}

/// Size bins shown: `0` (families absent from training) when any row has it, then the paper's five.
fn bins_of(rows: &[ReportRow]) -> Vec<String> {
    let mut bins = Vec::new();
    if rows
        .iter()
        .any(|r| r.by_family_size.iter().any(|b| b.bin == "0" && b.n > 0))
    {
        bins.push("0".to_string());
    }
    bins.extend(SIZE_BINS.iter().map(|(_, _, l)| l.to_string()));
    bins
}

/// The error-by-size grid of `ranked` rows: per bin of [`bins_of`], its label, its test n (the
/// largest any row has) and one cell per row ([`ReportRow::size_bin_percent`]).
fn size_grid(ranked: &[ReportRow]) -> Vec<(String, usize, Vec<String>)> {
    bins_of(ranked)
        .into_iter()
        .map(|bin| {
            let n = ranked
                .iter()
                .filter_map(|r| r.size_bin(&bin))
                .map(|b| b.n)
                .max()
                .unwrap_or(0);
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
        out.push_str(&format!(" {} |", row_name(r)));
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline SVG without its XML declaration.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// The self-contained HTML report: tables, both plots as inline SVG, and the
/// PNGs as base64 data links for download.
pub fn html_report(
    title: &str,
    rows: &[ReportRow],
    bars_svg: &str,
    sizes_svg: &str,
    bars_png: &[u8],
    sizes_png: &[u8],
) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ranked = ranked(rows);
    let mut table = String::from(
        "<table><thead><tr><th>rank</th><th>embedding</th><th>classifier</th><th>n</th><th>errors</th>\
         <th>error %</th><th>precision</th><th>recall</th><th>F1</th><th>train s</th><th>predict s</th></tr></thead><tbody>\n",
    );
    for (i, r) in ranked.iter().enumerate() {
        let class = if i == 0 { " class=\"best\"" } else { "" };
        let mut cells = r.table_cells();
        for name in &mut cells[..2] {
            *name = html_escape(name);
        }
        table.push_str(&format!(
            "<tr{class}><td>{}</td><td>{}</td></tr>\n",
            i + 1,
            cells.join("</td><td>")
        ));
    }
    table.push_str("</tbody></table>\n");
    let mut sizes = String::from("<table><thead><tr><th>training examples of the family</th><th>test n</th>");
    for r in &ranked {
        sizes.push_str(&format!("<th>{}</th>", html_escape(&row_name(r))));
    }
    sizes.push_str("</tr></thead><tbody>\n");
    for (bin, n, cells) in size_grid(&ranked) {
        sizes.push_str(&format!("<tr><td>{bin}</td><td>{n}</td>"));
        for cell in cells {
            sizes.push_str(&format!("<td>{cell}</td>"));
        }
        sizes.push_str("</tr>\n");
    }
    sizes.push_str("</tbody></table>\n");
    let best = ranked
        .first()
        .map(|r| {
            format!(
                "Best: <b>{}</b> with {:.2}% test errors.",
                html_escape(&row_name(r)),
                100.0 * r.error_rate
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th {{ background: #eee; }}
td:nth-child(2), td:nth-child(3) {{ text-align: left; }}
tr.best td {{ font-weight: bold; background: #e8f4e8; }}
figure {{ margin: 1.5em 0; }}
figure svg {{ max-width: 100%; height: auto; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{best} Error rate = share of test domains whose predicted family is wrong (a missing prediction is an error);
precision, recall and F1 are weighted by class support (scikit-learn's definitions).</p>
<h2>Error rate per embedding and classifier</h2>
<figure>{bars}<figcaption><a download="error_rate.png" href="data:image/png;base64,{bars_png}">PNG</a></figcaption></figure>
{table}
<h2>Error rate by training-family size</h2>
<p class="note">Test domains grouped by how many training examples their true family has (0: family absent from training).</p>
<figure>{sizes_plot}<figcaption><a download="error_by_family_size.png" href="data:image/png;base64,{sizes_png}">PNG</a></figcaption></figure>
{sizes}
<p class="note">Written by protfam {version}.</p>
</body></html>
"#,
        title = html_escape(title),
        bars = inline_svg(bars_svg),
        sizes_plot = inline_svg(sizes_svg),
        bars_png = b64(bars_png),
        sizes_png = b64(sizes_png),
        version = env!("CARGO_PKG_VERSION"),
    )
}

fn write_text(path: &Path, text: &[u8]) -> Result<(), CompareError> {
    write_bytes_atomic(path, text).map_err(|e| io_err(path, e))
}

/// Writes the whole comparison into `dir` (created if missing).
pub fn write_comparison(dir: &Path, title: &str, rows: &[ReportRow]) -> Result<ComparisonFiles, CompareError> {
    if rows.is_empty() {
        return Err(CompareError::Empty);
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let markdown = dir.join("comparison.md");
    let csv = dir.join("comparison.csv");
    let json = dir.join("comparison.json");
    let html = dir.join("comparison.html");
    let md = format!(
        "# {title}\n\n{}\n## Error rate (%) by training-family size\n\n{}",
        markdown_table(rows),
        markdown_size_table(rows)
    );
    write_text(&markdown, md.as_bytes())?;
    write_text(&csv, csv_table(rows).as_bytes())?;
    let ranked = ranked(rows);
    write_text(
        &json,
        serde_json::to_string_pretty(&ranked)
            .expect("rows serialise")
            .as_bytes(),
    )?;
    let (bars_svg, bars_png) = plot::error_bars(&ranked, dir, "error_rate", &format!("{title}: test error rate"))?;
    let (sizes_svg, sizes_png) = plot::error_by_size(
        &ranked,
        dir,
        "error_by_family_size",
        &format!("{title}: error rate by training-family size"),
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| io_err(p, e));
    let page = html_report(
        title,
        rows,
        &String::from_utf8_lossy(&read(&bars_svg)?),
        &String::from_utf8_lossy(&read(&sizes_svg)?),
        &read(&bars_png)?,
        &read(&sizes_png)?,
    );
    write_text(&html, page.as_bytes())?;
    Ok(ComparisonFiles {
        markdown,
        csv,
        json,
        html,
        bars_svg,
        bars_png,
        sizes_svg,
        sizes_png,
    })
}

/// One cached evaluation: the row plus what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedRun {
    /// Embedder spec key ([`crate::embedder::EmbedderSpec::key`]) or `none` for baselines.
    pub embedder_key: String,
    /// Classifier label (`knn`, `mlp`, `knn-k3-distance`, `hmm`, ...).
    pub classifier: String,
    pub split: String,
    /// Digest of the training data the row was measured with (empty when unknown).
    pub training_digest: String,
    pub row: ReportRow,
}

/// SHA-256 over a split's shard files (part, file name and bytes): cached
/// evaluations are reused only on the same data.
pub fn split_digest(root: &Path, split: &str) -> Result<String, CompareError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["train", "dev", "test"] {
        let paths =
            crate::io::pfam_csv::shard_paths(root, split, part).map_err(|e| io_err(&root.join(split).join(part), e))?;
        for path in paths {
            h.update(part.as_bytes());
            h.update(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            h.update(std::fs::read(&path).map_err(|e| io_err(&path, e))?);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Evaluation rows cached per embedder spec + classifier + split under
/// `<report_dir>/<split>/runs/<embedder_key>__<classifier>.json`.
#[derive(Debug, Clone)]
pub struct RunCache {
    pub dir: PathBuf,
}

fn clean(s: &str) -> String {
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

impl RunCache {
    pub fn new(report_dir: &Path, split: &str) -> Self {
        RunCache {
            dir: report_dir.join(clean(split)).join("runs"),
        }
    }

    pub fn path(&self, embedder_key: &str, classifier: &str) -> PathBuf {
        self.dir
            .join(format!("{}__{}.json", clean(embedder_key), clean(classifier)))
    }

    /// The cached run, if present, readable and for the same key, split and
    /// (when `training_digest` is given) training data; anything else is a miss.
    pub fn get(
        &self,
        embedder_key: &str,
        classifier: &str,
        split: &str,
        training_digest: Option<&str>,
    ) -> Option<CachedRun> {
        let path = self.path(embedder_key, classifier);
        let text = std::fs::read_to_string(&path).ok()?;
        let run: CachedRun = match serde_json::from_str(&text) {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!("{}: unreadable cached run ({e}); it will be recomputed", path.display());
                return None;
            }
        };
        let same = run.embedder_key == embedder_key
            && run.classifier == classifier
            && run.split == split
            && training_digest.is_none_or(|d| d == run.training_digest);
        same.then_some(run)
    }

    /// Records one evaluation row (what `evaluate` does for every pair it runs,
    /// so a later `compare` reuses it instead of training again).
    pub fn record(
        &self,
        embedder_key: &str,
        split: &str,
        data_digest: &str,
        row: &ReportRow,
    ) -> Result<PathBuf, CompareError> {
        self.put(&CachedRun {
            embedder_key: embedder_key.to_string(),
            classifier: row.classifier.clone(),
            split: split.to_string(),
            training_digest: data_digest.to_string(),
            row: row.clone(),
        })
    }

    pub fn put(&self, run: &CachedRun) -> Result<PathBuf, CompareError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let path = self.path(&run.embedder_key, &run.classifier);
        write_text(
            &path,
            serde_json::to_string_pretty(run).expect("run serialises").as_bytes(),
        )?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SizeBinError;

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

    fn rows() -> Vec<ReportRow> {
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

    #[test]
    fn writes_plots_tables_and_self_contained_html() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_comparison(dir.path(), "clustered_split", &rows()).unwrap();
        for png in [&files.bars_png, &files.sizes_png] {
            let bytes = std::fs::read(png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", png.display());
            // Width and height from the IHDR chunk.
            let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
            assert!(w >= 800 && h >= 500, "{w}x{h}");
        }
        let bars = std::fs::read_to_string(&files.bars_svg).unwrap();
        for name in [
            "unirep1900",
            "onehot",
            "baselines",
            "knn",
            "mlp",
            "hmm",
            "19.8",
            "test error rate (%)",
        ] {
            assert!(bars.contains(name), "bar chart lacks {name}");
        }
        let lines = std::fs::read_to_string(&files.sizes_svg).unwrap();
        assert!(lines.contains("unirep1900 + mlp") && lines.contains("10-49") && lines.contains("<polyline"));
        let html = std::fs::read_to_string(&files.html).unwrap();
        assert_eq!(html.matches("<svg").count(), 2, "both plots inline");
        assert_eq!(html.matches("data:image/png;base64,").count(), 2);
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "no external resources"
        );
        assert!(html.contains("<tr class=\"best\"><td>1</td><td>none</td><td>hmm</td>"));
        let json: Vec<ReportRow> = serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
        assert_eq!(json.len(), 5);
        assert!(std::fs::read_to_string(&files.markdown)
            .unwrap()
            .contains("by training-family size"));
    }

    #[test]
    fn no_rows_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_comparison(dir.path(), "x", &[]),
            Err(CompareError::Empty)
        ));
    }

    #[test]
    fn run_cache_round_trips_and_misses_on_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RunCache::new(dir.path(), "clustered_split");
        let run = CachedRun {
            embedder_key: "onehot-0123456789ab".into(),
            classifier: "knn".into(),
            split: "clustered_split".into(),
            training_digest: "abc".into(),
            row: rows()[2].clone(),
        };
        cache.put(&run).unwrap();
        // serde_json may round a float's last bit, so compare what identifies the run and the counts.
        let hit = cache
            .get("onehot-0123456789ab", "knn", "clustered_split", Some("abc"))
            .expect("cached");
        assert_eq!(
            (&hit.embedder_key, &hit.classifier, hit.row.errors, hit.row.n),
            (&run.embedder_key, &run.classifier, run.row.errors, run.row.n)
        );
        assert!((hit.row.error_rate - run.row.error_rate).abs() < 1e-12);
        assert!(cache
            .get("onehot-0123456789ab", "knn", "clustered_split", None)
            .is_some());
        assert_eq!(
            cache.get("onehot-0123456789ab", "knn", "clustered_split", Some("abd")),
            None
        );
        assert_eq!(cache.get("onehot-ffffffffffff", "knn", "clustered_split", None), None);
        assert_eq!(cache.get("onehot-0123456789ab", "mlp", "clustered_split", None), None);
        std::fs::write(cache.path("onehot-0123456789ab", "knn"), "{not json").unwrap();
        assert_eq!(cache.get("onehot-0123456789ab", "knn", "clustered_split", None), None);
    }
}
