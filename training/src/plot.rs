//! `progress.png`: the training curves nnU-Net draws after every epoch.
//!
//! Three panels stacked as in nnU-Net's `plot_progress_png`: (1) training and validation loss on
//! the left axis with the pseudo Dice (dotted) and its moving average on the right axis; (2) the
//! epoch duration in seconds; (3) the learning rate. The text uses an embedded subset of DejaVu
//! Sans (`training/assets/`), so no system font or fontconfig is needed.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::EpochRecord;
use nnunet_core::{Error, Result};

/// Width and height of `progress.png` in pixels (nnU-Net's 30 x 54 inch figure at half scale).
pub(crate) const PROGRESS_SIZE: (u32, u32) = (1500, 2700);

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// Margin around each panel, width of the y label area, and so the left edge of the plotting
/// area, where the legends start.
const PANEL_MARGIN: i32 = 30;
const Y_LABEL_AREA: i32 = 130;
const PLOT_LEFT: i32 = PANEL_MARGIN + Y_LABEL_AREA;

const BLUE: RGBColor = RGBColor(31, 84, 200);
const RED: RGBColor = RGBColor(215, 38, 38);
const GREEN: RGBColor = RGBColor(20, 150, 60);

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::training(
            "progress.png: the embedded font cannot be read",
        ))
    }
}

