//! GELU, add, mul, scale and the column reduction against the CPU reference, on sizes
//! 1, 7, 1000003 and a realistic one. Elementwise tolerance 1e-5; reductions 1e-4.

use crate::common;
use common::{assert_close, fit, for_each_gpu, upload, Rng, HALF_FORMS};
use wgformer::kernels::{self, Elementwise, Gelu, GeluKind, Reduce};
use wgformer::reference::{elementwise as ew, gelu as gelu_ref, reduce as reduce_ref};

const SIZES: [usize; 4] = [1, 7, 1_000_003, 8 * 197 * 3072];

#[test]
fn gelu_matches_reference() {
    for_each_gpu(|gpu| {
        let g = Gelu::new(gpu).unwrap();
        // Operands in f32, and where there is f16 in the forms mixed precision uses: (x, the
        // output, dy) each f16 or not.
        let forms: &[[bool; 3]] = if gpu.caps.f16 { &HALF_FORMS } else { &HALF_FORMS[..1] };
        for (n, &[hx, hout, hdy]) in SIZES.into_iter().flat_map(|n| forms.iter().map(move |h| (n, h))) {
            let mut rng = Rng::new(n as u64);
            let (x, dout) = (fit(rng.vec_f32(n, 6.0), hx), fit(rng.vec_f32(n, 1.0), hdy));
            let (gx, gdout, gy, gdx) = (
                upload(gpu, "x", &x, hx),
                upload(gpu, "dout", &dout, hdy),
                if hout { gpu.zeros_f16("y", n) } else { gpu.zeros("y", n) }.unwrap(),
                if hout { gpu.zeros_f16("dx", n) } else { gpu.zeros("dx", n) }.unwrap(),
            );
            // An f16 output is the reference rounded, up to one step of f16 where the kernel's
            // f32 value rounds the other way.
            let rel = if hout { 2e-3 } else { 1e-5 };
            for kind in [GeluKind::Exact, GeluKind::Tanh] {
                let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
                gelu_ref::gelu_forward(&mut y, &x, kind);
                gelu_ref::gelu_backward(&mut dx, &x, &dout, kind);
                let f = g.fwd(gpu, &gy, &gx, n, kind).unwrap();
                let b = g.bwd(gpu, &gdx, &gx, &gdout, n, kind).unwrap();
                kernels::run(gpu, &[&f, &b]).unwrap();
                let tag = format!("{kind:?} n={n} f16 x, out, dy: {hx} {hout} {hdy}");
                assert_close(&format!("gelu {tag}"), &gpu.read(&gy).unwrap(), &fit(y, hout), 1e-5, rel);
                assert_close(&format!("gelu' {tag}"), &gpu.read(&gdx).unwrap(), &fit(dx, hout), 1e-5, rel);
            }
        }
    });
}

/// The erf-based GELU against the exact value in f64 on a dense grid over [-10, 10]:
/// measures the WGSL erf approximation end to end.
#[test]
fn exact_gelu_error_is_within_its_stated_bound() {
    for_each_gpu(|gpu| {
        let g = Gelu::new(gpu).unwrap();
        let n = 200_001;
        let x: Vec<f32> = (0..n).map(|i| -10.0 + 20.0 * i as f32 / (n - 1) as f32).collect();
        let (gx, gy) = (gpu.upload("x", &x).unwrap(), gpu.zeros("y", n).unwrap());
        kernels::run(gpu, &[&g.fwd(gpu, &gy, &gx, n, GeluKind::Exact).unwrap()]).unwrap();
        let got = gpu.read(&gy).unwrap();
        let worst = x
            .iter()
            .zip(&got)
            .map(|(&xi, &yi)| {
                let exact = gelu_ref::gelu(xi as f64, GeluKind::Exact);
                // Beyond |x| ~ 1, f32 rounding of the result itself (ulp/2 = 6e-8 |y|) dominates.
                (yi as f64 - exact).abs() / exact.abs().max(1.0)
            })
            .fold(0.0f64, f64::max);
        eprintln!("exact GELU: worst error {worst:e} (relative beyond |y| = 1, absolute below)");
        assert!(worst < 3e-7, "exact GELU worst error {worst:e}");
    });
}

