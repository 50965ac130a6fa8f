//! The training kernels against the CPU reference: fused cross-entropy (label smoothing,
//! ignore index, a vocabulary-sized row), ReLU, Adam over several steps, and clipping's sums
//! of squares, several gradients a dispatch.

use crate::common;
use common::{assert_close, fit, for_each_gpu, upload, Rng, HALF_FORMS};
use wgformer::kernels::{self, Adam, CrossEntropy, Elementwise};
use wgformer::reference::adam::{adam_update, AdamStep};
use wgformer::reference::{crossentropy::cross_entropy_forward, elementwise as ew};

#[test]
fn cross_entropy_matches_reference() {
    for_each_gpu(|gpu| {
        let ce = CrossEntropy::new(gpu).unwrap();
        let cases: [(usize, usize, f32, Option<u32>); 6] = [
            (1, 1, 0.0, None),
            (7, 5, 0.1, None),
            (9, 1000, 0.1, Some(0)),
            (3, 32_000, 0.1, None),
            (70_000, 3, 0.0, Some(2)),
            (4, 6, 0.1, Some(3)),
        ];
        // Logits and dlogits each in f32, and in f16 (mixed precision keeps both in half
        // precision) where there is f16. Written f16, the gradient carries a loss scale, as in
        // training: unscaled, its small entries would be f16 subnormals.
        let forms: &[(bool, bool)] = if gpu.caps.f16 {
            &[(false, false), (true, false), (false, true), (true, true)]
        } else {
            &[(false, false)]
        };
        let all = cases.iter().enumerate().flat_map(|c| forms.iter().map(move |&h| (c, h)));
        for ((i, &(rows, vocab, smoothing, ignore)), (half_in, half_out)) in all {
            let mut rng = Rng::new(i as u64);
            let logits = fit(rng.vec_f32(rows * vocab, 8.0), half_in);
            let mut targets: Vec<u32> = (0..rows).map(|_| (rng.next_u64() % vocab as u64) as u32).collect();
            if i == 5 {
                targets = vec![3; rows]; // every row ignored: loss and gradient are 0
            }
            let mut want_d = vec![0.0f32; rows * vocab];
            let want_loss = cross_entropy_forward(&mut want_d, &logits, &targets, vocab, smoothing as f64, ignore);
            let gl = upload(gpu, "logits", &logits, half_in);
            let gt = gpu.upload_u32("targets", &targets).unwrap();
            let n = rows * vocab;
            let gd = if half_out { gpu.zeros_f16("dlogits", n) } else { gpu.zeros("dlogits", n) }.unwrap();
            let gloss = gpu.zeros("loss", 1).unwrap();
            let scale: f32 = if half_out { 4096.0 } else { 1.0 };
            let gscale = gpu.upload("scale", &[scale]).unwrap();
            let ds = ce.fwd_scaled(gpu, [&gloss, &gd], [&gl, &gt], rows, vocab, smoothing, ignore, &gscale).unwrap();
            kernels::run(gpu, &ds.iter().collect::<Vec<_>>()).unwrap();
            let tag =
                format!("{rows}x{vocab} e={smoothing} ignore={ignore:?} f16 logits: {half_in}, dlogits: {half_out}");
            assert_close(&format!("loss {tag}"), &gpu.read(&gloss).unwrap(), &[want_loss], 1e-5, 1e-4);
            let want_d: Vec<f32> = want_d.iter().map(|d| d * scale).collect();
            // f16: half an f16 step relative, and its subnormal step near zero.
            let (abs, rel) = if half_out { (1e-7 * scale as f64 + 6e-8, 1e-3) } else { (1e-7, 1e-4) };
            assert_close(&format!("dlogits {tag}"), &gpu.read(&gd).unwrap(), &want_d, abs, rel);
        }
    });
}

