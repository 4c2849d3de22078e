//! Pictures: a confusion-matrix heatmap per task and the training curves of a run.
//! Drawn in memory with plotters and an embedded font (DejaVu Sans, assets/fonts), encoded
//! as PNG and written atomically, so they look the same on every machine.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::{ellipsize, ellipsize_middle, one_line};
use super::text_backend::{TextBackend, FONT_BYTES};
use crate::atomic_write;
use crate::train::log::{read_log, LogRecord};

const FONT: &str = "sans-serif";

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded font could not be loaded"))
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Renders `draw` on a white RGB canvas and writes it to `path` as PNG, atomically.
fn render_png(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&Canvas) -> Result<()>) -> Result<()> {
    register_font()?;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = TextBackend(BitMapBackend::with_buffer(&mut pixels, (width, height))).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let mut encoded = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut encoded, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Per-row filters and the best deflate: the STS-B dev scatter (1500 translucent
        // dots) takes 75 KB instead of 490 KB.
        encoder.set_compression(png::Compression::Best);
        encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
    }
    atomic_write::write_file(path, &encoded)
}

/// White to dark blue by `share` in [0, 1].
fn heat_color(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

type Canvas<'a> = DrawingArea<TextBackend<'a>, plotters::coord::Shift>;

/// The most classes a confusion heatmap is drawn for: 100 make a picture about 2,500 px wide,
/// past which cells too small for their counts would be all it shows.
pub const HEATMAP_MAX_CLASSES: usize = 100;

/// A heatmap of `matrix` (rows: true class, columns: predicted), coloured by each row's
/// share (recall per cell, with a colour key) and labelled with counts. Sizes, fonts and
/// label rotation adapt to the number of classes (readable from 2 to 50; the callers draw
/// none past [`HEATMAP_MAX_CLASSES`]).
pub fn confusion_heatmap(path: &Path, title: &str, labels: &[String], matrix: &[Vec<u64>]) -> Result<()> {
    let labels = heatmap_labels(labels);
    let labels = labels.as_slice();
    let layout = HeatmapLayout::new(title, labels, matrix)?;
    render_png(path, (layout.width, layout.height), |root| {
        layout.draw_titles(root, title)?;
        layout.draw_cells(root, matrix)?;
        layout.draw_colour_key(root)?;
        layout.draw_class_labels(root, labels)?;
        layout.draw_axis_names(root)
    })
}

/// Class labels as a heatmap shows them: on one line, and long ones cut in the middle (the
/// margins grow with the widest label, and the picture with their square; the CSV and JSON
/// have them whole). Labels the cut leaves alike get their class index in front.
fn heatmap_labels(labels: &[String]) -> Vec<String> {
    let short: Vec<String> =
        labels.iter().map(|label| ellipsize_middle(&one_line(label.clone()), HEATMAP_LABEL_COLUMNS)).collect();
    let alike = |i: usize| short.iter().filter(|other| **other == short[i]).count() > 1;
    (0..short.len()).map(|i| if alike(i) { format!("{i}: {}", short[i]) } else { short[i].clone() }).collect()
}

/// The most characters of a class label a heatmap shows (a class index may come before
/// labels that are cut alike).
const HEATMAP_LABEL_COLUMNS: usize = 40;

/// The font size for counts up to `largest` in cells of side `cell`: about 0.4 of the cell,
/// smaller (down to 7 pt) where the largest count would not fit; `true` where even that is
/// too wide, so that counts are written short ([`short_count`]).
fn count_font(cell: u32, largest: u64) -> (f64, bool) {
    let room = cell.saturating_sub(4);
    let widest = largest.to_string();
    let mut size = (cell as f64 * 0.4).clamp(9.0, 18.0);
    while size > 7.0 && text_width(&widest, size) > room {
        size -= 0.5;
    }
    (size, text_width(&widest, size) > room)
}

/// A count in at most four characters: 999, 1k, 1.5k, 12k, 123k, 1.2M, 12M.
fn short_count(count: u64) -> String {
    let (value, unit) = match count {
        0..=999 => return count.to_string(),
        1_000..=999_999 => (count as f64 / 1e3, "k"),
        1_000_000..=999_999_999 => (count as f64 / 1e6, "M"),
        _ => (count as f64 / 1e9, "G"),
    };
    // One decimal below 10, where it fits; rounding up to 1000 moves to the next unit.
    let shown = if value < 9.95 { format!("{value:.1}") } else { format!("{value:.0}") };
    match (shown.as_str(), unit) {
        ("1000", "k") => "1M".into(),
        ("1000", "M") => "1G".into(),
        _ => format!("{}{unit}", shown.trim_end_matches(".0")),
    }
}

/// Room right of a heatmap's grid for its colour key.
const KEY_MARGIN: u32 = 90;

/// Where a confusion heatmap's parts go, in pixels.
struct HeatmapLayout {
    /// A cell's side.
    cell: u32,
    label_size: f64,
    count_size: f64,
    /// Counts too wide for a cell even in the smallest font are written short (12k).
    short_counts: bool,
    /// Predicted-class labels are turned upright when the widest does not fit a cell.
    rotate_x: bool,
    /// The grid's left and top edges, and its side.
    left: u32,
    top: u32,
    grid: u32,
    width: u32,
    height: u32,
}

impl HeatmapLayout {
    /// Sizes for `labels` and `matrix`'s counts, measuring them with the real font to size
    /// the margins and fit the counts in their cells.
    fn new(title: &str, labels: &[String], matrix: &[Vec<u64>]) -> Result<Self> {
        let n = labels.len().max(1) as u32;
        // From about 25 classes the grid grows past 560 px, so that counts stay legible; a
        // few classes get cells large enough to read at a glance.
        let cell = (560 / n).clamp(22, 110);
        let label_size = (cell as f64 * 0.5).clamp(10.0, 16.0);
        register_font()?;
        let widest = labels.iter().map(|l| text_width(l, label_size)).max().unwrap_or(0);
        let rotate_x = widest + 6 > cell;
        let (left, top, grid) = (widest + 50, 70, cell * n);
        let bottom = if rotate_x { widest + 50 } else { label_size as u32 + 50 };
        let largest = matrix.iter().flatten().copied().max().unwrap_or(0);
        let (count_size, short_counts) = count_font(cell, largest);
        Ok(Self {
            cell,
            label_size,
            count_size,
            short_counts,
            rotate_x,
            left,
            top,
            grid,
            width: (left + grid + KEY_MARGIN).max(text_width(title, 18.0) + 40).max(360),
            height: top + grid + bottom,
        })
    }

    fn draw_titles(&self, root: &Canvas, title: &str) -> Result<()> {
        let centre = self.width as i32 / 2;
        let title_style =
            TextStyle::from((FONT, 18.0).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), (centre, 10), title_style)).map_err(plot_error)?;
        let subtitle = TextStyle::from((FONT, 12.0).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            "rows: true class, columns: predicted; colour: share of the true class".to_string(),
            (centre, 36),
            subtitle,
        ))
        .map_err(plot_error)
    }

    /// Each cell filled by its share of the row, outlined, with its count when non-zero.
    fn draw_cells(&self, root: &Canvas, matrix: &[Vec<u64>]) -> Result<()> {
        let cell = self.cell as i32;
        for (r, row) in matrix.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (c, &count) in row.iter().enumerate() {
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let x0 = (self.left + c as u32 * self.cell) as i32;
                let y0 = (self.top + r as u32 * self.cell) as i32;
                let corners = [(x0, y0), (x0 + cell, y0 + cell)];
                root.draw(&Rectangle::new(corners, heat_color(share).filled())).map_err(plot_error)?;
                root.draw(&Rectangle::new(corners, RGBColor(220, 220, 220).stroke_width(1))).map_err(plot_error)?;
                if count > 0 {
                    let color = if share > 0.5 { WHITE } else { BLACK };
                    let style = TextStyle::from((FONT, self.count_size).into_font())
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    let centre = (x0 + cell / 2, y0 + cell / 2);
                    let text = if self.short_counts { short_count(count) } else { count.to_string() };
                    root.draw(&Text::new(text, centre, style)).map_err(plot_error)?;
                }
            }
        }
        Ok(())
    }

    /// A vertical bar right of the grid from white (0% of the true class) to the darkest
    /// blue (100%), with its ends and middle labelled.
    fn draw_colour_key(&self, root: &Canvas) -> Result<()> {
        let (x0, top) = ((self.left + self.grid + 20) as i32, self.top as i32);
        let height = self.grid.min(200) as i32;
        for y in 0..height {
            let share = 1.0 - y as f64 / (height - 1).max(1) as f64;
            root.draw(&Rectangle::new([(x0, top + y), (x0 + 14, top + y + 1)], heat_color(share).filled()))
                .map_err(plot_error)?;
        }
        root.draw(&Rectangle::new([(x0, top), (x0 + 14, top + height)], RGBColor(160, 160, 160).stroke_width(1)))
            .map_err(plot_error)?;
        let style = TextStyle::from((FONT, 11.0).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        for (share, y) in [("100%", top), ("50%", top + height / 2), ("0%", top + height)] {
            root.draw(&Text::new(share.to_string(), (x0 + 20, y), style.clone())).map_err(plot_error)?;
        }
        Ok(())
    }

    /// True classes down the left side, predicted classes along the bottom.
    fn draw_class_labels(&self, root: &Canvas, labels: &[String]) -> Result<()> {
        let (left, top, size) = (self.left as i32, self.top as i32, self.label_size);
        let label_style = TextStyle::from((FONT, size).into_font()).color(&BLACK);
        let below = (self.top + self.grid + 6) as i32;
        for (i, label) in labels.iter().enumerate() {
            let middle = (i as u32 * self.cell + self.cell / 2) as i32;
            root.draw(&Text::new(
                label.clone(),
                (left - 8, top + middle),
                label_style.pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(plot_error)?;
            if self.rotate_x {
                let rotated =
                    TextStyle::from((FONT, size).into_font().transform(FontTransform::Rotate270)).color(&BLACK);
                let y = below + text_width(label, size) as i32;
                root.draw(&Text::new(label.clone(), (left + middle - size as i32 / 2, y), rotated))
                    .map_err(plot_error)?;
            } else {
                let style = label_style.pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(label.clone(), (left + middle, below), style)).map_err(plot_error)?;
            }
        }
        Ok(())
    }

    fn draw_axis_names(&self, root: &Canvas) -> Result<()> {
        let middle = self.grid / 2;
        let axis = TextStyle::from((FONT, 14.0).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        root.draw(&Text::new("predicted".to_string(), ((self.left + middle) as i32, self.height as i32 - 8), axis))
            .map_err(plot_error)?;
        let axis_y = TextStyle::from((FONT, 14.0).into_font().transform(FontTransform::Rotate270)).color(&BLACK);
        root.draw(&Text::new("true".to_string(), (8, (self.top + middle + 14) as i32), axis_y)).map_err(plot_error)
    }
}

/// One task's training curves, read from `train_log.jsonl`.
#[derive(Debug, Default, Clone)]
pub struct TaskCurves {
    pub task: String,
    /// (step, mean loss over the logging window)
    pub loss: Vec<(f64, f64)>,
    /// (step, the dev main metric: macro-F1, Spearman or MRR@10)
    pub main: Vec<(f64, f64)>,
    /// (step, the second dev metric: accuracy, Pearson or recall@1)
    pub secondary: Vec<(f64, f64)>,
    /// "macro-F1 / accuracy", ... (empty before the first evaluation)
    pub metric_names: String,
}

/// Every task's curves from a run's log (`train::log`), tasks in order of first appearance.
pub fn read_training_curves(log: &Path) -> Result<Vec<TaskCurves>> {
    let mut curves: Vec<TaskCurves> = Vec::new();
    fn entry<'c>(curves: &'c mut Vec<TaskCurves>, task: &str) -> &'c mut TaskCurves {
        match curves.iter().position(|c| c.task == task) {
            Some(i) => &mut curves[i],
            None => {
                curves.push(TaskCurves { task: task.to_string(), ..Default::default() });
                curves.last_mut().expect("just pushed")
            }
        }
    }
    for record in read_log(log)? {
        match record {
            LogRecord::Step(r) => {
                for (task, loss) in &r.loss {
                    entry(&mut curves, task).loss.push((r.step as f64, *loss));
                }
            }
            LogRecord::Eval(r) => {
                for (task, score) in &r.tasks {
                    let c = entry(&mut curves, task);
                    let (second_name, second) = score.secondary();
                    c.main.push((r.step as f64, score.main()));
                    c.secondary.push((r.step as f64, second));
                    c.metric_names = format!("{} / {second_name}", score.kind().main_metric());
                }
            }
            LogRecord::Summary(_) => {}
        }
    }
    Ok(curves)
}

