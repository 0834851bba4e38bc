//! The timeline PNG of a run: throughput, errors and latency per second in three stacked
//! panels, fault windows shaded across all of them, anomalies marked as red lines; drawn
//! with plotters' bitmap backend and the built-in pixel font.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{ChaosError, Result};
use crate::history::{Outcome, NEVER};
use crate::run::RunReport;
use ringcache_loadgen::pixel_font::{draw_text, text_width};

const W: u32 = 1400;
const PANEL_H: u32 = 230;
const TOP: u32 = 40;
const LEFT: u32 = 110;
const RIGHT: u32 = 30;
const GAP: u32 = 30;

/// A panel: its title and its lines (values per second, color).
type Panel<'a> = (&'a str, Vec<(&'a [f64], RGBColor)>);

/// Per-second series of a run: ok ops, errors (failed or unknown), p50 and p99 latency (ms).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    /// Acknowledged operations per second.
    pub ok: Vec<f64>,
    /// Failed or unknown-outcome operations per second.
    pub errors: Vec<f64>,
    /// Median latency of the second's acknowledged operations, ms.
    pub p50: Vec<f64>,
    /// 99th percentile latency, ms.
    pub p99: Vec<f64>,
}

/// Buckets the run's operations by the second they were invoked in.
pub fn series(r: &RunReport) -> Series {
    let secs = (r.seconds.ceil() as usize).max(1);
    let mut s = Series {
        ok: vec![0.0; secs],
        errors: vec![0.0; secs],
        p50: vec![0.0; secs],
        p99: vec![0.0; secs],
    };
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); secs];
    for o in &r.ops {
        let i = ((o.invoke / 1_000_000_000) as usize).min(secs - 1);
        match o.outcome {
            Outcome::Ok(_) => {
                s.ok[i] += 1.0;
                if o.complete != NEVER {
                    lat[i].push(o.complete.saturating_sub(o.invoke) as f64 / 1e6);
                }
            }
            _ => s.errors[i] += 1.0,
        }
    }
    for (i, l) in lat.iter_mut().enumerate() {
        if l.is_empty() {
            continue;
        }
        l.sort_by(f64::total_cmp);
        s.p50[i] = l[l.len() / 2];
        s.p99[i] = l[(l.len() * 99 / 100).min(l.len() - 1)];
    }
    s
}

fn err<E: std::fmt::Debug>(e: E) -> ChaosError {
    ChaosError::Plot(format!("{e:?}"))
}

