//! Comparison plots with `plotters`, written as SVG and PNG, drawn for a paper:
//! - [`error_bars`]: one horizontal bar per method with its 95% interval, methods
//!   grouped by embedding (baselines are a group), coloured by group: no empty
//!   slots, and every name and value has its own line;
//! - [`error_by_size`]: error rate against the training-family size bin (each bin
//!   labelled with its test n, empty bins left out), one line per method for the
//!   best few, with 95% intervals;
//! - [`log_log_lines`]: lines on log-log axes (the residue search benchmark's
//!   cost against store size).
//!
//! Colours are Okabe & Ito's colour-blind-safe set without its yellow, which is
//! unreadable on white.
//!
//! Each figure is drawn once, as SVG, and rendered to PNG by resvg at twice the
//! SVG's size. Both need a font file: DejaVu Sans (its licence allows
//! redistribution; `assets/fonts/DejaVuSans-LICENSE.txt`) is compiled in,
//! registered with plotters once for the text layout and given to resvg for
//! the rendering, so the pictures look the same on every machine. SVG text in
//! a browser is left to the viewer's `sans-serif`.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::ReportRow;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
static REGISTER: Once = Once::new();

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {message}")]
    Draw { path: String, message: String },
    #[error("nothing to plot: {0}")]
    Empty(String),
}

/// Colour-blind-safe palette (Okabe & Ito, without yellow).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
];

/// How many methods the family-size plot draws: one distinct colour each.
pub const MAX_SIZE_LINES: usize = PALETTE.len();

/// Colour `i`; past the palette, greys (only the bar chart's groups can get there).
fn colour(i: usize) -> RGBColor {
    match PALETTE.get(i) {
        Some(c) => *c,
        None => {
            let g = (90 + 30 * (i - PALETTE.len()) % 120) as u8;
            RGBColor(g, g, g)
        }
    }
}

fn register_font() {
    REGISTER.call_once(|| {
        // The bytes are the committed font; a failure here is a build defect.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the bundled DejaVu Sans does not parse");
        }
    });
}

/// The SVG and PNG paths written for a stem (`dir/name.svg`, `dir/name.png`).
pub fn output_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.svg")), dir.join(format!("{name}.png")))
}

const SIZE: (u32, u32) = (1000, 600);

fn draw_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// PNG pixels per SVG unit: 2 makes the 1,000-unit-wide figures 2,000 pixels
/// wide, sharp in print.
const PNG_SCALE: f32 = 2.0;

/// Draws a figure once, as SVG, and writes it with its PNG rendering beside it.
fn write_figure(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<(PathBuf, PathBuf), PlotError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| draw_err(dir, e))?;
    let (svg_path, png_path) = output_paths(dir, name);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).map_err(|e| draw_err(&svg_path, e))?;
        root.present().map_err(|e| draw_err(&svg_path, e))?;
    }
    let png = rasterise(&svg).map_err(|e| draw_err(&png_path, e))?;
    // Each file is written whole or not at all (crate::atomic).
    crate::atomic::write_bytes_atomic(&svg_path, svg.as_bytes()).map_err(|e| draw_err(&svg_path, e))?;
    crate::atomic::write_bytes_atomic(&png_path, &png).map_err(|e| draw_err(&png_path, e))?;
    Ok((svg_path, png_path))
}

/// The PNG of an SVG drawn here, rendered by resvg at [`PNG_SCALE`] with the
/// bundled font. The PNG is the SVG's own picture: plotters lays text out with
/// the same font's advances and kerning, and resvg shapes it as a browser does
/// (plotters' own bitmap text drops each glyph's side bearing, which spaced
/// letter pairs oddly).
fn rasterise(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(PNG_SCALE)
        .ok_or("the figure is too large to render")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the figure is too large to render")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| e.to_string())
}

/// The x-axis label at `x` of a categorical axis: the name of category `x` where `x` is a whole
/// category index, nothing between categories (the mesh asks for labels at fractional positions).
fn category_tick(names: &[impl ToString], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].to_string()
    } else {
        String::new()
    }
}

/// A label of an error-rate axis: whole percent, none above 100 (the headroom for value labels).
fn percent_tick(y: f64) -> String {
    if y <= 100.0 + 1e-9 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// Group name of a row on the bar chart: its embedding, or `baselines` for HMM / BLAST.
fn group_of(row: &ReportRow) -> String {
    if row.embedding == "none" || row.embedding.is_empty() {
        "baselines".to_string()
    } else {
        row.embedding.clone()
    }
}

fn unique<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// One horizontal bar per row: error rate (%) with its 95% Wilson interval and
/// value, rows grouped by embedding (groups in order of their best row, rows best
/// first within a group) and coloured by group.
pub fn error_bars(rows: &[ReportRow], dir: &Path, name: &str, title: &str) -> Result<(PathBuf, PathBuf), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::Empty("no report rows for the error-rate chart".into()));
    }
    let mut ordered: Vec<&ReportRow> = rows.iter().collect();
    ordered.sort_by(|a, b| a.error_rate.total_cmp(&b.error_rate));
    let groups = unique(ordered.iter().map(|r| group_of(r)));
    ordered.sort_by_key(|r| groups.iter().position(|g| *g == group_of(r)));
    let height = 130 + 30 * ordered.len() as u32;
    write_figure(dir, name, (SIZE.0 + 100, height.max(500)), |root| {
        draw_bars(root, &ordered, &groups, title)
    })
}

