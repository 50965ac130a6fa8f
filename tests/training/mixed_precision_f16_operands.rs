//! Mixed-precision training with the products' operands in f16 storage and the f16 matmul
//! kernel (`WGFORMER_MATMUL_F16=tiled`, on devices of its own: on CPU adapters the default
//! rounds operands in f32 instead, see tests/training/mixed_precision.rs): a small ViT and a small
//! Transformer track the same runs in f32.

use crate::common;
use common::for_each_gpu_with;
use common::mixed::{tracks_f32, transformer_case, vit_case};

#[test]
fn f16_operand_training_tracks_f32() {
    let tiled = |s: &mut wgformer::Settings| s.kernels.f16_products = Some(wgformer::settings::F16Products::Tiled);
    for_each_gpu_with(tiled, |gpu| {
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        let set = wgformer::kernels::F16Set::of(gpu).unwrap();
        assert!(set.describe().starts_with("f16 operands"), "{}", set.describe());
        tracks_f32(gpu, "vit", &vit_case(), 100);
        tracks_f32(gpu, "transformer", &transformer_case(), 50);
    });
}