#[test]
fn add_mul_scale_match_reference() {
    for_each_gpu(|gpu| {
        let e = Elementwise::new(gpu).unwrap();
        for &n in &SIZES[..3] {
            let mut rng = Rng::new(n as u64 + 1);
            let (a, b, dout) = (rng.vec_f32(n, 2.0), rng.vec_f32(n, 2.0), rng.vec_f32(n, 1.0));
            let up = |name, v: &[f32]| gpu.upload(name, v).unwrap();
            let (ga, gb, gdout) = (up("a", &a), up("b", &b), up("dout", &dout));
            let z = |name| gpu.zeros(name, n).unwrap();
            let (gsum, gprod, gda, gdb, gscaled) = (z("sum"), z("prod"), z("da"), z("db"), z("scaled"));
            let ds = [
                e.add_fwd(gpu, &gsum, &ga, &gb, n).unwrap(),
                e.mul_fwd(gpu, &gprod, &ga, &gb, n).unwrap(),
                e.mul_bwd(gpu, &gda, &gdb, &gdout, &ga, &gb, n).unwrap(),
                e.scale_fwd(gpu, &gscaled, &ga, -0.625, n).unwrap(),
            ];
            kernels::run(gpu, &ds.iter().collect::<Vec<_>>()).unwrap();
            let mut want = vec![0.0f32; n];
            ew::add_forward(&mut want, &a, &b);
            assert_close("add", &gpu.read(&gsum).unwrap(), &want, 1e-6, 1e-5);
            ew::mul_forward(&mut want, &a, &b);
            assert_close("mul", &gpu.read(&gprod).unwrap(), &want, 1e-6, 1e-5);
            let mut want_db = vec![0.0f32; n];
            ew::mul_backward(&mut want, &mut want_db, &dout, &a, &b);
            assert_close("mul da", &gpu.read(&gda).unwrap(), &want, 1e-6, 1e-5);
            assert_close("mul db", &gpu.read(&gdb).unwrap(), &want_db, 1e-6, 1e-5);
            ew::scale_forward(&mut want, &a, -0.625);
            assert_close("scale", &gpu.read(&gscaled).unwrap(), &want, 1e-6, 1e-5);
        }
    });
}

#[test]
fn column_sum_matches_reference() {
    for_each_gpu(|gpu| {
        let r = Reduce::new(gpu).unwrap();
        // The summed input in f32, and in f16 (mixed precision's gradients) where there is f16.
        let forms: &[bool] = if gpu.caps.f16 { &[false, true] } else { &[false] };
        let shapes = [(1, 1), (7, 1), (1, 7), (333, 65), (70_000, 3), (8 * 197, 768)];
        for ((rows, cols), half) in shapes.into_iter().flat_map(|s| forms.iter().map(move |&h| (s, h))) {
            let mut rng = Rng::new((rows * cols) as u64);
            let (x, dout) = (fit(rng.vec_f32(rows * cols, 1.0), half), rng.vec_f32(cols, 1.0));
            let (mut sum, mut dx) = (vec![0.0f32; cols], vec![0.0f32; rows * cols]);
            reduce_ref::reduce_cols_forward(&mut sum, &x, rows, cols);
            reduce_ref::reduce_cols_backward(&mut dx, &dout, rows, cols);
            let gx = upload(gpu, "x", &x, half);
            let gdout = gpu.upload("dout", &dout).unwrap();
            let (gsum, gdx) = (gpu.zeros("sum", cols).unwrap(), gpu.zeros("dx", rows * cols).unwrap());
            let f = r.fwd(gpu, &gsum, &gx, rows, cols).unwrap();
            let b = r.bwd(gpu, &gdx, &gdout, rows, cols).unwrap();
            kernels::run(gpu, &[&f, &b]).unwrap();
            let t = 1e-5 * (rows as f64).sqrt().max(1.0);
            assert_close(&format!("reduce_cols {rows}x{cols} f16 x: {half}"), &gpu.read(&gsum).unwrap(), &sum, t, 1e-4);
            assert_close(&format!("reduce_cols_bwd {rows}x{cols}"), &gpu.read(&gdx).unwrap(), &dx, 0.0, 0.0);
        }
    });
}
