//! Softmax and LayerNorm kernels against the CPU reference: odd sizes, more rows than one grid
//! dimension holds, and the ViT-B/16 activation shape (8 * 197, 768). Reductions: 1e-4.

use crate::common;
use common::{assert_close, for_each_gpu, Rng};
use wgformer::kernels::{self, LayerNorm, RowVariant, Softmax};
use wgformer::reference::{layernorm as ln_ref, softmax as sm_ref};

// (1, 200000): wide rows (a vocabulary); 70000 rows: more workgroups than one grid dimension.
const SHAPES: [(usize, usize); 7] = [(1, 1), (7, 1), (7, 33), (5, 1000), (1, 200_000), (70_000, 3), (8 * 197, 768)];

const VARIANTS: [RowVariant; 3] = [RowVariant::Workgroup, RowVariant::Invocation, RowVariant::Auto];

/// Rows too long for one invocation under the driver's loop budget are refused, not run.
fn skip(gpu: &wgformer::Gpu, variant: RowVariant, cols: usize) -> bool {
    variant == RowVariant::Invocation && gpu.loop_budget().is_some_and(|b| 3 * cols as u64 + 16 > b)
}

#[test]
fn softmax_matches_reference() {
    for_each_gpu(|gpu| {
        for variant in VARIANTS {
            let sm = Softmax::with_variant(gpu, variant).unwrap();
            for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
                if skip(gpu, variant, cols) {
                    continue;
                }
                let mut rng = Rng::new(i as u64);
                // Large logits check the max subtraction; an f32 exp would overflow without it.
                let (x, dy) = (rng.vec_f32(rows * cols, 60.0), rng.vec_f32(rows * cols, 1.0));
                let (mut y, mut dx) = (vec![0.0f32; rows * cols], vec![0.0f32; rows * cols]);
                sm_ref::softmax_forward(&mut y, &x, rows, cols);
                sm_ref::softmax_backward(&mut dx, &y, &dy, rows, cols);
                let (gx, gdy) = (gpu.upload("x", &x).unwrap(), gpu.upload("dy", &dy).unwrap());
                let (gy, gdx) = (gpu.zeros("y", rows * cols).unwrap(), gpu.zeros("dx", rows * cols).unwrap());
                let f = sm.fwd(gpu, &gy, &gx, rows, cols).unwrap();
                let b = sm.bwd(gpu, &gdx, &gy, &gdy, rows, cols).unwrap();
                kernels::run(gpu, &[&f, &b]).unwrap();
                assert_close(&format!("softmax y {rows}x{cols} {variant:?}"), &gpu.read(&gy).unwrap(), &y, 1e-6, 1e-4);
                assert_close(
                    &format!("softmax dx {rows}x{cols} {variant:?}"),
                    &gpu.read(&gdx).unwrap(),
                    &dx,
                    1e-6,
                    1e-4,
                );
            }
        }
    });
}

