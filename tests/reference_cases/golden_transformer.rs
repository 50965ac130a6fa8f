//! The Transformer reference cases from PyTorch (nn.Transformer with and without its final
//! norms): logits, loss and every gradient within the cases' tolerances, on every test backend.

use crate::common;
use std::path::Path;

fn check_case(name: &str) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    common::for_each_gpu(|gpu| {
        let got = wgformer::verify::verify(gpu, &case).unwrap();
        common::golden::check(&case, &got);
    });
}

#[test]
fn transformer_with_final_norms_matches_pytorch() {
    check_case("transformer-s0");
}

#[test]
fn transformer_as_in_the_paper_matches_pytorch() {
    check_case("transformer-paper-s0");
}
