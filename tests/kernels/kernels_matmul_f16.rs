//! The f16 matmul (f16 operands, f32 accumulation, f32 or f16 output) against the reference on
//! the same f16-rounded operands: every transpose, odd sizes, batches, bias and accumulation. The
//! tiled kernel runs wherever the adapter has f16 shaders; the cooperative-matrix kernel where
//! it has matrix units, and is reported as skipped elsewhere (`WGFORMER_REQUIRE_COOP=1` makes
//! that a failure, for the GPU check).

use crate::common;
use common::{assert_close, for_each_gpu, Rng};
use wgformer::kernels::matmul_f16::{coop_subgroup, F16Variant, MatmulF16};
use wgformer::kernels::{self, MatmulShape};
use wgformer::reference::cast::round_f16;
use wgformer::reference::matmul::matmul_forward;

fn shapes() -> Vec<MatmulShape> {
    let mut all = Vec::new();
    for trans in 0..4 {
        let (ta, tb) = (trans >> 1 == 1, trans & 1 == 1);
        all.push(MatmulShape::packed(1, 70, 33, 19, ta, tb));
        all.push(MatmulShape::packed(3, 17, 65, 40, ta, tb));
    }
    all.push(MatmulShape { bias: true, ..MatmulShape::packed(1, 128, 96, 64, false, true) });
    all.push(MatmulShape { accumulate: true, ..MatmulShape::packed(2, 33, 32, 130, true, false) });
    all
}

fn check(gpu: &wgformer::Gpu, mm: &MatmulF16) {
    for (i, shape) in shapes().iter().enumerate() {
        let mut rng = Rng::new(i as u64);
        let (na, nb, nc) = shape.extents();
        let (a, b) = (round_f16(&rng.vec_f32(na, 1.0)), round_f16(&rng.vec_f32(nb, 1.0)));
        let (bias, c0) = (rng.vec_f32(shape.n, 1.0), rng.vec_f32(nc, 1.0));
        let mut want = if shape.accumulate { c0.clone() } else { vec![0.0; nc] };
        matmul_forward(&mut want, &a, &b, shape.bias.then_some(&bias[..]), shape);
        let (ga, gb) = (gpu.upload_f16("a", &a).unwrap(), gpu.upload_f16("b", &b).unwrap());
        let (gbias, gc) = (gpu.upload("bias", &bias).unwrap(), gpu.upload("c", &c0).unwrap());
        let d = mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
        kernels::run(gpu, &[&d]).unwrap();
        // Exact f16 products summed in f32: only the order of the sums differs.
        let tag = format!("{} {shape:?}", mm.variant().name());
        assert_close(&tag, &gpu.read(&gc).unwrap(), &want, 1e-5 * (shape.k as f64).sqrt(), 1e-4);
        // C in f16 (mixed precision's half-precision products): the same sums, rounded once;
        // another order of the f32 sums can round to the neighbouring f16 (2^-10 relative).
        let c16 = round_f16(&c0);
        let mut want = if shape.accumulate { c16.clone() } else { vec![0.0; nc] };
        matmul_forward(&mut want, &a, &b, shape.bias.then_some(&bias[..]), shape);
        let gc = gpu.upload_f16("c", &c16).unwrap();
        let d = mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
        kernels::run(gpu, &[&d]).unwrap();
        let got = gpu.read(&gc).unwrap();
        assert_eq!(got, round_f16(&got), "{tag}: C is not f16");
        assert_close(&format!("{tag} f16 C"), &got, &round_f16(&want), 1e-5 * (shape.k as f64).sqrt(), 1e-3);
    }
}

#[test]
fn tiled_f16_products_match_the_reference() {
    for_each_gpu(|gpu| {
        if !gpu.caps.f16 {
            assert!(MatmulF16::with_variant(gpu, F16Variant::Tiled).is_err(), "no f16 here: an error");
            eprintln!("skipped on {}: no SHADER_F16", gpu.describe());
            return;
        }
        check(gpu, &MatmulF16::with_variant(gpu, F16Variant::Tiled).unwrap());
        // f32 operands are refused, not misread.
        let mm = MatmulF16::with_variant(gpu, F16Variant::Tiled).unwrap();
        let s = MatmulShape::packed(1, 4, 4, 4, false, false);
        let (a, c) = (gpu.zeros("a", 16).unwrap(), gpu.zeros("c", 16).unwrap());
        let err = mm.fwd(gpu, &c, &a, &a, None, &s).expect_err("f32 operands are an error");
        assert!(err.to_string().contains("F16"), "{err}");
    });
}

#[test]
fn cooperative_matrix_products_match_the_reference_where_there_are_matrix_units() {
    let required = common::test_settings().require_coop;
    for_each_gpu(|gpu| {
        if coop_subgroup(gpu).is_none() {
            let configs = gpu.caps.coop_matrix.len();
            assert!(
                !required,
                "WGFORMER_REQUIRE_COOP=1 but {} offers no usable configuration ({configs} listed)",
                gpu.describe()
            );
            assert!(MatmulF16::with_variant(gpu, F16Variant::Coop).is_err(), "no matrix units: an error");
            eprintln!(
                "skipped on {}: no 16x16x16 f16 -> f32 cooperative matrices ({configs} configurations)",
                gpu.describe()
            );
            return;
        }
        let mm = MatmulF16::with_variant(gpu, F16Variant::Coop).unwrap();
        assert_eq!(MatmulF16::new(gpu).unwrap().variant(), F16Variant::Coop, "matrix units are the default");
        check(gpu, &mm);
    });
}