#[test]
fn layernorm_matches_reference() {
    for_each_gpu(|gpu| {
        for variant in VARIANTS {
            let ln = LayerNorm::with_variant(gpu, variant).unwrap();
            for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
                if skip(gpu, variant, cols) {
                    continue;
                }
                let n = rows * cols;
                let mut rng = Rng::new(10 + i as u64);
                // An offset mean checks the two-pass variance.
                let x: Vec<f32> = rng.vec_f32(n, 2.0).iter().map(|v| v + 3.0).collect();
                let (gamma, beta, dy) = (rng.vec_f32(cols, 1.0), rng.vec_f32(cols, 1.0), rng.vec_f32(n, 1.0));
                let eps = 1e-5;
                let (mut y, mut mean, mut rstd) = (vec![0.0f32; n], vec![0.0f32; rows], vec![0.0f32; rows]);
                ln_ref::layernorm_forward(&mut y, &mut mean, &mut rstd, &x, &gamma, &beta, rows, cols, eps as f64);
                let (mut dx, mut dg, mut db) = (vec![0.0f32; n], vec![0.0f32; cols], vec![0.0f32; cols]);
                ln_ref::layernorm_backward(&mut dx, &mut dg, &mut db, &x, &dy, &mean, &rstd, &gamma, rows, cols);

                let up = |name, v: &[f32]| gpu.upload(name, v).unwrap();
                let (gx, ggamma, gbeta, gdy) = (up("x", &x), up("gamma", &gamma), up("beta", &beta), up("dy", &dy));
                let z = |name, len| gpu.zeros(name, len).unwrap();
                let (gy, gmean, grstd, gdx, gdg, gdb) =
                    (z("y", n), z("mean", rows), z("rstd", rows), z("dx", n), z("dg", cols), z("db", cols));
                let f = ln.fwd(gpu, &gy, &gmean, &grstd, &gx, &ggamma, &gbeta, rows, cols, eps).unwrap();
                let [b1, b2] = ln.bwd(gpu, &gdx, &gdg, &gdb, &gx, &gdy, &gmean, &grstd, &ggamma, rows, cols).unwrap();
                kernels::run(gpu, &[&f, &b1, &b2]).unwrap();
                let tag = format!("{rows}x{cols} {variant:?}");
                assert_close(&format!("layernorm y {tag}"), &gpu.read(&gy).unwrap(), &y, 1e-4, 1e-4);
                assert_close(&format!("layernorm mean {tag}"), &gpu.read(&gmean).unwrap(), &mean, 1e-4, 1e-4);
                assert_close(&format!("layernorm rstd {tag}"), &gpu.read(&grstd).unwrap(), &rstd, 1e-4, 1e-4);
                // dx carries rstd as a factor: a row of nearly equal values (likely among 70000 rows
                // of 3) amplifies f32 rounding in x - mean by rstd, so compare dx / max(rstd, 1).
                let per_row =
                    |v: &[f32]| v.iter().enumerate().map(|(i, d)| d / rstd[i / cols].max(1.0)).collect::<Vec<f32>>();
                assert_close(
                    &format!("layernorm dx/rstd {tag}"),
                    &per_row(&gpu.read(&gdx).unwrap()),
                    &per_row(&dx),
                    1e-4,
                    1e-4,
                );
                // dgamma and dbeta sum over all rows: scale the tolerance with sqrt(rows).
                let t = 1e-5 * (rows as f64).sqrt().max(1.0);
                assert_close(&format!("layernorm dgamma {tag}"), &gpu.read(&gdg).unwrap(), &dg, t, 1e-4);
                assert_close(&format!("layernorm dbeta {tag}"), &gpu.read(&gdb).unwrap(), &db, t, 1e-4);
                // Accumulating (a fused sum): dx is added to what the buffer holds.
                let held = rng.vec_f32(n, 1.0);
                let gacc = up("acc", &held);
                let [b1, _] = ln
                    .bwd_into(gpu, [&gacc, &gdg, &gdb], [&gx, &gdy, &gmean, &grstd, &ggamma], rows, cols, true)
                    .unwrap();
                kernels::run(gpu, &[&b1]).unwrap();
                let want: Vec<f32> = dx.iter().zip(&held).map(|(d, h)| d + h).collect();
                assert_close(
                    &format!("layernorm dx + acc {tag}"),
                    &per_row(&gpu.read(&gacc).unwrap()),
                    &per_row(&want),
                    1e-4,
                    1e-4,
                );
            }
        }
    });
}

#[test]
fn zero_length_rows_are_refused() {
    for_each_gpu(|gpu| {
        let sm = Softmax::new(gpu).unwrap();
        let t = gpu.zeros("t", 4).unwrap();
        assert!(sm.fwd(gpu, &t, &t, 4, 0).is_err());
        assert!(sm.fwd(gpu, &t, &t, 4, 2).is_err(), "8 elements do not fit a 4-element tensor");
    });
}

#[test]
fn rows_past_the_drivers_loop_budget_are_refused() {
    for_each_gpu(|gpu| {
        let Some(budget) = gpu.loop_budget() else {
            return;
        };
        let sm = Softmax::new(gpu).unwrap();
        let cols = budget as usize * 64;
        let t = gpu.zeros("t", cols).unwrap();
        let err = sm.fwd(gpu, &t, &t, 1, cols).unwrap_err();
        assert!(err.to_string().contains("loop iterations"), "{err}");
    });
}
