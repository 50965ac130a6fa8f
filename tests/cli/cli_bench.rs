//! `wgformer bench` through the binary: the JSON output parses and carries a rate for every
//! case, and bad options are refused with a message instead of running.

use crate::common;

fn wgformer(args: &[&str]) -> (bool, String, String) {
    common::cli::wgformer(args, None)
}

#[test]
fn json_output_has_a_rate_for_every_case() {
    let (ok, out, err) = wgformer(&["bench", "add", "dispatch", "cross_entropy", "--runs", "1", "--json"]);
    assert!(ok, "bench failed: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).expect("one JSON array on stdout");
    let kernels: Vec<&str> = rows.iter().filter_map(|r| r["kernel"].as_str()).collect();
    assert!(kernels.contains(&"add_fwd") && kernels.contains(&"dispatch_overhead"), "{kernels:?}");
    for r in &rows {
        let ms = r["median_ms"].as_f64().expect("median_ms");
        assert!(ms > 0.0 && ms.is_finite(), "{r}");
    }
    for kernel in ["add_fwd", "cross_entropy"] {
        let row = rows.iter().find(|r| r["kernel"] == kernel).expect("a row per kernel asked for");
        assert!(row["gbps"].as_f64().is_some_and(|g| g > 0.0), "{row}");
    }
}

#[test]
fn matmul_at_the_shapes_asked_for() {
    let (ok, out, err) = wgformer(&["bench", "matmul", "--shapes", "64x32x16,8x12x20", "--runs", "1", "--json"]);
    assert!(ok, "bench failed: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).expect("one JSON array on stdout");
    let shapes: Vec<&str> = rows.iter().filter_map(|r| r["shape"].as_str()).collect();
    assert_eq!(shapes, ["64x32x16", "8x12x20"]);
    for r in &rows {
        assert!(r["gflops"].as_f64().is_some_and(|g| g > 0.0), "{r}");
    }
}

#[test]
fn bad_options_are_refused() {
    for (args, says) in [
        (&["bench", "attention", "--tokens", "0"][..], "--tokens 0"),
        (&["bench", "attention", "--head-dim", "48"][..], "--head-dim 48"),
        (&["bench", "matmul", "--shapes", "64x0x8"][..], "64x0x8"),
        (&["bench", "matmul", "--shapes", "64x8"][..], "64x8"),
        (&["bench", "matmul", "--shapes", "100000x100000x100000"][..], "100000x100000x100000"),
        (&["bench", "matmul", "--shapes", "60000x60000x8"][..], "needs 14400000000 bytes"),
        (&["bench", "matmul", "--shapes", "99999999999x99999999999x2"][..], "over 2^32"),
        (&["bench", "nonsense"][..], "nonsense"),
        (&["bench", "step", "--model", "nonsense"][..], "nonsense"),
    ] {
        let (ok, _, err) = wgformer(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
