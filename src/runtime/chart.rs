//! A run's chart, `training.svg`, drawn from its metrics with plotters: the training loss per
//! step (raw, faint, and smoothed) on the left, the evaluation metric per round on the right,
//! each with a title, labelled axes and tick numbers. SVG, so no font ships with it: the viewer
//! draws the text.

use super::metrics::{Metrics, Record};
use crate::error::{Error, Result};
use plotters::prelude::*;

/// The chart's file name in a checkpoint directory.
pub const FILE: &str = "training.svg";

/// The evaluation value a chart plots on its right: its key in the metrics' `eval` records, the
/// axis label, and a factor (100 for a fraction shown in percent).
pub struct EvalAxis<'a> {
    pub key: &'a str,
    pub label: &'a str,
    pub scale: f64,
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("drawing the training chart: {e}"))
}

/// The loss of each step, smoothed by an exponential moving average (weight 0.95 on the past),
/// debiased so that the first steps are not pulled towards zero or the first loss.
fn smoothed(losses: &[(u32, f32)]) -> Vec<(f64, f64)> {
    let (mut avg, mut weight) = (0.0f64, 0.0f64);
    losses
        .iter()
        .map(|&(step, l)| {
            avg = 0.95 * avg + 0.05 * l as f64;
            weight = 0.95 * weight + 0.05;
            (step as f64, avg / weight)
        })
        .collect()
}

/// `lo..hi` padded so that a flat series still spans an axis.
fn span(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let pad = ((hi - lo) * 0.05).max(1e-3);
    lo - pad..hi + pad
}

/// The files a checkpoint keeps of its run's progress: `metrics.jsonl` and its chart.
pub fn run_files(metrics: &Metrics, title: &str, eval: &EvalAxis) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![(super::metrics::FILE, metrics.to_bytes()), (FILE, training_svg(metrics, title, eval)?.into_bytes())])
}

/// The SVG chart of `metrics` under `title`.
pub fn training_svg(metrics: &Metrics, title: &str, eval: &EvalAxis) -> Result<String> {
    let losses = metrics.losses();
    let evals: Vec<(f64, f64)> = metrics
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Eval { step, values, .. } => values.get(eval.key).map(|v| (*step as f64, v * eval.scale)),
            _ => None,
        })
        .collect();
    let steps = |x: &f64| format!("{x:.0}");
    let last_step = losses.last().map_or(1.0, |l| l.0 as f64).max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(chart_error)?;
        let (left, right) = root.split_horizontally(500);
        let (lo, hi) =
            losses.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| (a.min(l.1 as f64), b.max(l.1 as f64)));
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
        let mut chart = ChartBuilder::on(&left)
            .caption("training loss", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..last_step, span(lo, hi))
            .map_err(chart_error)?;
        chart.configure_mesh().x_desc("step").x_label_formatter(&steps).y_desc("loss").draw().map_err(chart_error)?;
        let raw = losses.iter().map(|&(s, l)| (s as f64, l as f64));
        chart.draw_series(LineSeries::new(raw, RGBColor(170, 190, 230).stroke_width(1))).map_err(chart_error)?;
        chart.draw_series(LineSeries::new(smoothed(&losses), BLUE.stroke_width(2))).map_err(chart_error)?;
        let (elo, ehi) = evals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), e| (a.min(e.1), b.max(e.1)));
        let (elo, ehi) = if elo <= ehi { (elo, ehi) } else { (0.0, 1.0) };
        let mut chart = ChartBuilder::on(&right)
            .caption(eval.label, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..last_step, span(elo, ehi))
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&steps)
            .y_desc(eval.label)
            .draw()
            .map_err(chart_error)?;
        chart.draw_series(LineSeries::new(evals.iter().copied(), RED.stroke_width(2))).map_err(chart_error)?;
        chart.draw_series(evals.iter().map(|&p| Circle::new(p, 4, RED.filled()))).map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_its_title_axes_and_series() {
        let mut m = Metrics::default();
        for step in 1..=50 {
            m.step(step, 2.0 / step as f32, 1e-3, 100.0);
            if step % 10 == 0 {
                m.eval(step, step as usize / 10, &[("test_accuracy", step as f64 / 60.0)]);
            }
        }
        let axis = EvalAxis { key: "test_accuracy", label: "test accuracy (%)", scale: 100.0 };
        let svg = training_svg(&m, "a run", &axis).unwrap();
        for text in ["a run", "training loss", "test accuracy (%)", "step", "loss", "<polyline", "<circle"] {
            assert!(svg.contains(text), "no {text:?} in the chart");
        }
        // An empty run still draws (axes, no series) instead of failing.
        assert!(training_svg(&Metrics::default(), "empty", &axis).unwrap().contains("empty"));
    }
}
