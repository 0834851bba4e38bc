//! `--plot FILE.png`: the latency-by-percentile curve, drawn with plotters' bitmap backend.
//!
//! Labels are drawn with the built-in pixel font (`pixel_font`), so the plot renders on a bare
//! machine.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::latency::LatencyHist;
use crate::pixel_font::{self, text_width};

const W: u32 = 1000;
const H: u32 = 620;
const LEFT: u32 = 90;
const RIGHT: u32 = 30;
const TOP: u32 = 50;
const BOTTOM: u32 = 60;

/// Draws `text` with its top-left corner at `(x, y)` in the built-in pixel font.
fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    y: i32,
    text: &str,
    scale: i32,
    color: &RGBColor,
) -> anyhow::Result<()> {
    pixel_font::draw_text(area, x, y, text, scale, color).map_err(anyhow::Error::msg)
}

/// The x position of a percentile on the "nines" axis: 0 at 0%, 1 at 90%, 2 at 99%, ...
fn nines(percentile: f64, cap: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        cap
    } else {
        (-rest.log10()).min(cap)
    }
}

fn percentile_label(n: u32) -> String {
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

fn latency_label(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}S", trim(us / 1e6))
    } else if us >= 1000.0 {
        format!("{}MS", trim(us / 1e3))
    } else {
        format!("{}US", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Writes the percentile plot of `hist` to `path` (PNG); `title` goes on top.
pub fn plot_percentiles(path: &Path, hist: &LatencyHist, title: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!hist.is_empty(), "no latency samples to plot");
    let curve = hist.percentile_curve(10);
    // As many nines as the sample count supports, at least 3 (99.9%).
    let max_nines = ((hist.len() as f64).log10().floor() as u32).clamp(3, 6);
    let cap = max_nines as f64;
    let min_us = curve.iter().map(|p| p.1).fold(f64::MAX, f64::min).max(0.1);
    let max_us = curve
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(min_us * 1.01);
    let y0 = min_us.log10().floor();
    let y1 = max_us.log10().ceil().max(y0 + 1.0);

    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let chart = ChartBuilder::on(&root)
        .margin_left(LEFT)
        .margin_right(RIGHT)
        .margin_top(TOP)
        .margin_bottom(BOTTOM)
        .build_cartesian_2d(0.0..cap, y0..y1)
        .map_err(err)?;
    let grid = RGBColor(220, 220, 220);
    let mut chart = chart;
    // Vertical grid at each nine, horizontal at 1, 2, 5 x 10^k.
    for n in 0..=max_nines {
        let x = n as f64;
        chart
            .draw_series(LineSeries::new([(x, y0), (x, y1)], &grid))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(x, y0));
        let label = percentile_label(n);
        let lx = (px - text_width(&label, 2) / 2).min(W as i32 - 4 - text_width(&label, 2));
        draw_text(&root, lx, py + 10, &label, 2, &BLACK)?;
    }
    let mut decade = y0;
    while decade <= y1 {
        for m in [1.0f64, 2.0, 5.0] {
            let y = decade + m.log10();
            if y > y1 + 1e-9 {
                break;
            }
            let color = if m == 1.0 {
                RGBColor(190, 190, 190)
            } else {
                grid
            };
            chart
                .draw_series(LineSeries::new([(0.0, y), (cap, y)], &color))
                .map_err(err)?;
            let (px, py) = chart.backend_coord(&(0.0, y));
            let label = latency_label(10f64.powf(y));
            draw_text(
                &root,
                px - 8 - text_width(&label, 2),
                py - 7,
                &label,
                2,
                &BLACK,
            )?;
        }
        decade += 1.0;
    }
    let pts: Vec<(f64, f64)> = curve
        .iter()
        .map(|&(p, us)| (nines(p, cap), us.max(0.1).log10()))
        .collect();
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(3)))
        .map_err(err)?;
    // Frame, title and axis names.
    let (l, t) = chart.backend_coord(&(0.0, y1));
    let (r, b) = chart.backend_coord(&(cap, y0));
    root.draw(&Rectangle::new([(l, t), (r, b)], BLACK.stroke_width(1)))
        .map_err(err)?;
    draw_text(&root, l, 16, title, 2, &BLACK)?;
    let xl = "PERCENTILE";
    draw_text(
        &root,
        (l + r) / 2 - text_width(xl, 2) / 2,
        H as i32 - 26,
        xl,
        2,
        &RGBColor(80, 80, 80),
    )?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(3), "99.9%");
        assert_eq!(percentile_label(5), "99.999%");
        assert_eq!(latency_label(50.0), "50US");
        assert_eq!(latency_label(2000.0), "2MS");
        assert_eq!(latency_label(1500.0), "1.5MS");
        assert_eq!(latency_label(3e6), "3S");
        assert!((nines(99.0, 6.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0, 4.0), 4.0);
        assert_eq!(text_width("AB", 1), 11);
        assert_eq!(pixel_font::glyph('a'), pixel_font::glyph('A'));
    }

    #[test]
    fn renders_a_non_empty_png() {
        let mut h = LatencyHist::new();
        for i in 0..100_000u64 {
            h.record(20_000 + (i % 1000) * 100 + if i % 997 == 0 { 5_000_000 } else { 0 });
        }
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.png");
        plot_percentiles(&path, &h, "TEST PLOT").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 2000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(plot_percentiles(&path, &LatencyHist::new(), "x").is_err());
    }
}