/// Loss per task (left) and each task's main dev metric (solid) and second one (dashed, right).
/// Each panel's legend sits in a strip below it, where it hides no line.
pub fn training_curves(path: &Path, title: &str, curves: &[TaskCurves]) -> Result<()> {
    let max_step = curves.iter().flat_map(|c| c.loss.iter().chain(&c.main)).map(|p| p.0).fold(1.0f64, f64::max);
    register_font()?;
    let loss_labels: Vec<String> = curves.iter().map(|c| c.task.clone()).collect();
    let dev_labels: Vec<String> = curves
        .iter()
        .map(|c| if c.main.is_empty() { String::new() } else { format!("{} ({})", c.task, c.metric_names) })
        .collect();
    let (loss_legend, dev_legend) = (legend_layout(&loss_labels, 600), legend_layout(&dev_labels, 600));
    let rows = loss_legend.iter().chain(&dev_legend).map(|e| e.row + 1).max().unwrap_or(0);
    let strip = LEGEND_ROW * rows as u32 + 8;
    render_png(path, (1200, 480 + strip), |root| {
        let root = root.titled(title, (FONT, 20.0)).map_err(plot_error)?;
        let (charts, legends) = root.split_vertically(root.dim_in_pixel().1 - strip);
        let (left, right) = charts.split_horizontally(600);
        loss_panel(&left, curves, max_step)?;
        dev_panel(&right, curves, max_step)?;
        let (left, right) = legends.split_horizontally(600);
        draw_legend(&left, &loss_legend)?;
        draw_legend(&right, &dev_legend)
    })
}

