//! The ViT reference case from PyTorch / Hugging Face: logits, loss and every gradient,
//! including d loss / d pixels, within the case's tolerances, on every test backend.

use crate::common;
use std::path::Path;

#[test]
fn vit_tiny_matches_pytorch() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vit-tiny-s0");
    common::for_each_gpu(|gpu| {
        let got = wgformer::verify::vit::verify(gpu, &case).unwrap();
        common::golden::check(&case, &got);
    });
}
