//! Mixed precision's f16 forms in the browser, where the adapter has shader-f16: GELU, the
//! cross-entropy and fused attention (whose case also runs in f32 everywhere) with every operand the graph rewrite keeps in f16 stored
//! in f16, against the reference on the same f16 inputs (outputs rounded as f16 stores them).

use super::{vec_f32, verify, Check};
use wgformer::kernels::attention::AttentionShape;
use wgformer::kernels::{Attention, CrossEntropy, Gelu, GeluKind};
use wgformer::reference::cast::round_f16;
use wgformer::reference::{attention as att_ref, crossentropy as ce_ref, gelu as gelu_ref};
use wgformer::util::rng::Rng;
use wgformer::{Gpu, Result};

fn half(gpu: &Gpu, v: &[f32]) -> Result<wgformer::gpu::Tensor> {
    gpu.upload_f16("input", v)
}

/// GELU forward and backward with x, dy and the outputs in f16.
pub async fn gelu(gpu: &Gpu, kind: GeluKind) -> Result<(bool, String)> {
    let n = 4099;
    let mut rng = Rng::new(21);
    let x = round_f16(&vec_f32(&mut rng, n).iter().map(|v| 6.0 * v).collect::<Vec<_>>());
    let dy = round_f16(&vec_f32(&mut rng, n));
    let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
    gelu_ref::gelu_forward(&mut y, &x, kind);
    gelu_ref::gelu_backward(&mut dx, &x, &dy, kind);
    let g = Gelu::new(gpu)?;
    let (gx, gdy, gy, gdx) = (half(gpu, &x)?, half(gpu, &dy)?, gpu.zeros_f16("y", n)?, gpu.zeros_f16("dx", n)?);
    let f = g.fwd(gpu, &gy, &gx, n, kind)?;
    let b = g.bwd(gpu, &gdx, &gx, &gdy, n, kind)?;
    let (y, dx) = (round_f16(&y), round_f16(&dx));
    // One f16 step where the kernel's f32 value rounds the other way.
    verify(gpu, &[&f, &b], &[("y", &gy, &y, 1e-5, 2e-3), ("dx", &gdx, &dx, 1e-5, 2e-3)]).await
}

/// The cross-entropy on f16 logits writing its loss-scaled gradient in f16.
pub async fn cross_entropy(gpu: &Gpu) -> Result<(bool, String)> {
    let (rows, vocab, smoothing, scale) = (9, 1000, 0.1, 4096.0f32);
    let mut rng = Rng::new(22);
    let logits = round_f16(&vec_f32(&mut rng, rows * vocab).iter().map(|v| 8.0 * v).collect::<Vec<_>>());
    let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 97) % vocab as u32).collect();
    let mut want_d = vec![0.0f32; rows * vocab];
    let loss = ce_ref::cross_entropy_forward(&mut want_d, &logits, &targets, vocab, smoothing as f64, None);
    let want_d = round_f16(&want_d.iter().map(|d| d * scale).collect::<Vec<_>>());
    let ce = CrossEntropy::new(gpu)?;
    let (gl, gt) = (half(gpu, &logits)?, gpu.upload_u32("targets", &targets)?);
    let (gloss, gd, gscale) =
        (gpu.zeros("loss", 1)?, gpu.zeros_f16("dlogits", rows * vocab)?, gpu.upload("s", &[scale])?);
    let ds = ce.fwd_scaled(gpu, [&gloss, &gd], [&gl, &gt], rows, vocab, smoothing, None, &gscale)?;
    let checks: [Check; 2] =
        [("loss", &gloss, &[loss], 1e-5, 1e-4), ("dlogits", &gd, &want_d, 1e-7 * scale as f64 + 6e-8, 1e-3)];
    verify(gpu, &ds.iter().collect::<Vec<_>>(), &checks).await
}