/// Draws nnU-Net's `progress.png` for `records` (one per finished epoch, in order) to `path`,
/// written atomically (a temporary file in the same folder, then renamed). Non-finite values
/// (a `NaN` pseudo Dice) leave gaps in their curve.
pub(crate) fn draw_progress(records: &[EpochRecord], path: &Path) -> Result<()> {
    if records.is_empty() {
        return Err(Error::training(
            "progress.png: no epoch has been recorded yet",
        ));
    }
    register_font()?;
    let (w, h) = PROGRESS_SIZE;
    let mut buffer = vec![0u8; w as usize * h as usize * 3];
    render(records, &mut buffer).map_err(|e| {
        Error::training(format!(
            "{}: cannot draw the progress plot: {e}",
            path.display()
        ))
    })?;
    let image = image::RgbImage::from_raw(w, h, buffer)
        .ok_or_else(|| Error::training("progress.png: wrong image buffer size"))?;

    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::training(format!("{}: not a file path", path.display())))?;
    let tmp = folder.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = image
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| match e {
            image::ImageError::IoError(io) => Error::io(&tmp, io),
            other => Error::training_file(&tmp, other.to_string()),
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Draws the three panels of `records` into the RGB `buffer` of [`PROGRESS_SIZE`].
fn render(records: &[EpochRecord], buffer: &mut [u8]) -> DrawResult<()> {
    let root = BitMapBackend::with_buffer(buffer, PROGRESS_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let epochs: Vec<f64> = records.iter().map(|r| r.epoch as f64).collect();
    let first = epochs.iter().copied().fold(f64::INFINITY, f64::min);
    let last = epochs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let x_range = if last > first {
        first..last
    } else {
        first - 0.5..first + 0.5
    };

    // (1) losses (left) and pseudo Dice (right).
    loss_panel(&panels[0], x_range.clone(), &epochs, records)?;

    // (2) epoch duration, from 0.
    let durations: Vec<f64> = records.iter().map(|r| r.duration()).collect();
    simple_panel(
        &panels[1],
        x_range.clone(),
        &epochs,
        &durations,
        "time [s]",
        "epoch duration",
        true,
    )?;

    // (3) learning rate.
    let lrs: Vec<f64> = records.iter().map(|r| r.learning_rate).collect();
    simple_panel(
        &panels[2],
        x_range,
        &epochs,
        &lrs,
        "learning rate",
        "learning rate",
        false,
    )?;
    root.present()?;
    Ok(())
}

/// The first panel: training and validation loss on the left axis, the pseudo Dice (dotted) and
/// its moving average on the right axis, with their legend on top.
fn loss_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    x_range: Range<f64>,
    epochs: &[f64],
    records: &[EpochRecord],
) -> DrawResult<()> {
    let train: Vec<f64> = records.iter().map(|r| r.train_loss).collect();
    let val: Vec<f64> = records.iter().map(|r| r.val_loss).collect();
    let dice: Vec<f64> = records.iter().map(|r| r.mean_fg_dice).collect();
    let ema: Vec<f64> = records.iter().map(|r| r.ema_fg_dice).collect();
    let loss_range = padded_range(train.iter().chain(&val).copied(), false);
    let dice_range = padded_range(dice.iter().chain(&ema).copied(), false);
    let mut chart = ChartBuilder::on(area)
        .margin(PANEL_MARGIN)
        .margin_top(90)
        .x_label_area_size(70)
        .y_label_area_size(Y_LABEL_AREA)
        .right_y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x_range.clone(), loss_range)?
        .set_secondary_coord(x_range, dice_range);
    configure(&mut chart, "loss")?;
    chart
        .configure_secondary_axes()
        .y_desc("pseudo dice")
        .label_style(("sans-serif", 28))
        .axis_desc_style(("sans-serif", 34))
        .draw()?;
    let thick = |c: RGBColor| c.stroke_width(4);
    for (values, color) in [(&train, BLUE), (&val, RED)] {
        for segment in finite_segments(epochs, values) {
            chart.draw_series(LineSeries::new(segment.clone(), thick(color)))?;
            chart.draw_series(single_point(&segment, color))?;
        }
    }
    for segment in finite_segments(epochs, &dice) {
        chart.draw_secondary_series(DashedLineSeries::new(
            segment.clone(),
            3,
            9,
            GREEN.stroke_width(3),
        ))?;
        chart.draw_secondary_series(single_point(&segment, GREEN))?;
    }
    for segment in finite_segments(epochs, &ema) {
        chart.draw_secondary_series(LineSeries::new(segment.clone(), thick(GREEN)))?;
        chart.draw_secondary_series(single_point(&segment, GREEN))?;
    }
    top_legend(
        area,
        &[
            ("loss_tr", BLUE, false),
            ("loss_val", RED, false),
            ("pseudo dice", GREEN, true),
            ("pseudo dice (mov. avg.)", GREEN, false),
        ],
    )
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn configure(chart: &mut Chart<'_, '_>, y_desc: &str) -> DrawResult<()> {
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style(("sans-serif", 28))
        .axis_desc_style(("sans-serif", 34))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_label_formatter(&|x| {
            // Epochs are whole numbers: no ticks between them.
            if x.fract() == 0.0 {
                format_tick(*x)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format_tick(*y))
        .draw()?;
    Ok(())
}

/// A legend in one row above the plotting area (nnU-Net places its legends there too): a short
/// line in each curve's style, then its label.
fn top_legend(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    entries: &[(&str, RGBColor, bool)],
) -> DrawResult<()> {
    let font = ("sans-serif", 32).into_font();
    let (mut x, y) = (PLOT_LEFT, 50);
    for &(label, color, dashed) in entries {
        let line = [(x, y), (x + 60, y)];
        if dashed {
            area.draw(&DashedPathElement::new(line, 3, 9, color.stroke_width(3)))?;
        } else {
            area.draw(&PathElement::new(line, color.stroke_width(4)))?;
        }
        let style = TextStyle::from(font.clone())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let (w, _) = area.estimate_text_size(label, &style)?;
        area.draw(&Text::new(label.to_string(), (x + 72, y), style))?;
        x += 72 + w as i32 + 60;
    }
    Ok(())
}

fn simple_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    x_range: Range<f64>,
    epochs: &[f64],
    values: &[f64],
    y_desc: &str,
    label: &str,
    from_zero: bool,
) -> DrawResult<()> {
    let y_range = padded_range(values.iter().copied(), from_zero);
    let mut chart: Chart = ChartBuilder::on(area)
        .margin(PANEL_MARGIN)
        .margin_top(90)
        .margin_right(PANEL_MARGIN + Y_LABEL_AREA)
        .x_label_area_size(70)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x_range, y_range)?;
    configure(&mut chart, y_desc)?;
    let style = BLUE.stroke_width(4);
    for segment in finite_segments(epochs, values) {
        chart.draw_series(LineSeries::new(segment.clone(), style))?;
        chart.draw_series(single_point(&segment, BLUE))?;
    }
    top_legend(area, &[(label, BLUE, false)])?;
    Ok(())
}

/// The runs of consecutive points whose value is finite.
fn finite_segments(x: &[f64], y: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for (&x, &y) in x.iter().zip(y) {
        if y.is_finite() {
            current.push((x, y));
        } else if !current.is_empty() {
            segments.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// A dot for a segment of one point (a line of one point draws nothing).
fn single_point(segment: &[(f64, f64)], color: RGBColor) -> Vec<Circle<(f64, f64), u32>> {
    if segment.len() == 1 {
        vec![Circle::new(segment[0], 6, color.filled())]
    } else {
        Vec::new()
    }
}

/// The range of the finite values with 5 % margin (from 0 when `from_zero` and all values are
/// positive), never empty; `0..1` when no value is finite.
fn padded_range(values: impl Iterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if from_zero && lo > 0.0 {
        lo = 0.0;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi.abs() > 0.0 { hi.abs() * 0.1 } else { 1.0 };
        return (lo - pad)..(hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    let lo = if from_zero && lo == 0.0 { lo } else { lo - pad };
    hi += pad;
    lo..hi
}

/// A tick label: plain for ordinary magnitudes, scientific for tiny or huge ones.
fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, dice: f64) -> EpochRecord {
        let e = epoch as f64;
        EpochRecord {
            epoch,
            train_loss: -0.2 - 0.5 * (1.0 - (-e / 8.0).exp()),
            val_loss: -0.15 - 0.45 * (1.0 - (-e / 10.0).exp()),
            pseudo_dice: vec![dice, dice * 0.9],
            mean_fg_dice: dice,
            ema_fg_dice: 0.3 + 0.5 * (1.0 - (-e / 12.0).exp()),
            learning_rate: 0.01 * (1.0 - e / 40.0).powf(0.9),
            start_time: 1000.0 + 60.0 * e,
            end_time: 1000.0 + 60.0 * e + 55.0 + (e * 1.7).sin() * 3.0,
            logged: Default::default(),
        }
    }

    fn decoded_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).expect("progress.png decodes");
        (img.width(), img.height())
    }

    #[test]
    fn draws_a_decodable_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<EpochRecord> = (0..30)
            .map(|e| record(e, 0.3 + 0.5 * (1.0 - (-(e as f64) / 6.0).exp())))
            .collect();
        let path = dir.path().join("progress.png");
        draw_progress(&records, &path).unwrap();
        assert_eq!(decoded_size(&path), PROGRESS_SIZE);
        // Drawn over: the figure is replaced, and no temporary file stays behind.
        draw_progress(&records[..10], &path).unwrap();
        assert_eq!(decoded_size(&path), PROGRESS_SIZE);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Something was drawn: the picture is not blank.
        let img = image::open(&path).unwrap().to_rgb8();
        let coloured = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(coloured > 10_000, "{coloured} non-white pixels");
        if let Ok(out) = std::env::var("NNUNET_PROGRESS_PNG") {
            draw_progress(&records, Path::new(&out)).unwrap();
        }
    }

    #[test]
    fn one_epoch_and_nan_dice_do_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.png");
        draw_progress(&[record(0, f64::NAN)], &path).unwrap();
        assert_eq!(decoded_size(&path), PROGRESS_SIZE);
        let mut records: Vec<EpochRecord> = (0..5).map(|e| record(e, 0.5)).collect();
        records[2].mean_fg_dice = f64::NAN;
        records[4].val_loss = f64::INFINITY;
        for r in &mut records {
            r.ema_fg_dice = f64::NAN;
        }
        draw_progress(&records, &path).unwrap();
        assert_eq!(decoded_size(&path), PROGRESS_SIZE);
    }

    #[test]
    fn errors_instead_of_panics() {
        let dir = tempfile::tempdir().unwrap();
        assert!(draw_progress(&[], &dir.path().join("p.png")).is_err());
        let missing = dir.path().join("no/such/folder/progress.png");
        assert!(draw_progress(&[record(0, 0.5)], &missing).is_err());
    }

    #[test]
    fn ranges_and_ticks() {
        assert_eq!(padded_range([f64::NAN].into_iter(), false), 0.0..1.0);
        let r = padded_range([2.0, 2.0].into_iter(), false);
        assert!(r.start < 2.0 && r.end > 2.0);
        let r = padded_range([3.0, 5.0].into_iter(), true);
        assert_eq!(r.start, 0.0);
        assert_eq!(format_tick(0.01), "0.01");
        assert_eq!(format_tick(3e-5), "3.0e-5");
        assert_eq!(format_tick(250.0), "250");
        assert_eq!(
            finite_segments(&[0.0, 1.0, 2.0, 3.0], &[1.0, f64::NAN, 2.0, 3.0]).len(),
            2
        );
    }
}