/// ReLU and SiLU, forward and backward, against the reference: every element count and, where
/// there is f16, every mix of f16 operands mixed precision uses (x, the output, dy). ReLU only
/// selects, so it is exact; SiLU computes in f32 (to 1e-6 relative of the reference's f32,
/// rounded once more where its output is f16).
#[test]
fn activations_match_reference() {
    type Reference = fn(&mut [f32], &[f32]);
    type ReferenceBwd = fn(&mut [f32], &[f32], &[f32]);
    let cases: [(&str, Reference, ReferenceBwd, f64); 2] =
        [("relu", ew::relu_forward, ew::relu_backward, 0.0), ("silu", ew::silu_forward, ew::silu_backward, 1e-6)];
    for_each_gpu(|gpu| {
        let e = Elementwise::new(gpu).unwrap();
        let forms: &[[bool; 3]] = if gpu.caps.f16 { &HALF_FORMS } else { &HALF_FORMS[..1] };
        for (name, fwd, bwd, tol) in cases {
            for (n, &[hx, hout, hdy]) in [1, 7, 1_000_003].into_iter().flat_map(|n| forms.iter().map(move |h| (n, h))) {
                let mut rng = Rng::new(n as u64);
                let (x, dy) = (fit(rng.vec_f32(n, 8.0), hx), fit(rng.vec_f32(n, 1.0), hdy));
                let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
                fwd(&mut y, &x);
                bwd(&mut dx, &x, &dy);
                let (gx, gdy, gy, gdx) = (
                    upload(gpu, "x", &x, hx),
                    upload(gpu, "dy", &dy, hdy),
                    if hout { gpu.zeros_f16("y", n) } else { gpu.zeros("y", n) }.unwrap(),
                    if hout { gpu.zeros_f16("dx", n) } else { gpu.zeros("dx", n) }.unwrap(),
                );
                let (f, b) = match name {
                    "relu" => (e.relu_fwd(gpu, &gy, &gx, n).unwrap(), e.relu_bwd(gpu, &gdx, &gx, &gdy, n).unwrap()),
                    _ => (e.silu_fwd(gpu, &gy, &gx, n).unwrap(), e.silu_bwd(gpu, &gdx, &gx, &gdy, n).unwrap()),
                };
                kernels::run(gpu, &[&f, &b]).unwrap();
                let tag = format!("n={n} f16 x, out, dy: {hx} {hout} {hdy}");
                // An f16 output may round the other way from the reference's rounding.
                let rel = if hout && tol > 0.0 { 1e-3 } else { tol };
                let abs = if tol > 0.0 { 1e-7 } else { 0.0 };
                assert_close(&format!("{name} {tag}"), &gpu.read(&gy).unwrap(), &fit(y, hout), abs, rel);
                assert_close(&format!("{name}_bwd {tag}"), &gpu.read(&gdx).unwrap(), &fit(dx, hout), abs, rel);
            }
        }
    });
}

#[test]
fn adam_matches_reference_over_steps() {
    for_each_gpu(|gpu| {
        let adam = Adam::new(gpu).unwrap();
        let n = 10_007;
        let mut rng = Rng::new(5);
        let mut p = rng.vec_f32(n, 1.0);
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        let (gp, gm, gv) = (gpu.upload("p", &p).unwrap(), gpu.zeros("m", n).unwrap(), gpu.zeros("v", n).unwrap());
        let ggrad = gpu.zeros("grad", n).unwrap();
        let one = gpu.upload("scale", &[1.0]).unwrap();
        let hyper = adam.hyper_params(gpu);
        let d = adam.update(gpu, &hyper, &gp, &gm, &gv, &ggrad, &one, n).unwrap();
        for step in 1..=4 {
            let grad = rng.vec_f32(n, 1.0);
            let s = AdamStep { lr: 1e-2 / step as f32, beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.01, step };
            adam_update(&mut p, &mut m, &mut v, &grad, &s);
            gpu.write(&ggrad, &grad).unwrap();
            Adam::set_step(gpu, &hyper, &s);
            kernels::run(gpu, &[&d]).unwrap();
        }
        assert_close("adam param", &gpu.read(&gp).unwrap(), &p, 1e-6, 1e-5);
        assert_close("adam m", &gpu.read(&gm).unwrap(), &m, 1e-6, 1e-5);
        assert_close("adam v", &gpu.read(&gv).unwrap(), &v, 1e-7, 1e-5);
    });
}