/// Writes the timeline of `r` to `path` (PNG).
pub fn timeline(path: &Path, r: &RunReport) -> Result<()> {
    let s = series(r);
    let secs = s.ok.len() as f64;
    let h = TOP + 3 * (PANEL_H + GAP) + 30;
    let root = BitMapBackend::new(path, (W, h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "RINGCACHE CHAOS: {} SEED {} ACK={} - SHADED: FAULTS, RED: ANOMALIES ({})",
        r.name,
        r.seed,
        r.spec.write_ack,
        r.checked.anomalies.len()
    );
    draw_text(&root, LEFT as i32, 12, &title, 2, &BLACK).map_err(ChaosError::Plot)?;
    let panels: [Panel<'_>; 3] = [
        ("OK OPS/S", vec![(&s.ok, BLUE)]),
        ("ERRORS/S", vec![(&s.errors, RGBColor(200, 100, 0))]),
        (
            "LATENCY MS P50 P99",
            vec![
                (&s.p50, RGBColor(0, 140, 0)),
                (&s.p99, RGBColor(120, 0, 160)),
            ],
        ),
    ];
    for (k, (name, lines)) in panels.iter().enumerate() {
        let y0 = (TOP + k as u32 * (PANEL_H + GAP)) as i32;
        let area = root
            .clone()
            .shrink((LEFT, y0 as u32), (W - LEFT - RIGHT, PANEL_H));
        let ymax = lines
            .iter()
            .flat_map(|(v, _)| v.iter().copied())
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0.0..secs, 0.0..ymax)
            .map_err(err)?;
        for e in &r.events {
            let a = e.start as f64 / 1e9;
            let b = (e.end as f64 / 1e9).max(a + 0.2);
            chart
                .draw_series([Rectangle::new(
                    [(a, 0.0), (b, ymax)],
                    RGBColor(255, 215, 200).filled(),
                )])
                .map_err(err)?;
        }
        for (v, color) in lines {
            let pts = v.iter().enumerate().map(|(i, y)| (i as f64 + 0.5, *y));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?;
        }
        for a in &r.checked.anomalies {
            let x = (a.at as f64 / 1e9).min(secs);
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, ymax)], RED.stroke_width(1)))
                .map_err(err)?;
        }
        let (l, t) = chart.backend_coord(&(0.0, ymax));
        let (rr, b) = chart.backend_coord(&(secs, 0.0));
        root.draw(&Rectangle::new([(l, t), (rr, b)], BLACK.stroke_width(1)))
            .map_err(err)?;
        draw_text(&root, l + 6, t + 6, name, 2, &BLACK).map_err(ChaosError::Plot)?;
        let top_label = format!("{:.0}", ymax / 1.1);
        draw_text(
            &root,
            l - 8 - text_width(&top_label, 2),
            t + 20,
            &top_label,
            2,
            &BLACK,
        )
        .map_err(ChaosError::Plot)?;
        draw_text(&root, l - 20, b - 14, "0", 2, &BLACK).map_err(ChaosError::Plot)?;
        if k == 2 {
            let name = "SECONDS SINCE START";
            draw_text(&root, rr - text_width(name, 2), b + 24, name, 2, &BLACK)
                .map_err(ChaosError::Plot)?;
            let step = ((secs / 10.0).ceil()).max(1.0);
            let mut x = 0.0;
            while x <= secs {
                let (px, py) = chart.backend_coord(&(x, 0.0));
                let label = format!("{x:.0}");
                draw_text(
                    &root,
                    px - text_width(&label, 2) / 2,
                    py + 6,
                    &label,
                    2,
                    &BLACK,
                )
                .map_err(ChaosError::Plot)?;
                x += step;
            }
        }
    }
    root.present()
        .map_err(|e| ChaosError::Plot(format!("{}: {e}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{Anomaly, Kind, Promise};
    use crate::run::Event;

    #[test]
    fn series_count_every_op_and_the_png_renders() {
        let ops = crate::synth::history(&crate::synth::Shape {
            clients: 4,
            keys: 3,
            counters: 1,
            duration_ns: 5_000_000_000,
            op_ns: 2_000_000,
            unknown: 0.05,
            seed: 9,
        });
        let mut checked = crate::checker::check(&ops, 100_000);
        checked.add([Anomaly {
            kind: Kind::StaleRead,
            at: 2_500_000_000,
            key: "r0".into(),
            detail: "test".into(),
            ops: Vec::new(),
        }]);
        let r = RunReport {
            name: "test".into(),
            seed: 1,
            spec: crate::cluster::Spec::default(),
            load: crate::workload::Load::default(),
            promise: Promise::Strong,
            schedule: Vec::new(),
            events: vec![Event {
                start: 1_000_000_000,
                end: 2_000_000_000,
                what: "pause n0".into(),
            }],
            ops,
            checked,
            notes: Vec::new(),
            seconds: 5.0,
            dir: std::env::temp_dir(),
        };
        let s = series(&r);
        let total: f64 = s.ok.iter().chain(&s.errors).sum();
        assert_eq!(total as usize, r.ops.len());
        assert!(s.p99.iter().zip(&s.p50).all(|(a, b)| a >= b));
        let path = std::env::temp_dir().join(format!("chaos-plot-{}.png", std::process::id()));
        timeline(&path, &r).expect("draws");
        let bytes = std::fs::read(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5000, "{} bytes", bytes.len());
    }
}