const LEGEND_ROW: u32 = 22;

/// One legend entry: the task's colour (by `task`), its label, and where it goes.
struct LegendEntry {
    task: usize,
    label: String,
    row: usize,
    x: i32,
}

/// Entries side by side, wrapped at `width` pixels; empty labels are left out, and one too
/// long for a row of its own is cut to fit.
fn legend_layout(labels: &[String], width: i32) -> Vec<LegendEntry> {
    let (mut row, mut x) = (0, 55);
    let mut entries = Vec::new();
    for (task, label) in labels.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
        let label = &fitted(label, (width - 55 - 46).max(40) as u32, 13.0);
        let entry_width = 28 + text_width(label, 13.0) as i32 + 18;
        if x > 55 && x + entry_width > width {
            (row, x) = (row + 1, 55);
        }
        entries.push(LegendEntry { task, label: label.clone(), row, x });
        x += entry_width;
    }
    entries
}

fn draw_legend(area: &Canvas, entries: &[LegendEntry]) -> Result<()> {
    let style = TextStyle::from((FONT, 13.0).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for entry in entries {
        let color = TASK_COLORS[entry.task % TASK_COLORS.len()];
        let y = (entry.row as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
        area.draw(&PathElement::new(vec![(entry.x, y), (entry.x + 22, y)], color.stroke_width(2)))
            .map_err(plot_error)?;
        area.draw(&Text::new(entry.label.clone(), (entry.x + 28, y), style.clone())).map_err(plot_error)?;
    }
    Ok(())
}

/// One colour per task, in order: matplotlib's tab10 (the six most distinct first), then the
/// lighter halves of tab20's pairs, so that up to 20 tasks have colours of their own.
const TASK_COLORS: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 152, 150),
    RGBColor(152, 223, 138),
    RGBColor(197, 176, 213),
    RGBColor(255, 187, 120),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

/// A chart over optimizer steps (x) and a `Y` axis, linear or logarithmic.
type StepChart<'a, 'b, Y> = ChartContext<'a, TextBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// A chart of `caption` over optimizer steps `0..max_step` (x) and `y` on `area`, its grid
/// drawn.
fn step_chart<'a, 'b, Y>(
    area: &'a Canvas<'b>,
    caption: &str,
    max_step: f64,
    y: Y,
    y_desc: &str,
) -> Result<StepChart<'a, 'b, Y::CoordDescType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 15.0))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        // 2% past the last step, so that its dots are not cut by the frame.
        .build_cartesian_2d(0f64..max_step * 1.02, y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc(y_desc)
        // Steps are whole numbers: a short run gets one tick per step, never "0 0 1 2 2".
        .x_labels((max_step as usize).clamp(1, 10) + 1)
        .x_label_formatter(&|x| if x.fract().abs() < 1e-9 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&tick_label)
        .light_line_style(RGBColor(245, 245, 245))
        .label_style((FONT, 12.0))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

/// Each task's training loss (mean over each logging window): from 0 on a linear axis, or on
/// a logarithmic one where the losses differ so much (a pairs loss of 0.003 beside a CoSENT
/// loss of 5, or one window's spike far above every task's typical loss) that the smaller
/// would lie on the axis.
fn loss_panel(area: &Canvas, curves: &[TaskCurves], max_step: f64) -> Result<()> {
    let caption = "training loss (mean over each logging window)";
    match log_loss_axis(curves) {
        Some(range) => {
            let zeros = curves.iter().flat_map(|c| &c.loss).any(|p| p.1 == 0.0);
            let caption = match zeros {
                true => format!("{caption}, log scale, a loss of 0 at the axis' foot"),
                false => format!("{caption}, log scale"),
            };
            let chart = step_chart(area, &caption, max_step, range.clone().log_scale(), "loss (log scale)")?;
            // A loss of 0 has no place on a log axis: it is drawn at the axis' foot.
            draw_losses(chart, curves, |loss| loss.max(range.start))
        }
        None => {
            let max_loss = curves.iter().flat_map(|c| &c.loss).map(|p| p.1).fold(0.1f64, f64::max) * 1.05;
            draw_losses(step_chart(area, caption, max_step, 0f64..max_loss, "loss")?, curves, |loss| loss)
        }
    }
}

/// The loss axis' range when the tasks' typical losses (their medians) differ by more than
/// 20x, or a loss lies more than 50x above the largest of them, with a little room at both
/// ends; `None` for a linear axis.
fn log_loss_axis(curves: &[TaskCurves]) -> Option<std::ops::Range<f64>> {
    let medians: Vec<f64> = curves
        .iter()
        .filter_map(|c| {
            let mut losses: Vec<f64> = c.loss.iter().map(|p| p.1).filter(|l| l.is_finite() && *l > 0.0).collect();
            losses.sort_by(f64::total_cmp);
            losses.get(losses.len() / 2).copied()
        })
        .collect();
    let (low, high) = medians.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    let positive = curves.iter().flat_map(|c| &c.loss).map(|p| p.1).filter(|l| l.is_finite() && *l > 0.0);
    let (least, most) = positive.fold((f64::INFINITY, 0.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let apart = medians.len() >= 2 && high > 20.0 * low;
    let spike = !medians.is_empty() && most > 50.0 * high;
    (apart || spike).then(|| least / 1.5..most * 1.5)
}

fn draw_losses<Y: Ranged<ValueType = f64>>(
    mut chart: StepChart<'_, '_, Y>,
    curves: &[TaskCurves],
    placed: impl Fn(f64) -> f64,
) -> Result<()> {
    for (i, c) in curves.iter().enumerate() {
        let color = TASK_COLORS[i % TASK_COLORS.len()];
        let points: Vec<(f64, f64)> = c.loss.iter().map(|&(step, loss)| (step, placed(loss))).collect();
        chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2))).map_err(plot_error)?;
        // A short run logs a point or two: a line alone would not show a single one.
        if points.len() < 3 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_error)?;
        }
    }
    Ok(())
}

