//! The per-step losses recorded before training moved into the library
//! (`tests/data/reference_losses/*.json`), which the CLI and the library runs must reproduce.

use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
pub struct Reference {
    /// `wgformer` arguments, without `--out`.
    pub args: Vec<String>,
    pub adapter: String,
    pub driver_info: String,
    pub losses: Vec<(u32, f32)>,
}

/// The recorded run `name` in tests/data/reference_losses.
pub fn reference(name: &str) -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference_losses").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reference file")).expect("reference JSON")
}

/// Fails unless `got` are `want`'s losses: to 1e-6 relative on the (adapter, driver) they were
/// recorded on, to 2e-3 on others.
pub fn assert_matches(name: &str, got: &[(u32, f32)], want: &Reference, (adapter, driver): &(String, String)) {
    let same = *adapter == want.adapter && *driver == want.driver_info;
    let tol = if same { 1e-6 } else { 2e-3 };
    assert_eq!(got.len(), want.losses.len(), "{name}: steps");
    let mut worst = 0.0f64;
    for ((s, g), (t, w)) in got.iter().zip(&want.losses) {
        assert_eq!(s, t, "{name}: step numbers");
        let rel = ((g - w).abs() / w.abs().max(1e-6)) as f64;
        worst = worst.max(rel);
        assert!(rel <= tol, "{name}: step {s} loss {g} against {w} recorded (relative {rel:.2e} > {tol:e})");
    }
    eprintln!("{name}: {} steps within {worst:.2e} of the recorded losses ({adapter}; tolerance {tol:e})", got.len());
}