/// Fused attention forward and backward against the reference; where `half`, with q, k, v, o
/// and the gradients in f16, as the graph rewrite stores them (outputs compared rounded).
pub async fn attention(
    gpu: &Gpu,
    att: &Attention,
    s: &AttentionShape,
    lens: Option<&[u32]>,
    half: bool,
) -> Result<(bool, String)> {
    let (nq, nk, rows) =
        (s.batch * s.tq * s.heads * s.head_dim, s.batch * s.tk * s.heads * s.head_dim, s.batch * s.heads * s.tq);
    let fit = |v: Vec<f32>| if half { round_f16(&v) } else { v };
    let mut rng = Rng::new(40);
    let mut draw = |n| fit(vec_f32(&mut rng, n));
    let (q, k, v, dout) = (draw(nq), draw(nk), draw(nk), draw(nq));
    let (mut o, mut lse) = (vec![0.0f32; nq], vec![0.0f32; rows]);
    att_ref::attention_forward(&mut o, &mut lse, &q, &k, &v, lens, s);
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; nq], vec![0.0f32; nk], vec![0.0f32; nk]);
    att_ref::attention_backward(&mut dq, &mut dk, &mut dv, &q, &k, &v, &dout, lens, s);
    let store = |x: &[f32]| if half { gpu.upload_f16("input", x) } else { gpu.upload("input", x) };
    let (gq, gk, gv, gdo) = (store(&q)?, store(&k)?, store(&v)?, store(&dout)?);
    let z = |n| if half { gpu.zeros_f16("out", n) } else { gpu.zeros("out", n) };
    let (go, glse, gdelta) = (z(nq)?, gpu.zeros("lse", rows)?, gpu.zeros("delta", rows)?);
    let (gdq, gdk, gdv) = (z(nq)?, z(nk)?, z(nk)?);
    let glens = match lens {
        Some(l) => Some(gpu.upload_u32("lens", l)?),
        None => None,
    };
    let f = att.fwd(gpu, &go, &glse, &gq, &gk, &gv, glens.as_ref(), s)?;
    let b = att.bwd(gpu, [&gdq, &gdk, &gdv], &gdelta, [&gq, &gk, &gv, &go, &gdo, &glse], glens.as_ref(), s)?;
    // In f16 an output may round the other way (2e-3), and the f16 o moves delta = do . o by
    // its rounding: 2e-3 of the largest gradient (see tests/common/attention.rs).
    let t = 2e-6 * (s.tk.max(s.tq) as f64).sqrt();
    let (o_rel, grad_rel, o_share) = if half { (2e-3, 3e-3, 2e-3) } else { (1e-4, 1e-3, 0.0) };
    let abs = |w: &[f32]| t + o_share * w.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
    let (o, dq, dk, dv) = (fit(o), fit(dq), fit(dk), fit(dv));
    let checks: [Check; 4] = [
        ("o", &go, &o, t, o_rel),
        ("dq", &gdq, &dq, abs(&dq), grad_rel),
        ("dk", &gdk, &dk, abs(&dk), grad_rel),
        ("dv", &gdv, &dv, abs(&dv), grad_rel),
    ];
    verify(gpu, &[&f, &b[0], &b[1], &b[2]], &checks).await
}

/// The same cases on a native adapter (lavapipe has f16), so that they are known to pass where
/// a browser has shader-f16: `cargo test --release` in web/.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod native {
    use super::*;

    #[test]
    fn half_cases_pass_on_a_native_adapter_with_f16() {
        let gpu = Gpu::new().unwrap();
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        let run = |name: &str, r: Result<(bool, String)>| {
            let (ok, detail) = r.unwrap();
            assert!(ok, "{name}: {detail}");
        };
        run("gelu", pollster::block_on(gelu(&gpu, GeluKind::Exact)));
        run("cross-entropy", pollster::block_on(cross_entropy(&gpu)));
        let att = Attention::new(&gpu).unwrap();
        let s = AttentionShape { batch: 2, heads: 2, tq: 77, tk: 77, head_dim: 64, causal: false };
        for half in [false, true] {
            run("attention", pollster::block_on(attention(&gpu, &att, &s, Some(&[77, 30]), half)));
        }
    }
}
