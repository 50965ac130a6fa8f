//! Holds outputs to a reference case's expected.safetensors with the tolerances of
//! tests/golden/README.md: err = max|got - want| / max(max|want|, 1e-3 K), K the largest
//! max|want| among tensors of the same kind; <= 1e-4 for logits and loss, <= 1e-3 for gradients.

use std::path::Path;
use wgformer::util::io::read_safetensors;

pub fn check(case: &Path, got: &[(String, Vec<usize>, Vec<f32>)]) {
    let path = case.join("expected.safetensors");
    let expected = read_safetensors(&path).unwrap();
    let max_abs = |v: &[f32]| v.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
    let is_grad = |n: &str| n.starts_with("grad.");
    let scale = |grad: bool| {
        expected.iter().filter(|t| is_grad(&t.name) == grad).map(|t| max_abs(t.f32(&path).unwrap())).fold(0.0, f64::max)
    };
    let (k_fwd, k_grad) = (scale(false), scale(true));
    let mut worst = Vec::new();
    for want in &expected {
        let w = want.f32(&path).unwrap();
        let (name, shape, g) =
            got.iter().find(|(n, _, _)| *n == want.name).unwrap_or_else(|| panic!("no output {}", want.name));
        assert_eq!(shape, &want.shape, "{name} shape");
        let k = if is_grad(name) { k_grad } else { k_fwd };
        let limit = if is_grad(name) { 1e-3 } else { 1e-4 };
        let diff = g.iter().zip(w).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        let err = diff / max_abs(w).max(1e-3 * k);
        worst.push((err / limit, name.clone(), err));
        assert!(err <= limit, "{name}: err {err:e} over {limit:e}");
    }
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!(
        "{}: {} tensors within tolerance; closest to its limit: {} (err {:e})",
        case.display(),
        expected.len(),
        worst[0].1,
        worst[0].2
    );
}
