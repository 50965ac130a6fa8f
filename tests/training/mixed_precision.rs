//! Mixed-precision training (products with f16 operands and f32 accumulation, a dynamic loss
//! scale): the cast kernel rounds as `half` does, the cross-entropy's gradient takes the loss
//! scale, a small ViT and a small Transformer trained in f16 track the same runs in f32, and an
//! overflow skips the step and halves the scale. Runs where the adapter has f16 shaders
//! (lavapipe; llvmpipe's GL has none, and says so), with the adapter's default path for
//! products (on lavapipe: operands rounded to f16 values, f32 kernel);
//! tests/training/mixed_precision_f16_operands.rs runs the training cases with the f16 kernel.

use crate::common;
use common::mixed::{tracks_f32, train, transformer_case, vit_case};
use common::{assert_close, for_each_gpu, Rng};
use wgformer::graph::Precision;
use wgformer::Gpu;

fn has_f16(gpu: &Gpu) -> bool {
    if !gpu.caps.f16 {
        let err = wgformer::kernels::F16Set::of(gpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("SHADER_F16"), "no f16 here must be a clear error: {err}");
        eprintln!("skipped on {}: no f16 shaders", gpu.describe());
    }
    gpu.caps.f16
}

#[test]
fn casts_round_to_nearest_f16() {
    for_each_gpu(|gpu| {
        if !has_f16(gpu) {
            return;
        }
        let mut x = Rng::new(3).vec_f32(1001, 4.0);
        x.extend([70000.0, -1e-8, 3e-5, 65504.0, 0.1]);
        let n = x.len();
        let (src, dst) = (gpu.upload("x", &x).unwrap(), gpu.zeros_f16("x16", n).unwrap());
        let d = wgformer::kernels::F16Set::of(gpu).unwrap().cast.to_f16(gpu, &dst, &src, n).unwrap();
        wgformer::kernels::run(gpu, &[&d]).unwrap();
        let want = wgformer::reference::cast::round_f16(&x);
        // The same rounding kept in f32 (mixed precision on CPU adapters).
        let rounded = gpu.zeros("x rounded", n).unwrap();
        let r = wgformer::kernels::F16Set::of(gpu).unwrap().cast.round_f16(gpu, &rounded, &src, n).unwrap();
        wgformer::kernels::run(gpu, &[&r]).unwrap();
        for got in [gpu.read(&dst).unwrap(), gpu.read(&rounded).unwrap()] {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w || (g.is_infinite() && w.is_infinite()), "element {i}: {} -> {g}, want {w}", x[i]);
            }
        }
    });
}

#[test]
fn the_loss_scale_multiplies_the_cross_entropy_gradient_only() {
    for_each_gpu(|gpu| {
        let ce = wgformer::kernels::CrossEntropy::new(gpu).unwrap();
        let (rows, vocab) = (5, 7);
        let logits = gpu.upload("logits", &Rng::new(1).vec_f32(rows * vocab, 2.0)).unwrap();
        let targets = gpu.upload_u32("targets", &[0, 3, 6, 2, 1]).unwrap();
        let mul = gpu.upload("mul", &[8.0]).unwrap();
        let mut out = Vec::new();
        for scaled in [false, true] {
            let (loss, dlogits) = (gpu.zeros("loss", 1).unwrap(), gpu.zeros("d", rows * vocab).unwrap());
            let d = match scaled {
                false => ce.fwd(gpu, &loss, &dlogits, &logits, &targets, rows, vocab, 0.1, None),
                true => ce.fwd_scaled(gpu, [&loss, &dlogits], [&logits, &targets], rows, vocab, 0.1, None, &mul),
            }
            .unwrap();
            wgformer::kernels::run(gpu, &d.iter().collect::<Vec<_>>()).unwrap();
            out.push((gpu.read(&loss).unwrap(), gpu.read(&dlogits).unwrap()));
        }
        assert_eq!(out[0].0, out[1].0, "the loss is not scaled");
        let want: Vec<f32> = out[0].1.iter().map(|g| g * 8.0).collect();
        assert_close("dlogits x 8", &out[1].1, &want, 1e-7, 1e-6);
    });
}

#[test]
fn f16_training_tracks_f32() {
    for_each_gpu(|gpu| {
        if !has_f16(gpu) {
            return;
        }
        tracks_f32(gpu, "vit", &vit_case(), 200);
        tracks_f32(gpu, "transformer", &transformer_case(), 100);
    });
}

#[test]
fn an_overflow_skips_the_step_and_halves_the_scale() {
    for_each_gpu(|gpu| {
        if !has_f16(gpu) {
            return;
        }
        let case = vit_case();
        let (_, mut trainer) = train(gpu, &case, Precision::F16, 2);
        let before = trainer.params(gpu).unwrap();
        let step = trainer.step;
        // A scale this large overflows f16 in the first product of the backward.
        let huge = 1e30;
        trainer.scaler.as_mut().unwrap().scale = huge;
        let inputs = case.inputs();
        trainer.step(gpu, &inputs).unwrap();
        let scaler = trainer.scaler.unwrap();
        assert_eq!((scaler.skipped, scaler.scale, trainer.step), (1, huge / 2.0, step), "skipped, halved, not counted");
        assert_eq!(trainer.params(gpu).unwrap(), before, "a skipped step changes no parameter");
        // The next step at a sane scale trains again.
        trainer.scaler.as_mut().unwrap().scale = 1024.0;
        trainer.step(gpu, &inputs).unwrap();
        assert_eq!(trainer.step, step + 1);
        assert_ne!(trainer.params(gpu).unwrap(), before);
    });
}
