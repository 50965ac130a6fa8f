//! The training examples, run as a user runs them, on about 2,000 examples each: the metrics
//! they write must show the loss falling by at least 30% (the mean of the last 10 steps against
//! that of the first 10). `cargo test` builds the examples before it runs the tests.

use crate::common::cli::scratch;
use std::path::{Path, PathBuf};
use std::process::Command;
use wgformer::runtime::metrics::Metrics;

/// The example's binary, next to the `wgformer` binary's directory.
fn example(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_wgformer"));
    let path = bin.parent().expect("target dir").join("examples").join(name);
    assert!(path.is_file(), "{} is missing: `cargo build --release --examples` builds it", path.display());
    path
}

/// Runs the example with `args` after its output directory; returns the metrics it wrote.
fn run(name: &str, args: &[&str]) -> Metrics {
    let out = scratch(name);
    let status = Command::new(example(name)).arg(&out).args(args).status().expect("runs the example");
    assert!(status.success(), "{name} failed");
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics.jsonl written");
    let metrics = Metrics::parse(&text, &out).expect("metrics.jsonl parses");
    let _ = std::fs::remove_dir_all(&out);
    metrics
}

fn assert_loss_falls(name: &str, metrics: &Metrics) {
    let losses: Vec<f32> = metrics.losses().into_iter().map(|(_, l)| l).collect();
    assert!(losses.len() >= 20, "{name}: only {} steps", losses.len());
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[losses.len() - 10..]));
    eprintln!("{name}: mean loss {first:.3} over the first 10 steps, {last:.3} over the last 10");
    assert!(last <= 0.7 * first, "{name}: the loss fell from {first} to {last} only");
}

#[test]
fn train_vit_example_learns() {
    assert_loss_falls("train_vit", &run("train_vit", &["2000", "2"]));
}

#[test]
fn train_translate_example_learns() {
    assert_loss_falls("train_translate", &run("train_translate", &["2000", "5"]));
}
