//! `--svg FILE`: the round-trip and throughput charts of a comparison.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::compare::{CellResult, Figures, Test};
use super::output::{Machine, nanos, si, size};

/// One category of a chart: a mechanism at a size.
struct Bar {
    label: String,
    ipc_kit: Option<f64>,
    raw: f64,
}

const IPC_KIT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RAW: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);

fn bars(results: &[CellResult], test: Test) -> Vec<Bar> {
    let value = |f: &Figures| match f {
        Figures::Rtt { p50, .. } => *p50 as f64,
        Figures::Stream { msgs_per_s, .. } => *msgs_per_s,
    };
    let mut cells: Vec<&CellResult> = results.iter().filter(|r| r.cell.test == test).collect();
    cells.sort_by_key(|r| r.cell.size);
    cells
        .into_iter()
        .map(|r| Bar {
            label: format!("{} {}", r.cell.mech.name(), size(r.cell.size)),
            ipc_kit: r.ipc_kit.as_ref().map(value),
            raw: value(&r.raw),
        })
        .collect()
}

/// Draws both charts, one above the other, into an SVG file at `path`.
pub(crate) fn svg(path: &Path, machine: &Machine, results: &[CellResult]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1280, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!("ipc-kit bench on {}", machine.describe());
    let root = root.titled(&title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(490);
    draw(
        &top,
        "round trip between two processes, p50 (log scale; lower is better)",
        &bars(results, Test::Rtt),
        &|v| nanos(v as u64),
        SeriesLabelPosition::UpperLeft,
    )
    .map_err(|e| err(&e))?;
    draw(
        &bottom,
        "one-way stream, messages per second (log scale; higher is better)",
        &bars(results, Test::Stream),
        &|v| format!("{}/s", si(v)),
        SeriesLabelPosition::UpperRight,
    )
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    bars: &[Bar],
    fmt: &dyn Fn(f64) -> String,
    legend: SeriesLabelPosition,
) -> DrawResult {
    if bars.is_empty() {
        return Ok(());
    }
    let values = bars.iter().flat_map(|b| b.ipc_kit.into_iter().chain([b.raw])).filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(150)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (lo..hi).log_scale())?;
    chart.configure_mesh().disable_x_mesh().x_labels(0).y_label_formatter(&|v| fmt(*v)).y_labels(8).draw()?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        if let Some(v) = b.ipc_kit {
            chart.draw_series([Rectangle::new([(x - 0.4, lo), (x, v)], IPC_KIT.filled())])?;
        }
        chart.draw_series([Rectangle::new([(x, lo), (x + 0.4, b.raw)], RAW.filled())])?;
    }
    // The category names, turned to read upwards, under the plot.
    let label_style = TextStyle::from(("sans-serif", 12).into_font())
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Right, VPos::Center));
    let plot = chart.plotting_area();
    let (bx, by) = area.get_base_pixel();
    for (i, b) in bars.iter().enumerate() {
        let (px, py) = plot.map_coordinate(&(i as f64, lo));
        area.draw(&Text::new(b.label.clone(), (px - bx, py - by + 8), label_style.clone()))?;
    }
    chart
        .draw_series([Rectangle::new([(0.0, lo), (0.0, lo)], IPC_KIT.filled())])?
        .label("ipc-kit")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], IPC_KIT.filled()));
    chart
        .draw_series([Rectangle::new([(0.0, lo), (0.0, lo)], RAW.filled())])?
        .label("raw libc")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RAW.filled()));
    chart.configure_series_labels().position(legend).border_style(BLACK).background_style(WHITE).draw()?;
    Ok(())
}
