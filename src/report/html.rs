//! The comparison page: tables, the two plots (SVG + PNG, see [`crate::plot`])
//! and a self-contained HTML report that inlines the SVGs and tables.
//!
//! [`write_comparison`] writes into one directory:
//! - `comparison.md`, `comparison.csv`, `comparison.json` (the rows, the shared report format);
//! - `error_rate.svg` / `.png` (grouped bars) and `error_by_family_size.svg` / `.png` (lines);
//! - `comparison.html`.

use std::path::{Path, PathBuf};

use super::significance::Headline;
use super::{
    csv_table, json_rows, markdown_size_table, markdown_table, ranked, row_name, size_grid, write_file, PredictionRow,
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

/// The self-contained HTML report: tables, both plots as inline SVG, and the
/// PNGs as base64 data links for download.
pub fn html_report(
    title: &str,
    rows: &[ReportRow],
    headline: Option<&Headline>,
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
         <th>error %</th><th>95% CI</th><th>precision</th><th>recall</th><th>F1</th><th>train s</th><th>predict s</th></tr></thead><tbody>\n",
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
    let best = headline.map(|h| h.html(html_escape)).unwrap_or_default();
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
<p>{best}</p>
<p class="note">Error rate = share of test domains whose predicted family is wrong (a missing prediction is an error);
the 95% CI is its Wilson interval over the test domains. McNemar's test pairs the two best methods on the same
domains. Precision, recall and F1 are weighted by class support (scikit-learn's definitions).</p>
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

/// Writes the whole comparison into `dir` (created if missing); `predictions` gives a
/// row's kept per-query predictions, which the headline's paired test needs.
pub fn write_comparison(
    dir: &Path,
    title: &str,
    rows: &[ReportRow],
    predictions: impl Fn(&ReportRow) -> Option<Vec<PredictionRow>>,
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
    let page = html_report(
        title,
        rows,
        headline.as_ref(),
        &String::from_utf8_lossy(&read(&bars_svg)?),
        &String::from_utf8_lossy(&read(&sizes_svg)?),
        &read(&bars_png)?,
        &read(&sizes_png)?,
    );
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

    #[test]
    fn writes_plots_tables_and_self_contained_html() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_comparison(dir.path(), "clustered_split", &rows(), |_| None).unwrap();
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
            write_comparison(dir.path(), "x", &[], |_| None),
            Err(ReportError::Empty)
        ));
    }
}