fn anchored(size: u32, h: plotters::style::text_anchor::HPos) -> TextStyle<'static> {
    (FAMILY, size)
        .into_font()
        .color(&BLACK)
        .pos(plotters::style::text_anchor::Pos::new(
            h,
            plotters::style::text_anchor::VPos::Center,
        ))
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&ReportRow],
    groups: &[String],
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (key_area, plot_area) = root.split_vertically(64);
    let names: Vec<String> = rows.iter().map(|r| r.name()).collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let n = rows.len();
    let top = rows.iter().map(|r| 100.0 * r.error_interval().1).fold(0.0, f64::max);
    // Room right of the longest whisker for its value.
    let x_max = (((top + 9.0) / 10.0).ceil() * 10.0).min(110.0);
    let mut chart = ChartBuilder::on(&plot_area)
        .margin_left(16)
        .margin_right(24)
        .margin_bottom(8)
        .x_label_area_size(56)
        .y_label_area_size((24 + 9 * longest as u32).min(420))
        .build_cartesian_2d(0f64..x_max, -0.5f64..(n as f64 - 0.5))
        .map_err(e)?;
    // Row i is drawn at y = n - 1 - i, so the first row is on top.
    let y_names: Vec<String> = names.iter().rev().cloned().collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n.max(2) * 4)
        .y_label_formatter(&|y: &f64| category_tick(&y_names, *y))
        .x_labels(12)
        .x_label_formatter(&|x: &f64| percent_tick(*x))
        .x_desc("test error rate (%), with its 95% interval")
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(e)?;
    for (i, row) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let colour = colour(groups.iter().position(|g| *g == group_of(row)).unwrap_or(0));
        let rate = 100.0 * row.error_rate;
        let (low, high) = row.error_interval();
        let (low, high) = (100.0 * low, 100.0 * high);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y - 0.36), (rate, y + 0.36)],
                colour.mix(0.85).filled(),
            )))
            .map_err(e)?;
        let whisker = ShapeStyle {
            color: BLACK.to_rgba(),
            filled: true,
            stroke_width: 2,
        };
        for segment in [
            vec![(low, y), (high, y)],
            vec![(low, y - 0.18), (low, y + 0.18)],
            vec![(high, y - 0.18), (high, y + 0.18)],
        ] {
            chart
                .draw_series(std::iter::once(PathElement::new(segment, whisker)))
                .map_err(e)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{rate:.1}"),
                (high + x_max * 0.012, y),
                anchored(15, plotters::style::text_anchor::HPos::Left),
            )))
            .map_err(e)?;
    }
    // Title and the group key in a strip above the chart: never over a bar.
    key_area
        .draw(&Text::new(
            title.to_string(),
            (16, 20),
            anchored(22, plotters::style::text_anchor::HPos::Left),
        ))
        .map_err(e)?;
    let mut x = 16;
    for (gi, group) in groups.iter().enumerate() {
        key_area
            .draw(&Rectangle::new([(x, 42), (x + 14, 56)], colour(gi).mix(0.85).filled()))
            .map_err(e)?;
        key_area
            .draw(&Text::new(
                group.clone(),
                (x + 20, 49),
                anchored(15, plotters::style::text_anchor::HPos::Left),
            ))
            .map_err(e)?;
        x += 40 + 9 * group.chars().count() as i32;
    }
    Ok(())
}

const LEGEND_TOP: i32 = 70;
const LEGEND_STEP: i32 = 26;

/// Legend column width for labels of up to `longest` characters.
fn legend_width(longest: usize) -> u32 {
    (60 + 9 * longest as u32).clamp(160, 420)
}

