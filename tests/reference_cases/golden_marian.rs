//! The Marian reference cases from transformers' MarianMTModel (tests/golden/make_marian.py;
//! marian-v58k at OPUS-MT's full vocabulary of 58,101):
//! logits, loss and the gradient of every parameter under Marian's names within the cases'
//! tolerances, on every test backend: SiLU feed-forward, Marian's positional table, the
//! embedding scale, the shared table whose pad row gets no gradient, the final logits bias.

use crate::common;
use std::path::Path;

#[test]
fn marian_matches_transformers() {
    for name in ["marian-s0", "marian-v58k"] {
        let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        common::for_each_gpu(|gpu| {
            let got = wgformer::verify::verify(gpu, &case).unwrap();
            common::golden::check(&case, &got);
        });
    }
}
