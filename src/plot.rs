//! Comparison plots with `plotters`, written as SVG and PNG:
//! - [`error_bars`]: error rate per embedding, one bar per classifier (grouped
//!   bars; baselines form their own group);
//! - [`error_by_size`]: error rate against the training-family size bin, one
//!   line per embedding x classifier.
//!
//! PNG text needs a font file: DejaVu Sans (its licence allows redistribution;
//! `assets/fonts/DejaVuSans-LICENSE.txt`) is compiled in and registered with
//! plotters once, so the pictures look the same on every machine. SVG text is
//! left to the viewer's `sans-serif`.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::{ReportRow, SIZE_BINS};

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

/// Colour-blind-safe palette (Okabe & Ito), then plotters' own.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn colour(i: usize) -> RGBColor {
    if i < PALETTE.len() {
        PALETTE[i]
    } else {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
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

/// Draws `draw` on an SVG and a PNG backend of the same size.
fn both(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw_svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
    draw_png: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(PathBuf, PathBuf), PlotError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| draw_err(dir, e))?;
    let (svg, png) = output_paths(dir, name);
    // plotters writes a path itself: it draws into a temporary file that the
    // crate's atomic writer syncs and renames (a plot is never half written).
    let atomic = |target: &Path, draw: &dyn Fn(&Path) -> Result<(), String>| {
        crate::atomic::write_atomic_via_path(target, |tmp| draw(tmp).map_err(std::io::Error::other))
            .map_err(|e| draw_err(target, e))
    };
    atomic(&svg, &|tmp| {
        let root = SVGBackend::new(tmp, size).into_drawing_area();
        draw_svg(&root)?;
        root.present().map_err(|e| e.to_string())
    })?;
    atomic(&png, &|tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        draw_png(&root)?;
        root.present().map_err(|e| e.to_string())
    })?;
    Ok((svg, png))
}

/// Group name of a row on the bar chart: its embedding, or `baselines` for HMM / BLAST.
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

/// A y-axis label of an error-rate axis: whole percent, none above 100 (the headroom for labels).
fn percent_tick(y: f64) -> String {
    if y <= 100.0 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

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

/// Grouped bar chart of error rate (%): one group per embedding, one bar per
/// classifier, the value printed over each bar.
pub fn error_bars(rows: &[ReportRow], dir: &Path, name: &str, title: &str) -> Result<(PathBuf, PathBuf), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::Empty("no report rows for the error-rate chart".into()));
    }
    let groups = unique(rows.iter().map(group_of));
    let classifiers = unique(rows.iter().map(|r| r.classifier.clone()));
    let top = rows.iter().map(|r| r.error_rate * 100.0).fold(0.0, f64::max);
    // Headroom above the tallest bar for its value.
    let y_max = ((top * 1.1 + 6.0) / 10.0).ceil() * 10.0;
    let bar_width = 0.8 / classifiers.len() as f64;
    // Wide enough for long model names under each group, plus the legend column.
    let width = SIZE.0.max(180 * groups.len() as u32 + 200) + LEGEND_WIDTH;
    both(
        dir,
        name,
        (width, legend_height(classifiers.len())),
        |root| draw_bars(root, rows, &groups, &classifiers, bar_width, y_max, title),
        |root| draw_bars(root, rows, &groups, &classifiers, bar_width, y_max, title),
    )
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[ReportRow],
    groups: &[String],
    classifiers: &[String],
    bar_width: f64,
    y_max: f64,
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 as i32 - LEGEND_WIDTH as i32);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FAMILY, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(groups.len() as f64 - 0.5), 0f64..y_max)
        .map_err(e)?;
    let group_names = groups.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len().max(2) * 4)
        .x_label_formatter(&|x: &f64| category_tick(&group_names, *x))
        .y_desc("test error rate (%)")
        .y_label_formatter(&|y: &f64| percent_tick(*y))
        .light_line_style(TRANSPARENT)
        .x_desc("embedding")
        .label_style((FAMILY, 17))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(e)?;
    for (ci, classifier) in classifiers.iter().enumerate() {
        let colour = colour(ci);
        let mut bars = Vec::new();
        let mut labels = Vec::new();
        for (gi, group) in groups.iter().enumerate() {
            let Some(row) = rows
                .iter()
                .find(|r| &group_of(r) == group && &r.classifier == classifier)
            else {
                continue;
            };
            let x0 = gi as f64 - 0.4 + ci as f64 * bar_width;
            let x1 = x0 + bar_width * 0.92;
            let y = row.error_rate * 100.0;
            bars.push(Rectangle::new([(x0, 0.0), (x1, y)], colour.filled()));
            labels.push(Text::new(
                format!("{y:.1}"),
                ((x0 + x1) / 2.0, y + y_max * 0.01),
                (FAMILY, 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    )),
            ));
        }
        chart.draw_series(bars).map_err(e)?;
        chart.draw_series(labels).map_err(e)?;
    }
    let entries: Vec<(String, RGBColor)> = classifiers
        .iter()
        .enumerate()
        .map(|(ci, c)| (c.clone(), colour(ci)))
        .collect();
    draw_legend(&legend_area, &entries, LegendMark::Box)
}