/// The legend in its own column right of the chart, so it never hides a line.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    for (i, (label, colour)) in entries.iter().enumerate() {
        let y = LEGEND_TOP + i as i32 * LEGEND_STEP;
        area.draw(&PathElement::new(
            vec![(4, y), (28, y)],
            ShapeStyle {
                color: colour.to_rgba(),
                filled: true,
                stroke_width: 3,
            },
        ))
        .map_err(e)?;
        area.draw(&Circle::new((16, y), 4, colour.filled())).map_err(e)?;
        area.draw(&Text::new(
            label.clone(),
            (36, y),
            anchored(15, plotters::style::text_anchor::HPos::Left),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// Error rate (%) against the training-family size bin for the best
/// [`MAX_SIZE_LINES`] rows of `rows` (ranked best first, as reports pass them),
/// one line each, with 95% intervals; every bin is labelled with its test n.
pub fn error_by_size(rows: &[ReportRow], dir: &Path, name: &str, title: &str) -> Result<(PathBuf, PathBuf), PlotError> {
    let rows: Vec<&ReportRow> = rows
        .iter()
        .filter(|r| !r.by_family_size.is_empty())
        .take(MAX_SIZE_LINES)
        .collect();
    if rows.is_empty() {
        return Err(PlotError::Empty("no report row has a family-size breakdown".into()));
    }
    let longest = rows.iter().map(|r| r.name().chars().count()).max().unwrap_or(0);
    let legend = legend_width(longest);
    write_figure(dir, name, (SIZE.0 + legend, SIZE.1), |root| {
        draw_lines(root, &rows, legend, title)
    })
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&ReportRow],
    legend_width: u32,
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let bins = crate::metrics::shown_size_bins(rows.iter().copied());
    root.fill(&WHITE).map_err(e)?;
    let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 as i32 - legend_width as i32);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.4f64..(bins.len() as f64 - 0.6), 0f64..100.0)
        .map_err(e)?;
    let names: Vec<String> = bins.iter().map(|(bin, n)| format!("{bin} (n = {n})")).collect();
    chart
        .configure_mesh()
        .x_labels(bins.len().max(2) * 4)
        .x_label_formatter(&|x: &f64| category_tick(&names, *x))
        .y_labels(11)
        .x_desc("training examples of the true family (n = test domains)")
        .y_desc("test error rate (%), with its 95% interval")
        .y_label_formatter(&|y: &f64| percent_tick(*y))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(e)?;
    let lines = rows.len() as f64;
    for (i, row) in rows.iter().enumerate() {
        let colour = colour(i);
        // Lines side by side within a bin, so the intervals do not hide each other.
        let offset = (i as f64 - (lines - 1.0) / 2.0) * 0.05;
        let points: Vec<(f64, f64, f64, f64)> = bins
            .iter()
            .enumerate()
            .filter_map(|(x, (label, _))| {
                let bin = row.size_bin(label).filter(|b| b.n > 0)?;
                let (low, high) = crate::metrics::wilson_interval(bin.errors, bin.n);
                Some((x as f64 + offset, 100.0 * bin.error_rate, 100.0 * low, 100.0 * high))
            })
            .collect();
        let style = ShapeStyle {
            color: colour.to_rgba(),
            filled: true,
            stroke_width: 2,
        };
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), style))
            .map_err(e)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, _, low, high)| PathElement::new(vec![(x, low), (x, high)], style)),
            )
            .map_err(e)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y, _, _)| Circle::new((x, y), 4, colour.filled())),
            )
            .map_err(e)?;
    }
    let entries: Vec<(String, RGBColor)> = rows.iter().enumerate().map(|(i, r)| (r.name(), colour(i))).collect();
    draw_legend(&legend_area, &entries)
}

