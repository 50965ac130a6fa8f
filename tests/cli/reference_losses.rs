//! Per-step training losses recorded before training moved into the library
//! (`tests/data/reference_losses/*.json`: the command, the adapter it ran on and every step's
//! loss, taken from the run's `metrics.jsonl`). The same command must reproduce them: to 1e-6
//! relative on the adapter and driver they were recorded on (the runs are deterministic), to
//! 2e-3 elsewhere (another CPU's lavapipe has another subgroup width, so sums run in another
//! order). A run stopped after its first epoch and resumed must give the same losses, each
//! step recorded once.

use crate::common;
use common::cli::{scratch, wgformer};
use common::reference_losses::{assert_matches, reference};
use std::path::Path;
use wgformer::runtime::metrics::Metrics;

/// The chosen adapter's name and driver, as `wgformer info --json` reports them.
fn adapter() -> (String, String) {
    let (ok, out, err) = wgformer(&["info", "--json"], None);
    assert!(ok, "info failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("info JSON");
    let field = |k: &str| v["chosen"][k].as_str().unwrap_or_default().to_string();
    (field("name"), field("driver_info"))
}

fn run(args: &[String], out: &Path, extra: &[&str]) -> Metrics {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(["--out", out.to_str().expect("utf-8 path")]);
    all.extend(extra);
    let (ok, _, err) = wgformer(&all, None);
    assert!(ok, "{all:?} failed: {err}");
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics.jsonl written");
    Metrics::parse(&text, out).expect("metrics.jsonl parses")
}

fn check(file: &str) {
    let want = reference(file);
    let dir = scratch(&format!("reference-{file}"));
    let whole = run(&want.args, &dir.join("whole"), &[]);
    assert_matches(file, &whole.losses(), &want, &adapter());
    // Stopped after the first epoch and resumed: the same losses, each step once.
    let part = dir.join("part");
    run(&want.args, &part, &["--stop-after", "1"]);
    let resumed = run(&want.args, &part, &["--resume", part.to_str().expect("utf-8 path")]);
    let (a, b) = (resumed.losses(), whole.losses());
    let first_difference = a.iter().zip(&b).find(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first_difference.is_none(),
        "{file}: the resumed run's losses differ: {} steps against {}; first {first_difference:?}",
        a.len(),
        b.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_vit_reproduces_its_recorded_losses() {
    check("vit.json");
}

#[test]
fn train_translate_reproduces_its_recorded_losses() {
    check("translate.json");
}