/// Each task's dev metrics: the main one solid with a dot per evaluation, the second dashed
/// with a hollow dot per evaluation.
fn dev_panel(area: &Canvas, curves: &[TaskCurves], max_step: f64) -> Result<()> {
    let scores = curves.iter().flat_map(|c| c.main.iter().chain(&c.secondary)).map(|p| p.1);
    let caption = "dev: main metric (solid) and second metric (dashed, hollow dots)";
    let mut chart = step_chart(area, caption, max_step, score_axis(scores), "score")?;
    if curves.iter().all(|c| c.main.iter().all(|p| !p.1.is_finite())) {
        let style = TextStyle::from((FONT, 14.0).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Center, VPos::Center));
        // A run without dev sets, or one stopped before its first evaluation; or a broken
        // model's, whose every metric is undefined.
        let note = match curves.iter().all(|c| c.main.is_empty()) {
            true => "no dev evaluation in the training log",
            false => "every dev metric in the training log is undefined (NaN)",
        };
        return chart
            .draw_series(std::iter::once(Text::new(note, (max_step / 2.0, 0.5), style)))
            .map(|_| ())
            .map_err(plot_error);
    }
    for (i, c) in curves.iter().enumerate() {
        let color = TASK_COLORS[i % TASK_COLORS.len()];
        for main in finite_runs(&c.main) {
            chart.draw_series(LineSeries::new(main.iter().copied(), color.stroke_width(2))).map_err(plot_error)?;
            chart.draw_series(main.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_error)?;
        }
        for secondary in finite_runs(&c.secondary) {
            chart
                .draw_series(DashedLineSeries::new(secondary.iter().copied(), 6, 4, color.stroke_width(1)))
                .map_err(plot_error)?;
            // Hollow dots: a single evaluation's second metric has no line to dash.
            chart
                .draw_series(secondary.iter().map(|&p| Circle::new(p, 3, color.stroke_width(1))))
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

/// The stretches of `points` between undefined values (`null` in the log: NaN), each drawn
/// as a line of its own: an evaluation without a value leaves a gap, not a line across it.
fn finite_runs(points: &[(f64, f64)]) -> impl Iterator<Item = &[(f64, f64)]> {
    points.split(|p| !p.1.is_finite()).filter(|run| !run.is_empty())
}

/// The dev panel's scores axis: [0, 1] and, for a negative correlation, down to the tenth
/// below it, with room at both ends so that no dot sits on the frame.
fn score_axis(scores: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let lowest = scores.filter(|s| s.is_finite()).fold(0.0f64, f64::min);
    let low = if lowest < 0.0 { ((lowest - 0.02) * 10.0).floor() / 10.0 } else { 0.0 };
    low.max(-1.0) - 0.02..1.02
}

/// A tick label without the `.0` of a whole number (`-10000`, not `-10000.0`), and without
/// float noise otherwise.
fn tick_label(x: &f64) -> String {
    if x.abs() >= 1e7 {
        // A diverging loss: 3e30, not 31 digits in a 55 px margin.
        format!("{x:e}")
    } else if (x - x.round()).abs() < 1e-9 * x.abs().max(1.0) {
        // `+ 0.0` turns a tick at -1e-17 (rounded to -0) into 0: no "-0" on the axis.
        format!("{:.0}", x.round() + 0.0)
    } else if x.abs() < 1e-4 {
        // A log axis' small losses: 5e-7, not six zeros.
        format!("{x:e}")
    } else {
        format!("{x:.6}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Predicted cosine similarity (y) against gold score (x), one dot per pair, with the
/// correlation in the title: where a person sees at a glance how well the order is kept.
pub fn similarity_scatter(path: &Path, title: &str, gold: &[f64], predicted: &[f64]) -> Result<()> {
    let (low, high) = gold.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    let (low, high) = if low < high { (low, high) } else { (low - 1.0, high + 1.0) };
    let pad = (high - low) * 0.03;
    let (y_low, y_high) = cosine_axis(predicted);
    let dot = RGBColor(31, 119, 180).mix(0.35).filled();
    register_font()?;
    let width = (text_width(title, 17.0) + 60).max(760);
    render_png(path, (width, 600), |root| {
        let root = root.titled(title, (FONT, 17.0)).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(18)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((low - pad)..(high + pad), y_low..y_high)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("gold score")
            .y_desc("cosine similarity of the embeddings")
            .x_label_formatter(&tick_label)
            .light_line_style(RGBColor(245, 245, 245))
            .label_style((FONT, 13.0))
            .draw()
            .map_err(plot_error)?;
        chart
            // A broken model's NaN cosines are no point (the report's note counts them).
            .draw_series(
                gold.iter().zip(predicted).filter(|(_, p)| p.is_finite()).map(|(&g, &p)| Circle::new((g, p), 3, dot)),
            )
            .map_err(plot_error)?;
        Ok(())
    })
}

/// The scatter's cosine axis: the cosines' own range, so that the order the correlations
/// measure shows even where every cosine lies between 0.95 and 1 (an anisotropic model), at
/// least 0.1 wide, within [-1, 1], with room on both sides so that no dot sits on the frame.
fn cosine_axis(predicted: &[f64]) -> (f64, f64) {
    let finite = predicted.iter().copied().filter(|c| c.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| (lo.min(c), hi.max(c)));
    if low > high {
        return (-0.03, 1.03);
    }
    let middle = (low + high) / 2.0;
    let (low, high) = (low.min(middle - 0.05).max(-1.0), high.max(middle + 0.05).min(1.0));
    let pad = (high - low) * 0.03;
    (low - pad, high + pad)
}

/// `text`, cut at its end to at most `max` pixels wide at `size`.
fn fitted(text: &str, max: u32, size: f64) -> String {
    let mut columns = text.chars().count();
    let mut shown = text.to_string();
    while text_width(&shown, size) > max && columns > 1 {
        columns -= 1;
        shown = ellipsize(text, columns);
    }
    shown
}

/// Width in pixels of `text` in the embedded font at `size` (registered by `register_font`).
fn text_width(text: &str, size: f64) -> u32 {
    let font: FontDesc = (FONT, size).into_font();
    font.box_size(text).map(|(w, _)| w).unwrap_or((text.len() as f64 * size * 0.6) as u32)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn heatmap_labels_stay_distinct_and_on_one_line() {
        let prefix = "intent_category_for_customer_support_requests_about_";
        let labels: Vec<String> = ["billing_refund", "billing_invoice", "x".repeat(30).as_str(), "y\tz"]
            .iter()
            .map(|l| format!("{prefix}{l}"))
            .collect();
        let mut same_ends = labels.clone();
        same_ends.push(format!("{prefix}middle_{}", "x".repeat(30)));
        let shown = heatmap_labels(&same_ends);
        assert!(shown[0].ends_with("billing_refund") && shown[1].ends_with("billing_invoice"), "{shown:?}");
        assert!(!shown[3].contains('\t'), "{shown:?}");
        // Cut alike, told apart by their class index.
        assert!(shown[2].starts_with("2: ") && shown[4].starts_with("4: "), "{shown:?}");
        assert!(!shown[0].starts_with("0: "), "{shown:?}");
    }

    #[test]
    fn legend_labels_fit_their_panel() {
        register_font().unwrap();
        let labels = vec!["W".repeat(108), "short".to_string()];
        let entries = legend_layout(&labels, 600);
        assert!(entries[0].label.ends_with('…') && text_width(&entries[0].label, 13.0) <= 600 - 55 - 46);
        assert_eq!(entries[1].label, "short");
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let reader = decoder.read_info().unwrap();
        (reader.info().width, reader.info().height)
    }

    fn matrix(n: usize) -> (Vec<String>, Vec<Vec<u64>>) {
        let labels = (0..n).map(|i| format!("CLASS:long_name_{i}")).collect();
        let rows =
            (0..n).map(|r| (0..n).map(|c| if r == c { 20 } else { ((r * 7 + c * 3) % 5) as u64 }).collect()).collect();
        (labels, rows)
    }

    #[test]
    fn heatmaps_for_2_and_50_classes_fit_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        for n in [2, 6, 50] {
            let (labels, rows) = matrix(n);
            let path = dir.path().join(format!("h{n}.png"));
            confusion_heatmap(&path, "t", &labels, &rows).unwrap();
            let (w, h) = png_size(&path);
            // Every cell at least 22 px, plus room for the labels on both axes and the key.
            assert!(w as usize >= 22 * n + 190 && h as usize >= 22 * n + 100, "{n} classes: {w}x{h}");
            assert!(w < 2000 && h < 2000, "{n} classes: {w}x{h}");
        }
    }

    #[test]
    fn counts_fit_their_cells() {
        register_font().unwrap();
        for (n, largest) in [(2, 12_345u64), (26, 99), (26, 9_999), (26, 12_345), (100, 7_654_321)] {
            let cell = HeatmapLayout::new("t", &matrix(n).0, &[vec![largest]]).unwrap().cell;
            let (size, short) = count_font(cell, largest);
            let text = if short { short_count(largest) } else { largest.to_string() };
            assert!(
                text_width(&text, size) + 4 <= cell,
                "{n} classes, count {largest}: '{text}' at {size} pt in {cell} px"
            );
            assert_eq!(short, n >= 26 && largest >= 12_345, "{n} classes, count {largest}");
        }
        let shown: Vec<String> =
            [999, 1_000, 1_549, 9_960, 12_345, 999_499, 999_999, 7_654_321, 12_000_000].map(short_count).to_vec();
        assert_eq!(shown, ["999", "1k", "1.5k", "10k", "12k", "999k", "1M", "7.7M", "12M"]);
    }

    #[test]
    fn long_labels_are_cut_not_drawn_into_a_huge_picture() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = (0..2).map(|i| format!("{i} {}", "a very long label ".repeat(30))).collect();
        let path = dir.path().join("long.png");
        confusion_heatmap(&path, "t", &labels, &[vec![3, 1], vec![0, 4]]).unwrap();
        let (w, h) = png_size(&path);
        assert!(w < 900 && h < 900, "{w}x{h}");
    }

    /// The pixel at (x, y) of an RGB or RGBA PNG.
    fn pixel(path: &Path, x: u32, y: u32) -> [u8; 3] {
        let mut reader = png::Decoder::new(std::fs::File::open(path).unwrap()).read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buffer).unwrap();
        let channels = frame.line_size / frame.width as usize;
        let at = y as usize * frame.line_size + x as usize * channels;
        [buffer[at], buffer[at + 1], buffer[at + 2]]
    }

    /// Right of the grid a key runs from the darkest blue (100% of the true class) at the
    /// top to white (0%) at the bottom.
    #[test]
    fn heatmaps_have_a_colour_key() {
        let dir = tempfile::tempdir().unwrap();
        for n in [2, 50] {
            let (labels, rows) = matrix(n);
            let path = dir.path().join(format!("h{n}.png"));
            confusion_heatmap(&path, "t", &labels, &rows).unwrap();
            let layout = HeatmapLayout::new("t", &labels, &rows).unwrap();
            let x = layout.left + layout.grid + 27;
            let bottom = layout.top + layout.grid.min(200) - 2;
            let top = pixel(&path, x, layout.top + 1);
            let dark = [8u8, 48, 107];
            assert!(top.iter().zip(dark).all(|(&c, d)| c.abs_diff(d) <= 4), "{n} classes: the key's top is {top:?}");
            let white = pixel(&path, x, bottom);
            assert!(white.iter().all(|&c| c > 240), "{n} classes: the key's bottom is {white:?}");
        }
    }

    #[test]
    fn curves_follow_the_log_and_skip_a_cut_off_line() {
        use crate::tasks::TaskScore;
        use crate::train::log::{EvalRecord, RunLog, StepRecord};
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("train_log.jsonl");
        let mut writer = RunLog::open(&log, None).unwrap();
        writer
            .write(&LogRecord::Step(StepRecord {
                step: 10,
                epoch: 0.1,
                loss: [("a".to_string(), 1.0), ("b".to_string(), 0.5)].into_iter().collect(),
                grad_norm: 1.0,
                lr: Default::default(),
                examples_per_sec: 1.0,
                tokens_per_sec: 1.0,
                elapsed_s: 1.0,
            }))
            .unwrap();
        let score = TaskScore::Classification { accuracy: 0.5, macro_f1: 0.4, examples: 8 };
        writer
            .write(&LogRecord::Eval(EvalRecord {
                step: 10,
                epoch: 0.1,
                tasks: [("a".to_string(), score)].into_iter().collect(),
                mean_main_metric: 0.4,
                best: true,
            }))
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(br#"{"type":"step","step":20,"loss":{"a":0."#)
            .unwrap();
        let curves = read_training_curves(&log).unwrap();
        assert_eq!(curves.len(), 2);
        assert_eq!(curves[0].loss, vec![(10.0, 1.0)]);
        assert_eq!(curves[0].main, vec![(10.0, 0.4)]);
        assert_eq!(curves[0].secondary, vec![(10.0, 0.5)]);
        assert_eq!(curves[0].metric_names, "macro-F1 / accuracy");
        assert_eq!(curves[1].task, "b");
        training_curves(&dir.path().join("c.png"), "run", &curves).unwrap();
        // The charts, and one row of legends below them.
        assert_eq!(png_size(&dir.path().join("c.png")), (1200, 480 + LEGEND_ROW + 8));
    }

    /// A pairs loss of 0.003 beside a CoSENT loss of 5 gets a log axis that holds both; losses
    /// of one order of magnitude keep the linear axis from 0.
    #[test]
    fn losses_far_apart_get_a_log_axis() {
        let task = |name: &str, losses: &[f64]| TaskCurves {
            task: name.into(),
            loss: losses.iter().enumerate().map(|(i, &l)| ((i + 1) as f64 * 10.0, l)).collect(),
            ..Default::default()
        };
        let far = [task("stsb", &[5.8, 5.5, 5.4]), task("pairs", &[0.02, 0.003, 0.0]), task("trec", &[1.5, 0.9, 0.6])];
        let range = log_loss_axis(&far).unwrap();
        assert!(range.start < 0.003 && range.start > 0.0 && range.end > 5.8, "{range:?}");
        let near = [task("stsb", &[5.8, 5.5]), task("trec", &[1.5, 0.9])];
        assert_eq!(log_loss_axis(&near), None);
        assert_eq!(log_loss_axis(&far[..1]), None);
        // One window's spike would flatten every other loss on a linear axis.
        let spike = [task("trec", &[1.5, 5e4, 0.9, 0.6]), task("stsb", &[3.0, 2.8, 2.5])];
        assert!(log_loss_axis(&spike).is_some_and(|r| r.end > 5e4 && r.start < 0.6));
        assert!(log_loss_axis(&spike[..1]).is_some());
        let dir = tempfile::tempdir().unwrap();
        training_curves(&dir.path().join("log.png"), "run", &far).unwrap();
    }

    #[test]
    fn legends_wrap_to_the_panel_and_skip_tasks_without_a_label() {
        register_font().unwrap();
        let labels: Vec<String> =
            ["a task with a rather long name (macro-F1 / accuracy)", "", "b", "c"].map(String::from).to_vec();
        let entries = legend_layout(&labels, 600);
        assert_eq!(entries.iter().map(|e| e.task).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert!(entries.iter().all(|e| e.x + 28 + text_width(&e.label, 13.0) as i32 <= 600));
        let wide = legend_layout(&vec!["a label of some width".to_string(); 6], 600);
        assert!(wide.last().unwrap().row >= 1, "six wide labels fit one 600-pixel row");
    }

    #[test]
    fn axes_leave_room_and_label_ticks_plainly() {
        assert_eq!(score_axis([0.5, 1.0].into_iter()), -0.02..1.02);
        let negative = score_axis([-0.17, 0.4].into_iter());
        assert!((negative.start - -0.22).abs() < 1e-12, "{negative:?}");
        assert_eq!(score_axis([-1.0, f64::NAN].into_iter()).start, -1.02);
        let labels: Vec<String> =
            [-10000.0, 0.0, -1e-17, 2.5, 0.30000000000000004, 1e6, 0.0012, 5e-7, 3e30].iter().map(tick_label).collect();
        assert_eq!(labels, ["-10000", "0", "0", "2.5", "0.3", "1000000", "0.0012", "5e-7", "3e30"]);
    }

    #[test]
    fn an_undefined_metric_leaves_a_gap_in_its_line() {
        let points = [(1.0, 0.2), (2.0, f64::NAN), (3.0, 0.4), (4.0, 0.5), (5.0, f64::NAN)];
        let runs: Vec<&[(f64, f64)]> = finite_runs(&points).collect();
        assert_eq!(runs, [&points[..1], &points[2..4]]);
    }

    /// Cosines between 0.95 and 1 fill the scatter's height rather than its top twentieth.
    #[test]
    fn the_cosine_axis_spans_the_cosines() {
        let (low, high) = cosine_axis(&[0.95, 0.97, 1.0, f64::NAN]);
        assert!(low > 0.9 && low < 0.95 && high > 1.0 && high < 1.01, "{low}..{high}");
        let (low, high) = cosine_axis(&[0.5, 0.5]);
        assert!((high - low - 0.1 * 1.06).abs() < 1e-9, "{low}..{high}");
        let (low, high) = cosine_axis(&[-1.0, 1.0]);
        assert!(low < -1.0 && high > 1.0);
        assert_eq!(cosine_axis(&[f64::NAN]), (-0.03, 1.03));
    }

    #[test]
    fn a_scatter_of_cosine_against_score() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let gold: Vec<f64> = (0..50).map(|i| i as f64 / 10.0).collect();
        let predicted: Vec<f64> = gold.iter().map(|g| g / 5.0 - 0.1).collect();
        similarity_scatter(&path, "t: cosine against score", &gold, &predicted).unwrap();
        assert_eq!(png_size(&path), (760, 600));
        // All-equal gold scores still draw (a degenerate axis is widened).
        similarity_scatter(&path, "t", &[2.0, 2.0], &[0.1, 0.2]).unwrap();
    }
}
