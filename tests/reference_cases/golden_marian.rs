//! The Marian reference case from transformers' MarianMTModel (tests/golden/make_marian.py):
//! logits, loss and the gradient of every parameter under Marian's names within the cases'
//! tolerances, on every test backend: SiLU feed-forward, Marian's positional table, the
//! embedding scale, the shared table whose pad row gets no gradient, the final logits bias.

use crate::common;
use std::path::Path;

#[test]
fn marian_matches_transformers() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0");
    common::for_each_gpu(|gpu| {
        let got = wgformer::verify::verify(gpu, &case).unwrap();
        common::golden::check(&case, &got);
    });
}