const LEGEND_WIDTH: u32 = 320;
const LEGEND_TOP: i32 = 60;
const LEGEND_STEP: i32 = 24;

/// Image height: the chart's own, or taller when the legend needs it.
fn legend_height(entries: usize) -> u32 {
    SIZE.1.max((2 * LEGEND_TOP + LEGEND_STEP * entries as i32) as u32)
}

#[derive(Clone, Copy)]
enum LegendMark {
    Box,
    Line,
}

/// The legend in its own column right of the chart, so it never hides a bar,
/// a line or a value label however many series there are.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    mark: LegendMark,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    for (i, (label, colour)) in entries.iter().enumerate() {
        let y = LEGEND_TOP + i as i32 * LEGEND_STEP;
        match mark {
            LegendMark::Box => area
                .draw(&Rectangle::new([(10, y - 7), (24, y + 7)], colour.filled()))
                .map_err(e)?,
            LegendMark::Line => area
                .draw(&PathElement::new(
                    vec![(4, y), (28, y)],
                    ShapeStyle {
                        color: colour.to_rgba(),
                        filled: true,
                        stroke_width: 3,
                    },
                ))
                .map_err(e)?,
        }
        area.draw(&Text::new(
            label.clone(),
            (36, y),
            (FAMILY, 15)
                .into_font()
                .color(&BLACK)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                )),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// Line chart of error rate (%) against the training-family size bin, one line
/// per row; bins without test items are left out of a line.
pub fn error_by_size(rows: &[ReportRow], dir: &Path, name: &str, title: &str) -> Result<(PathBuf, PathBuf), PlotError> {
    let rows: Vec<&ReportRow> = rows.iter().filter(|r| !r.by_family_size.is_empty()).collect();
    if rows.is_empty() {
        return Err(PlotError::Empty("no report row has a family-size breakdown".into()));
    }
    both(
        dir,
        name,
        (SIZE.0 + LEGEND_WIDTH, legend_height(rows.len())),
        |root| draw_lines(root, &rows, title),
        |root| draw_lines(root, &rows, title),
    )
}

/// The family-size bins shown on the x axis: the paper's five.
fn bin_labels() -> Vec<&'static str> {
    SIZE_BINS.iter().map(|(_, _, label)| *label).collect()
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&ReportRow],
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let bins = bin_labels();
    root.fill(&WHITE).map_err(e)?;
    let (plot_area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 as i32 - LEGEND_WIDTH as i32);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FAMILY, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.3f64..(bins.len() as f64 - 0.7), 0f64..105.0)
        .map_err(e)?;
    let names = bins.clone();
    chart
        .configure_mesh()
        .x_labels(bins.len() * 4)
        .x_label_formatter(&|x: &f64| category_tick(&names, *x))
        .x_desc("training examples of the true family")
        .y_desc("test error rate (%)")
        .y_label_formatter(&|y: &f64| percent_tick(*y))
        .light_line_style(TRANSPARENT)
        .label_style((FAMILY, 17))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(e)?;
    for (i, row) in rows.iter().enumerate() {
        let colour = colour(i);
        let points: Vec<(f64, f64)> = bins
            .iter()
            .enumerate()
            .filter_map(|(x, label)| {
                let bin = row.by_family_size.iter().find(|b| b.bin == *label)?;
                (bin.n > 0).then_some((x as f64, bin.error_rate * 100.0))
            })
            .collect();
        let style = ShapeStyle {
            color: colour.to_rgba(),
            filled: true,
            stroke_width: 3,
        };
        chart.draw_series(LineSeries::new(points.clone(), style)).map_err(e)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 5, colour.filled())))
            .map_err(e)?;
    }
    let entries: Vec<(String, RGBColor)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let label = if group_of(row) == "baselines" {
                row.classifier.clone()
            } else {
                format!("{} + {}", row.embedding, row.classifier)
            };
            (label, colour(i))
        })
        .collect();
    draw_legend(&legend_area, &entries, LegendMark::Line)
}