/// A log axis label: plain digits from 0.001 to 9,999 (`0.5`, `20`), else
/// powers of ten (`2e5`).
fn log_tick(v: f64) -> String {
    if (1e-3..1e4).contains(&v) {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// One line of [`log_log_lines`]: a name and its `(x, y)` points (both positive).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Lines on log-log axes (e.g. search cost per query residue against store
/// rows, where a slope of 1 is linear growth), one colour each, points marked.
pub fn log_log_lines(
    series: &[Series],
    (x_desc, y_desc): (&str, &str),
    dir: &Path,
    name: &str,
    title: &str,
) -> Result<(PathBuf, PathBuf), PlotError> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if all.is_empty()
        || all
            .iter()
            .any(|&(x, y)| !(x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()))
    {
        return Err(PlotError::Empty("a log-log plot needs positive, finite points".into()));
    }
    let span = |values: Vec<f64>| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        // Half a decade of room on each side, and never a zero-width axis.
        (low / 2.0, (high * 2.0).max(low * 4.0))
    };
    let (x_range, y_range) = (
        span(all.iter().map(|p| p.0).collect()),
        span(all.iter().map(|p| p.1).collect()),
    );
    let longest = series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    let legend = legend_width(longest);
    write_figure(dir, name, (SIZE.0 + legend, SIZE.1), |root| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 as i32 - legend as i32);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d((x_range.0..x_range.1).log_scale(), (y_range.0..y_range.1).log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x: &f64| log_tick(*x))
            .y_label_formatter(&|y: &f64| log_tick(*y))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(e)?;
        for (i, line) in series.iter().enumerate() {
            let style = ShapeStyle {
                color: colour(i).to_rgba(),
                filled: true,
                stroke_width: 2,
            };
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(e)?;
            chart
                .draw_series(line.points.iter().map(|&p| Circle::new(p, 4, colour(i).filled())))
                .map_err(e)?;
        }
        let entries: Vec<(String, RGBColor)> = series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), colour(i)))
            .collect();
        draw_legend(&legend_area, &entries)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SizeBinError;

    #[test]
    fn bins_without_test_items_are_not_shown() {
        let metrics = crate::metrics::Metrics {
            n: 40,
            errors: 4,
            error_rate: 0.1,
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
        let mut row = ReportRow::new("near", "knn", metrics, 0.0, 0.0);
        row.by_family_size = vec![
            SizeBinError {
                bin: "1".into(),
                n: 0,
                errors: 0,
                error_rate: 0.0,
            },
            SizeBinError {
                bin: "10-49".into(),
                n: 40,
                errors: 4,
                error_rate: 0.1,
            },
        ];
        assert_eq!(crate::metrics::shown_size_bins([&row]), vec![("10-49".to_string(), 40)]);
    }

    #[test]
    fn the_png_is_the_svg_rendered_at_twice_its_size_with_text_where_the_layout_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = "one-hot knn-ensemble";
        let (x, y, size) = (40, 30, 40.0);
        let (svg, png) = write_figure(dir.path(), "text", (900, 120), |root| {
            let e = |e: DrawingAreaErrorKind<_>| e.to_string();
            root.fill(&WHITE).map_err(e)?;
            root.draw_text(text, &(FAMILY, size).into_font().color(&BLACK), (x, y))
                .map_err(e)
        })
        .unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains(text));
        let pixmap = resvg::tiny_skia::Pixmap::decode_png(&std::fs::read(&png).unwrap()).unwrap();
        assert_eq!((pixmap.width(), pixmap.height()), (1800, 240));
        // Columns holding ink (dark pixels), in SVG units.
        let inked: Vec<f32> = (0..pixmap.width())
            .filter(|&px| (0..pixmap.height()).any(|py| pixmap.pixel(px, py).unwrap().red() < 128))
            .map(|px| px as f32 / PNG_SCALE)
            .collect();
        let mut scratch = String::new();
        let width = {
            let root = SVGBackend::with_string(&mut scratch, (900, 120)).into_drawing_area();
            root.estimate_text_size(text, &(FAMILY, size).into_font().color(&BLACK))
                .unwrap()
                .0 as f32
        };
        let (first, last) = (inked[0], inked[inked.len() - 1]);
        // The ink starts within a side bearing (a few units at 40 px) of the text's
        // position and fills the layout box plotters estimated (SVG text is set
        // at plotters' size / 1.24 em, a little narrower than that estimate).
        assert!((first - x as f32).abs() < 5.0, "ink starts at {first}, text at {x}");
        let end = x as f32 + width;
        assert!(
            last < end + 5.0 && last - first > 0.85 * width,
            "ink {first}..{last}, layout {x}..{end}"
        );
    }

    #[test]
    fn log_ticks_are_short() {
        assert_eq!(
            [0.5, 2.0, 10.0, 1500.0, 2e5, 1.333e6].map(log_tick),
            ["0.5", "2", "10", "1500", "2e5", "1e6"]
        );
    }

    #[test]
    fn a_log_log_plot_is_written_and_refuses_points_it_cannot_place() {
        let dir = tempfile::tempdir().unwrap();
        let line = |name: &str, points: Vec<(f64, f64)>| Series {
            name: name.into(),
            points,
        };
        let series = [
            line("exact", vec![(1e5, 2.0), (1e6, 20.0)]),
            line("ivf", vec![(1e5, 0.5), (1e6, 0.8)]),
        ];
        let (svg, png) = log_log_lines(&series, ("rows", "s"), dir.path(), "scaling", "cost").unwrap();
        assert!(std::fs::read_to_string(svg).unwrap().contains("ivf"));
        assert!(std::fs::metadata(png).unwrap().len() > 1000);
        let bad = [line("exact", vec![(0.0, 1.0)])];
        assert!(log_log_lines(&bad, ("rows", "s"), dir.path(), "bad", "cost").is_err());
    }

    #[test]
    fn the_palette_has_no_yellow_and_is_distinct() {
        for (i, a) in PALETTE.iter().enumerate() {
            // Yellow: red and green high, blue low.
            assert!(!(a.0 > 200 && a.1 > 200 && a.2 < 100), "{a:?}");
            for b in &PALETTE[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(colour(PALETTE.len()), colour(PALETTE.len() + 1));
    }
}