#[test]
fn adam_skips_the_step_when_clipping_found_non_finite_gradients() {
    use wgformer::runtime::optim::clip_factor;
    assert_eq!(clip_factor(f64::NAN, 1.0), -1.0);
    assert_eq!(clip_factor(f64::INFINITY, 1.0), -1.0);
    for_each_gpu(|gpu| {
        let adam = Adam::new(gpu).unwrap();
        let n = 1000;
        let mut rng = Rng::new(8);
        let (p, m, v) = (rng.vec_f32(n, 1.0), rng.vec_f32(n, 1.0), rng.vec_f32(n, 1.0));
        let (gp, gm, gv) = (gpu.upload("p", &p).unwrap(), gpu.upload("m", &m).unwrap(), gpu.upload("v", &v).unwrap());
        let mut grad = rng.vec_f32(n, 1.0);
        grad[7] = f32::NAN;
        let ggrad = gpu.upload("grad", &grad).unwrap();
        let skip = gpu.upload("scale", &[clip_factor(f64::NAN, 1.0) as f32]).unwrap();
        let hyper = adam.hyper_params(gpu);
        let s = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.01, step: 3 };
        Adam::set_step(gpu, &hyper, &s);
        let d = adam.update(gpu, &hyper, &gp, &gm, &gv, &ggrad, &skip, n).unwrap();
        kernels::run(gpu, &[&d]).unwrap();
        assert_eq!(gpu.read(&gp).unwrap(), p);
        assert_eq!(gpu.read(&gm).unwrap(), m);
        assert_eq!(gpu.read(&gv).unwrap(), v);
    });
}

/// Clipping's sums of squares of several gradients in one dispatch write, bit for bit, the
/// partials of one dispatch per gradient (sizes around a workgroup's chunk of 16384), and
/// those partials sum to the reference's; no gradients, or more than a dispatch binds, are errors.
#[test]
fn sums_of_squares_of_several_gradients_match_one_dispatch_each() {
    use wgformer::kernels::clip::{partials_for, Clip, SUMSQ_TENSORS};
    for_each_gpu(|gpu| {
        let clip = Clip::new(gpu).unwrap();
        let sizes = [1, 7, 16_384, 16_385, 100_000, 3, 50_000, 2, 40_000];
        let mut rng = Rng::new(31);
        let data: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec_f32(n, 2.0)).collect();
        let grads: Vec<_> = data.iter().map(|v| gpu.upload("g", v).unwrap()).collect();
        let total: usize = sizes.iter().map(|&n| partials_for(n)).sum();
        let (one, many) = (gpu.zeros("one", total).unwrap(), gpu.zeros("many", total).unwrap());
        let mut dispatches = Vec::new();
        let mut offset = 0;
        for (g, &n) in grads.iter().zip(&sizes) {
            dispatches.push(clip.sumsq(gpu, &one, g, n, offset).unwrap());
            offset += partials_for(n);
        }
        // Groups of 7 and 2, as the optimizer makes them.
        let mut offset = 0;
        let pairs: Vec<(&wgformer::Tensor, usize)> = grads.iter().zip(sizes).collect();
        for group in pairs.chunks(SUMSQ_TENSORS) {
            dispatches.push(clip.sumsq_many(gpu, &many, group, offset).unwrap());
            offset += group.iter().map(|&(_, n)| partials_for(n)).sum::<usize>();
        }
        kernels::run(gpu, &dispatches.iter().collect::<Vec<_>>()).unwrap();
        let (one, many) = (gpu.read(&one).unwrap(), gpu.read(&many).unwrap());
        assert_eq!(one, many);
        let want: f64 = data.iter().flatten().map(|&g| g as f64 * g as f64).sum();
        let got: f64 = many.iter().map(|&p| p as f64).sum();
        assert!((got - want).abs() <= 1e-5 * want, "sum of squares {got}, reference {want}");
        let nine: Vec<(&wgformer::Tensor, usize)> = pairs.clone();
        let out = gpu.zeros("out", total).unwrap();
        assert!(clip.sumsq_many(gpu, &out, &nine[..SUMSQ_TENSORS + 1], 0).is_err());
        assert!(clip.sumsq_many(gpu, &out, &[], 0).is_err());
    });
}
