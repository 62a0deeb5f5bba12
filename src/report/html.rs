//! The comparison page: tables, the two plots (SVG + PNG, see [`crate::plot`])
//! and a self-contained HTML report that inlines the SVGs and tables.
//!
//! [`write_comparison`] writes into one directory:
//! - `comparison.md`, `comparison.csv`, `comparison.json` (the rows, the shared report format);
//! - `error_rate.svg` / `.png` (one bar per method with its 95% interval) and
//!   `error_by_family_size.svg` / `.png` (lines for the best methods, with intervals);
//! - `comparison.html`.

use std::path::{Path, PathBuf};

use super::significance::Headline;
use super::{
    csv_table, json_rows, markdown_size_table, markdown_table, ranked, size_grid, write_file, PredictionRow,
    ReportError, ReportRow,
};
use crate::plot;

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

/// Where a report came from, printed at its foot so a figure can be traced to its run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The command line that wrote it.
    pub command: String,
    /// UTC date and time, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The data: dataset root, split and its content digest.
    pub data: String,
    /// Host, CPU model and core count.
    pub machine: String,
}

impl Provenance {
    /// This process's command line, the current time and this machine, with `data` as given.
    pub fn of_this_run(data: String) -> Provenance {
        Provenance {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date: utc_now(),
            data,
            machine: machine(),
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` of the system clock (days to civil date: Hinnant's algorithm).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `host, CPU model, N cores` from what Linux exposes (parts it does not are left out).
fn machine() -> String {
    let mut parts = Vec::new();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        parts.push(host.trim().to_string());
    }
    if let Some(model) = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    }) {
        parts.push(model);
    }
    if let Ok(n) = std::thread::available_parallelism() {
        parts.push(format!("{n} cores"));
    }
    parts.join(", ")
}

/// The two plots, as SVG text to inline and PNG bytes to offer for download.
pub struct Figures<'a> {
    pub bars_svg: &'a str,
    pub bars_png: &'a [u8],
    pub sizes_svg: &'a str,
    pub sizes_png: &'a [u8],
}

/// The self-contained HTML report: headline, how to read it, both plots as inline
/// SVG (PNGs as base64 download links), the tables, and the provenance. It fits
/// its page: the figures scale to the column, and the size table has one row per
/// method (a column per size bin), so it stays narrow however many methods there are.
pub fn html_report(
    title: &str,
    rows: &[ReportRow],
    headline: Option<&Headline>,
    provenance: &Provenance,
    figures: &Figures,
) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ranked = ranked(rows);
    let mut table = String::from(
        "<table><thead><tr><th>rank</th><th>embedding</th><th>classifier</th><th>n</th><th>errors</th>\
         <th>error %</th><th>95% CI</th><th>precision</th><th>recall</th><th>F1</th><th>train s</th><th>predict s</th></tr></thead><tbody>\n",
    );
    let winner = headline.and_then(Headline::clear_winner) == Some(true);
    for (i, r) in ranked.iter().enumerate() {
        // Highlighted only when the headline finds it a clear winner.
        let class = if i == 0 && winner { " class=\"best\"" } else { "" };
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
    let grid = size_grid(&ranked);
    let mut sizes = String::from("<table><thead><tr><th>method</th>");
    for (bin, n, _) in &grid {
        sizes.push_str(&format!("<th>{bin}<br><span class=\"n\">n = {n}</span></th>"));
    }
    sizes.push_str("</tr></thead><tbody>\n");
    for (i, r) in ranked.iter().enumerate() {
        sizes.push_str(&format!("<tr><td>{}</td>", html_escape(&r.name())));
        for (_, _, cells) in &grid {
            sizes.push_str(&format!("<td>{}</td>", cells[i]));
        }
        sizes.push_str("</tr>\n");
    }
    sizes.push_str("</tbody></table>\n");
    let best = headline.map(|h| h.html(html_escape)).unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1280px; color: #222; line-height: 1.45; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 3px 7px; text-align: right; white-space: nowrap; }}
th {{ background: #eee; }}
th .n {{ font-weight: normal; color: #555; }}
td:nth-child(2), td:nth-child(3) {{ text-align: left; }}
#sizes td:first-child {{ text-align: left; }}
tr.best td {{ font-weight: bold; background: #e6f0fa; }}
figure {{ margin: 1.2em 0; }}
figure svg {{ width: 100%; height: auto; }}
.headline {{ font-size: 1.05em; }}
.note {{ color: #555; font-size: 0.9em; }}
dl.provenance {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 0.85em; color: #555; }}
dl.provenance dd {{ margin: 0; font-family: "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="headline">{best}</p>
<h2>How to read this</h2>
<p class="note">Each row is one method: an embedding with a classifier, or a baseline (HMM, BLAST) that needs no embedding.
Error rate = share of test domains whose predicted family is wrong (a missing prediction is an error); lower is better.
The 95% CI is its Wilson interval: the range the error rate could take on another draw of test domains of the same kind.
Two methods whose intervals overlap may still differ; the headline's McNemar test settles that on the domains
they share, and only a p-value below 0.05 names a winner. Precision, recall and F1 are weighted by class support
(scikit-learn's definitions). The second figure splits the error by how many training examples the true family has
(0: the family is absent from training, which no method can get right).</p>
<h2>Error rate per method</h2>
<figure>{bars}<figcaption><a download="error_rate.png" href="data:image/png;base64,{bars_png}">PNG</a></figcaption></figure>
<div class="scroll">{table}</div>
<h2>Error rate by training-family size</h2>
<figure>{sizes_plot}<figcaption><a download="error_by_family_size.png" href="data:image/png;base64,{sizes_png}">PNG</a></figcaption></figure>
<p class="note">Error rate (%) of the test domains whose family has that many training examples; n = test domains in the bin.</p>
<div class="scroll" id="sizes">{sizes}</div>
<h2>Provenance</h2>
<dl class="provenance">
<dt>command</dt><dd>{command}</dd>
<dt>date</dt><dd>{date}</dd>
<dt>data</dt><dd>{data}</dd>
<dt>machine</dt><dd>{machine}</dd>
<dt>protfam</dt><dd>{version}</dd>
</dl>
</body></html>
"#,
        title = html_escape(title),
        bars = inline_svg(figures.bars_svg),
        sizes_plot = inline_svg(figures.sizes_svg),
        bars_png = b64(figures.bars_png),
        sizes_png = b64(figures.sizes_png),
        command = html_escape(&provenance.command),
        date = html_escape(&provenance.date),
        data = html_escape(&provenance.data),
        machine = html_escape(&provenance.machine),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Writes the whole comparison into `dir` (created if missing); `predictions` gives a
/// row's kept per-query predictions, which the headline's paired test needs.
pub fn write_comparison(
    dir: &Path,
    title: &str,
    rows: &[ReportRow],
    predictions: impl Fn(&ReportRow) -> Option<Vec<PredictionRow>>,
    provenance: &Provenance,
) -> Result<ComparisonFiles, ReportError> {
    if rows.is_empty() {
        return Err(ReportError::Empty);
    }
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let markdown = dir.join("comparison.md");
    let csv = dir.join("comparison.csv");
    let json = dir.join("comparison.json");
    let html = dir.join("comparison.html");
    let headline = Headline::of(rows, predictions);
    let md = format!(
        "# {title}\n\n{}\n\n{}\n## Error rate (%) by training-family size\n\n{}",
        headline.as_ref().map(Headline::markdown).unwrap_or_default(),
        markdown_table(rows),
        markdown_size_table(rows)
    );
    write_file(&markdown, md.as_bytes())?;
    write_file(&csv, csv_table(rows).as_bytes())?;
    let ranked = ranked(rows);
    write_file(&json, json_rows(&ranked).as_bytes())?;
    let (bars_svg, bars_png) = plot::error_bars(&ranked, dir, "error_rate", &format!("{title}: test error rate"))?;
    let (sizes_svg, sizes_png) = plot::error_by_size(
        &ranked,
        dir,
        "error_by_family_size",
        &format!("{title}: error rate by training-family size"),
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| ReportError::io(p, e));
    let (bars, sizes) = (
        String::from_utf8_lossy(&read(&bars_svg)?).into_owned(),
        String::from_utf8_lossy(&read(&sizes_svg)?).into_owned(),
    );
    let (bars_bytes, sizes_bytes) = (read(&bars_png)?, read(&sizes_png)?);
    let figures = Figures {
        bars_svg: &bars,
        bars_png: &bars_bytes,
        sizes_svg: &sizes,
        sizes_png: &sizes_bytes,
    };
    let page = html_report(title, rows, headline.as_ref(), provenance, &figures);
    write_file(&html, page.as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rows;

    fn provenance() -> Provenance {
        Provenance {
            command: "protfam compare --models a,b".into(),
            date: "2026-12-02 12:00 UTC".into(),
            data: "clustered_split (digest 0123)".into(),
            machine: "test host".into(),
        }
    }

    #[test]
    fn utc_now_is_a_plausible_date() {
        let now = utc_now();
        assert_eq!(now.len(), "2026-12-02 12:00 UTC".len(), "{now}");
        assert!(now.as_str() > "2024" && now.ends_with(" UTC"), "{now}");
    }

    #[test]
    fn writes_plots_tables_and_self_contained_html() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_comparison(dir.path(), "clustered_split", &rows(), |_| None, &provenance()).unwrap();
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
        // hmm leads by intervals that do not overlap, so it is highlighted.
        assert!(
            html.contains("<tr class=\"best\"><td>1</td><td>none</td><td>hmm</td>"),
            "{html}"
        );
        // Provenance, and the size table one row per method with each bin's n.
        assert!(
            html.contains("<dd>protfam compare --models a,b</dd>") && html.contains("<dd>2026-12-02 12:00 UTC</dd>")
        );
        assert!(html.contains("<tr><td>unirep1900 + mlp</td>") && html.contains("<span class=\"n\">n = "));
        // No predictions to pair: the headline says so and judges by the intervals.
        assert!(
            html.contains("Lowest error: <b>hmm</b>") && html.contains("No paired test"),
            "{html}"
        );
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
            write_comparison(dir.path(), "x", &[], |_| None, &provenance()),
            Err(ReportError::Empty)
        ));
    }
}
