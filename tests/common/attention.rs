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
    check_in(gpu, att, s, lens, seed, false)
}

/// [`check`] with q, k and v in f16 storage where `half` (mixed precision's projections): the
/// reference runs on the same f16 values.
pub fn check_in(gpu: &wgformer::Gpu, att: &Attention, s: &AttentionShape, lens: Option<&[u32]>, seed: u64, half: bool) {
    let (nq, nk, rows) = sizes(s);
    let mut rng = Rng::new(seed);
    let (mut q, mut k, mut v, dout) =
        (rng.vec_f32(nq, 1.0), rng.vec_f32(nk, 1.0), rng.vec_f32(nk, 1.0), rng.vec_f32(nq, 1.0));
    if half {
        use wgformer::reference::cast::round_f16;
        (q, k, v) = (round_f16(&q), round_f16(&k), round_f16(&v));
    }
    let (mut o, mut lse) = (vec![0.0f32; nq], vec![0.0f32; rows]);
    attention_forward(&mut o, &mut lse, &q, &k, &v, lens, s);
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; nq], vec![0.0f32; nk], vec![0.0f32; nk]);
    attention_backward(&mut dq, &mut dk, &mut dv, &q, &k, &v, &dout, lens, s);

    // Shown when the test fails: the case a device loss or panic happened in.
    println!("case {s:?} lens {lens:?} variant {}", att.variant_for(s, lens.is_some()).name());
    let up = |name, x: &[f32]| gpu.upload(name, x).unwrap();
    let in_storage = |name, x: &[f32]| if half { gpu.upload_f16(name, x).unwrap() } else { up(name, x) };
    let (gq, gk, gv, gdo) = (in_storage("q", &q), in_storage("k", &k), in_storage("v", &v), up("do", &dout));
    let z = |name, n| gpu.zeros(name, n).unwrap();
    let (go, glse, gdelta, gdq, gdk, gdv) =
        (z("o", nq), z("lse", rows), z("delta", rows), z("dq", nq), z("dk", nk), z("dv", nk));
    let glens = lens.map(|l| gpu.upload_u32("lens", l).unwrap());
    let f = att.fwd(gpu, &go, &glse, &gq, &gk, &gv, glens.as_ref(), s).unwrap();
    let b = att.bwd(gpu, [&gdq, &gdk, &gdv], &gdelta, [&gq, &gk, &gv, &go, &gdo, &glse], glens.as_ref(), s).unwrap();
    wgformer::kernels::run(gpu, &[&f, &b[0], &b[1], &b[2]]).unwrap();
    let tag = format!("{s:?} lens {lens:?} f16 q, k, v: {half}");
    // Sums over up to Tk terms of size ~1.
    let t = 2e-6 * (s.tk.max(s.tq) as f64).sqrt().max(1.0);
    assert_close(&format!("o {tag}"), &gpu.read(&go).unwrap(), &o, t, 1e-4);
    assert_close(&format!("lse {tag}"), &gpu.read(&glse).unwrap(), &lse, t, 1e-4);
    assert_close(&format!("dq {tag}"), &gpu.read(&gdq).unwrap(), &dq, t, 1e-3);
    assert_close(&format!("dk {tag}"), &gpu.read(&gdk).unwrap(), &dk, t, 1e-3);
    assert_close(&format!("dv {tag}"), &gpu.read(&gdv).unwrap(), &dv, t, 1e-3);
}
