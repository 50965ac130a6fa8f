//! Fused attention on a GPU against the CPU reference, forward and backward.

use super::{assert_close, Rng};
use wgformer::kernels::attention::{Attention, AttentionShape};
use wgformer::reference::attention::{attention_backward, attention_forward};

/// Elements of q (and o), of k (and v), and rows of lse, for `s`.
pub fn sizes(s: &AttentionShape) -> (usize, usize, usize) {
    (s.batch * s.tq * s.heads * s.head_dim, s.batch * s.tk * s.heads * s.head_dim, s.batch * s.heads * s.tq)
}

/// Runs `att` forward and backward on random data of shape `s` and compares every output with
/// the reference.
pub fn check(gpu: &wgformer::Gpu, att: &Attention, s: &AttentionShape, lens: Option<&[u32]>, seed: u64) {
    check_in(gpu, att, s, lens, seed, [false; 3])
}

/// [`check`] with, where `halves` says so, (q, k and v; o; do, dq, dk and dv) in f16 storage
/// (mixed precision's forms): the reference runs on the same f16 inputs, and an f16 output is
/// compared with the reference rounded to f16.
pub fn check_in(
    gpu: &wgformer::Gpu,
    att: &Attention,
    s: &AttentionShape,
    lens: Option<&[u32]>,
    seed: u64,
    halves: [bool; 3],
) {
    use super::{fit, upload};
    let [hqkv, ho, hgrad] = halves;
    let (nq, nk, rows) = sizes(s);
    let mut rng = Rng::new(seed);
    let (q, k, v) = (fit(rng.vec_f32(nq, 1.0), hqkv), fit(rng.vec_f32(nk, 1.0), hqkv), fit(rng.vec_f32(nk, 1.0), hqkv));
    let dout = fit(rng.vec_f32(nq, 1.0), hgrad);
    let (mut o, mut lse) = (vec![0.0f32; nq], vec![0.0f32; rows]);
    attention_forward(&mut o, &mut lse, &q, &k, &v, lens, s);
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; nq], vec![0.0f32; nk], vec![0.0f32; nk]);
    attention_backward(&mut dq, &mut dk, &mut dv, &q, &k, &v, &dout, lens, s);

    // Shown when the test fails: the case a device loss or panic happened in.
    println!("case {s:?} lens {lens:?} variant {} f16 {halves:?}", att.variant_for(s, lens.is_some()).name());
    let (gq, gk, gv, gdo) = (
        upload(gpu, "q", &q, hqkv),
        upload(gpu, "k", &k, hqkv),
        upload(gpu, "v", &v, hqkv),
        upload(gpu, "do", &dout, hgrad),
    );
    let z = |name, n, half| if half { gpu.zeros_f16(name, n) } else { gpu.zeros(name, n) }.unwrap();
    let (go, glse, gdelta) = (z("o", nq, ho), z("lse", rows, false), z("delta", rows, false));
    let (gdq, gdk, gdv) = (z("dq", nq, hgrad), z("dk", nk, hgrad), z("dv", nk, hgrad));
    let glens = lens.map(|l| gpu.upload_u32("lens", l).unwrap());
    let f = att.fwd(gpu, &go, &glse, &gq, &gk, &gv, glens.as_ref(), s).unwrap();
    let b = att.bwd(gpu, [&gdq, &gdk, &gdv], &gdelta, [&gq, &gk, &gv, &go, &gdo, &glse], glens.as_ref(), s).unwrap();
    wgformer::kernels::run(gpu, &[&f, &b[0], &b[1], &b[2]]).unwrap();
    let tag = format!("{s:?} lens {lens:?} f16 q, k, v / o / gradients: {halves:?}");
    // Sums over up to Tk terms of size ~1; an f16 value may round the other way (2e-3). An f16
    // o moves the backward's delta = do . o by o's rounding (2^-11 relative), which reaches
    // every gradient entry of the row: an absolute error of 2e-3 of the largest gradient.
    let t = 2e-6 * (s.tk.max(s.tq) as f64).sqrt().max(1.0);
    let (o_rel, grad_rel) = (if ho { 2e-3 } else { 1e-4 }, if hgrad { 3e-3 } else { 1e-3 });
    let grad_abs = |want: &[f32]| match ho {
        true => t + 2e-3 * want.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64,
        false => t,
    };
    assert_close(&format!("o {tag}"), &gpu.read(&go).unwrap(), &fit(o, ho), t, o_rel);
    assert_close(&format!("lse {tag}"), &gpu.read(&glse).unwrap(), &lse, t, 1e-4);
    for (name, got, want) in [("dq", &gdq, dq), ("dk", &gdk, dk), ("dv", &gdv, dv)] {
        let abs = grad_abs(&want);
        assert_close(&format!("{name} {tag}"), &gpu.read(got).unwrap(), &fit(want, hgrad), abs, grad_rel);
    }
}
