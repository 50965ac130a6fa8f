//! What every matmul kernel fuses (shaders/common/matmul_extras.wgsl) against the reference: a
//! residual added to the product (with and without bias and accumulation, batched), the row
//! sums of op(A) written by an extra column of workgroups, and each activation (its value
//! written beside the product, or its derivative applied), on every variant, tiled block and
//! the f16 kernels, every transpose, shapes that leave partial blocks and partial k; a dropout
//! before each (and alone), drawn as the dropout op draws on a data-parallel shard; and
//! split-K (the tiled kernel's partial products and their sum) with each of them.

use crate::common;
use common::{assert_close, for_each_gpu, Rng};
use wgformer::graph::{Activation, GeluKind, ProductDropout};
use wgformer::kernels::dropout::StepParams;
use wgformer::kernels::matmul::{MatmulTiles, MatmulVariant};
use wgformer::kernels::matmul_f16::{coop_subgroup, F16Variant, MatmulF16};
use wgformer::kernels::{self, Matmul, MatmulExtras, MatmulShape};
use wgformer::reference::cast::round_f16;
use wgformer::reference::graph::{activation_backward, activation_forward};
use wgformer::reference::matmul::{matmul_forward, row_sums_of_a};
use wgformer::{Gpu, Tensor};

/// (batch, M, N, K): odd, aligned (the vec4 and subgroup kernels), long k past several strips.
const SIZES: [(usize, usize, usize, usize); 5] =
    [(1, 37, 29, 23), (1, 70, 36, 20), (1, 5, 8, 301), (1, 130, 132, 64), (1, 1, 4, 9)];

/// The step a fused dropout draws in: a seed, and shard 1 (elements keyed from C's length on).
const STEP: StepParams = StepParams { seed: 0x5eed_1234, step: 3, shard: 1, _pad: 0 };
const DROP: ProductDropout = ProductDropout::new(0.3, 77);

const ACTIVATIONS: [Activation; 4] =
    [Activation::Gelu(GeluKind::Exact), Activation::Gelu(GeluKind::Tanh), Activation::Relu, Activation::Silu];

/// The shapes one kernel runs: every transpose of SIZES with the row sums, then with a residual
/// (alone, with bias, with accumulation); an odd and an aligned size untransposed and with both
/// transposed with an activation and with its derivative (each activation on some); batched
/// products with a residual and with activations.
fn shapes() -> Vec<MatmulShape> {
    let mut all = Vec::new();
    for (i, &(batch, m, n, k)) in SIZES.iter().enumerate() {
        for trans in 0..4 {
            let packed = MatmulShape::packed(batch, m, n, k, trans >> 1 == 1, trans & 1 == 1);
            all.push(MatmulShape { row_sums: true, ..packed });
            all.push(MatmulShape { residual: true, bias: i % 2 == 0, accumulate: trans == 3, ..packed });
            if (i == 0 || i == 3) && (trans == 0 || trans == 3) {
                let activation = Some(ACTIVATIONS[(i + trans) % 4]);
                all.push(MatmulShape { activation, bias: i == 3, ..packed });
                let activation = Some(ACTIVATIONS[(i + trans + 1) % 4]);
                all.push(MatmulShape { activation, activation_grad: true, ..packed });
                // The same three with a dropout, and a dropout alone.
                let dropout = Some(DROP);
                all.push(MatmulShape { residual: true, bias: i == 0, dropout, ..packed });
                let activation = Some(ACTIVATIONS[(i + trans + 2) % 4]);
                all.push(MatmulShape { activation, bias: i == 3, dropout, ..packed });
                all.push(MatmulShape { activation, activation_grad: true, dropout, ..packed });
                all.push(MatmulShape { dropout, ..packed });
            }
        }
    }
    let batched = MatmulShape::packed(2, 17, 12, 8, true, true);
    all.push(MatmulShape { activation: Some(Activation::Gelu(GeluKind::Tanh)), bias: true, ..batched });
    all.push(MatmulShape { activation: Some(Activation::Relu), activation_grad: true, ..batched });
    all.push(MatmulShape { residual: true, bias: true, ..MatmulShape::packed(3, 17, 12, 8, false, true) });
    all.push(MatmulShape { residual: true, row_sums: true, ..MatmulShape::packed(1, 65, 12, 40, true, false) });
    let dropout = Some(DROP);
    all.push(MatmulShape { residual: true, bias: true, dropout, ..MatmulShape::packed(3, 17, 12, 8, false, true) });
    all.push(MatmulShape { activation: Some(Activation::Relu), activation_grad: true, dropout, ..batched });
    all
}

/// `x` dropped as the dropout op drops a tensor of its length on STEP's shard.
fn dropped(shape: &MatmulShape, x: Vec<f32>) -> Vec<f32> {
    let Some(drop) = shape.dropout else { return x };
    let (threshold, scale) = kernels::dropout::dropout_constants(drop.p()).unwrap();
    let offset = STEP.shard as usize * x.len();
    let keep = |i: usize| wgformer::reference::dropout::keep(STEP.seed, drop.salt, (i + offset) as u32, threshold);
    x.iter().enumerate().map(|(i, &v)| if keep(i) { v * scale } else { 0.0 }).collect()
}

/// Operands of a shape, rounded to f16 where the kernel reads f16, and what the kernel must give.
struct Case {
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
    c0: Vec<f32>,
    residual: Vec<f32>,
    want: Vec<f32>,
    /// The row sums, or act(C).
    want_aux: Vec<f32>,
    /// C, the residual (or pre-activation) and the activation in f16 (mixed precision's forms).
    io16: bool,
}

impl Case {
    fn new(shape: &MatmulShape, seed: u64, f16: bool) -> Self {
        Self::with_io(shape, seed, f16, false)
    }

    /// A case whose C, residual (or pre-activation) and activation are f16 tensors where
    /// `io16`: the values they hold rounded, and what the kernel stores rounded once.
    fn with_io(shape: &MatmulShape, seed: u64, f16: bool, io16: bool) -> Self {
        let (na, nb, nc) = shape.extents();
        let mut rng = Rng::new(seed);
        let round = |v: Vec<f32>| if f16 { round_f16(&v) } else { v };
        let (a, b) = (round(rng.vec_f32(na, 1.0)), round(rng.vec_f32(nb, 1.0)));
        let round_io = |v: Vec<f32>| if io16 { round_f16(&v) } else { v };
        let bias = rng.vec_f32(shape.n, 1.0);
        let (c0, residual) = (round_io(rng.vec_f32(nc, 1.0)), round_io(rng.vec_f32(nc, 1.0)));
        let mut want = if shape.accumulate { c0.clone() } else { vec![0.0; nc] };
        matmul_forward(&mut want, &a, &b, shape.bias.then_some(&bias[..]), shape);
        let mut want_aux = if shape.row_sums { row_sums_of_a(&a, shape) } else { Vec::new() };
        match shape.activation {
            // `residual` is the pre-activation here: the derivative at it multiplies C.
            Some(act) if shape.activation_grad => want = activation_backward(act, &residual, &dropped(shape, want)),
            Some(act) => want_aux = dropped(shape, activation_forward(act, &want)),
            None => want = dropped(shape, want),
        }
        if shape.residual {
            want.iter_mut().zip(&residual).for_each(|(w, r)| *w += r);
        }
        let (want, want_aux) = (round_io(want), round_io(want_aux));
        Case { a, b, bias, c0, residual, want, want_aux, io16 }
    }
}

/// The GPU's C and row sums (or activation) for `case`, from `run` (a kernel's fwd_fused).
fn run_case(
    gpu: &Gpu,
    shape: &MatmulShape,
    case: &Case,
    f16: bool,
    run: impl Fn(&Tensor, &Tensor, &Tensor, Option<&Tensor>, MatmulExtras) -> Vec<kernels::Dispatch>,
) -> (Vec<f32>, Vec<f32>) {
    let up = |name, v: &[f32]| if f16 { gpu.upload_f16(name, v) } else { gpu.upload(name, v) }.unwrap();
    let (ga, gb) = (up("a", &case.a), up("b", &case.b));
    let io = |name, v: &[f32]| if case.io16 { gpu.upload_f16(name, v) } else { gpu.upload(name, v) }.unwrap();
    let (gbias, gc, gres) =
        (gpu.upload("bias", &case.bias).unwrap(), io("c", &case.c0), io("residual", &case.residual));
    let aux = io("aux", &vec![f32::NAN; case.want_aux.len().max(1)]);
    let (act, grad) = (shape.activation.is_some(), shape.activation_grad);
    let step = gpu.uniform("step", &STEP);
    let extras = MatmulExtras {
        residual: shape.residual.then_some(&gres),
        row_sums: shape.row_sums.then_some(&aux),
        activated: (act && !grad).then_some(&aux),
        pre_activation: grad.then_some(&gres),
        step: shape.dropout.is_some().then_some(&step),
    };
    let d = run(&gc, &ga, &gb, shape.bias.then_some(&gbias), extras);
    kernels::run(gpu, &d.iter().collect::<Vec<_>>()).unwrap();
    let got_aux = if case.want_aux.is_empty() { Vec::new() } else { gpu.read(&aux).unwrap() };
    (gpu.read(&gc).unwrap(), got_aux)
}

fn check(label: &str, shape: &MatmulShape, case: &Case, got: (Vec<f32>, Vec<f32>)) {
    let tol = 2e-6 * (shape.k as f64).sqrt().max(1.0) + 1e-6;
    // An f16 store may round to the neighbouring f16 (2^-10 relative) where the sums' order
    // differs.
    let rel = if case.io16 { 2e-3 } else { tol };
    let name = format!("{label} {shape:?}");
    assert_close(&name, &got.0, &case.want, tol, rel);
    assert_close(&format!("{name} row sums or activation"), &got.1, &case.want_aux, tol, rel);
}

/// Every f32 kernel: the variants, the tiled blocks, the adapter's own choice.
fn f32_kernels(gpu: &Gpu) -> Vec<(String, Matmul)> {
    let tiles = MatmulTiles::for_adapter(gpu);
    let mut all: Vec<(String, Matmul)> =
        [MatmulVariant::General, MatmulVariant::Vec4, MatmulVariant::Subgroup, MatmulVariant::Tiled]
            .into_iter()
            .map(|cap| (format!("{cap:?}"), Matmul::build(gpu, tiles, cap).unwrap()))
            .collect();
    for block in [(8, 8), (4, 8)] {
        all.push((format!("tiled {block:?}"), Matmul::tiled(gpu, block).unwrap()));
    }
    all.push(("default".into(), Matmul::new(gpu).unwrap()));
    all
}

#[test]
fn every_extra_on_every_f32_kernel() {
    let shapes = shapes();
    let cases: Vec<Case> = shapes.iter().enumerate().map(|(i, s)| Case::new(s, i as u64, false)).collect();
    for_each_gpu(|gpu| {
        for (label, mm) in f32_kernels(gpu) {
            for (shape, case) in shapes.iter().zip(&cases) {
                let got = run_case(gpu, shape, case, false, |c, a, b, bias, extras| {
                    vec![mm.fwd_fused(gpu, c, a, b, bias, extras, shape).unwrap()]
                });
                check(&format!("{label} ({:?})", mm.variant_for(shape)), shape, case, got);
            }
        }
    });
}

/// Every f16 kernel the adapter has: the tiled one where it has f16 shaders, the coop one where
/// it has matrix units.
fn f16_kernels(gpu: &Gpu) -> Vec<MatmulF16> {
    let mut variants = Vec::new();
    if gpu.caps.f16 {
        variants.push(F16Variant::Tiled);
    }
    if coop_subgroup(gpu).is_some() {
        variants.push(F16Variant::Coop);
    }
    variants.into_iter().map(|v| MatmulF16::with_variant(gpu, v).unwrap()).collect()
}

/// `cases` (of `shapes`) on every f16 kernel, labelled with `what`.
fn check_f16_kernels(gpu: &Gpu, shapes: &[MatmulShape], cases: &[Case], what: &str) {
    for mm in f16_kernels(gpu) {
        for (shape, case) in shapes.iter().zip(cases) {
            let got = run_case(gpu, shape, case, true, |c, a, b, bias, extras| {
                vec![mm.fwd_fused(gpu, c, a, b, bias, extras, shape).unwrap()]
            });
            check(&format!("{}{what}", mm.variant().name()), shape, case, got);
        }
    }
}

#[test]
fn every_extra_on_the_f16_kernels() {
    let shapes = shapes();
    let cases: Vec<Case> = shapes.iter().enumerate().map(|(i, s)| Case::new(s, 50 + i as u64, true)).collect();
    for_each_gpu(|gpu| check_f16_kernels(gpu, &shapes, &cases, ""));
}

/// The f16 kernels with C, the residual (or pre-activation) and the activation in f16, as
/// mixed precision's fused products hold them (row sums, bias gradients, stay f32).
#[test]
fn extras_in_f16_tensors_on_the_f16_kernels() {
    let shapes: Vec<MatmulShape> = shapes().into_iter().filter(|s| !s.row_sums).collect();
    let cases: Vec<Case> =
        shapes.iter().enumerate().map(|(i, s)| Case::with_io(s, 70 + i as u64, true, true)).collect();
    for_each_gpu(|gpu| check_f16_kernels(gpu, &shapes, &cases, " f16 tensors"));
}

/// Split-K against the reference: every transpose, a batch, bias and accumulation, each extra,
/// and split counts from 2 to 8 (K not a multiple of them; 8 of a short K rounds to fewer).
#[test]
fn split_k_matches_the_reference_for_every_split_count() {
    let mut shapes = Vec::new();
    for trans in 0..4 {
        let packed = MatmulShape::packed(1, 37, 29, 203, trans >> 1 == 1, trans & 1 == 1);
        shapes.push(MatmulShape { bias: true, accumulate: trans == 1, ..packed });
    }
    let long = MatmulShape::packed(1, 70, 36, 300, true, false);
    shapes.push(MatmulShape { row_sums: true, ..long });
    shapes.push(MatmulShape { residual: true, ..long });
    shapes.push(MatmulShape { activation: Some(Activation::Gelu(GeluKind::Exact)), bias: true, ..long });
    shapes.push(MatmulShape { activation: Some(Activation::Silu), activation_grad: true, ..long });
    shapes.push(MatmulShape { residual: true, bias: true, dropout: Some(DROP), ..long });
    shapes.push(MatmulShape { activation: Some(Activation::Relu), dropout: Some(DROP), ..long });
    shapes.push(MatmulShape { bias: true, accumulate: true, ..MatmulShape::packed(3, 17, 12, 100, false, true) });
    shapes.push(MatmulShape::packed(1, 9, 5, 20, false, false));
    let cases: Vec<Case> = shapes.iter().enumerate().map(|(i, s)| Case::new(s, 90 + i as u64, false)).collect();
    for_each_gpu(|gpu| {
        let mm = Matmul::tiled(gpu, (4, 4)).unwrap();
        for splits in [2, 3, 5, 8] {
            for (shape, case) in shapes.iter().zip(&cases) {
                let got = run_case(gpu, shape, case, false, |c, a, b, bias, extras| {
                    let d = mm.fwd_split(gpu, c, a, b, bias, extras, shape, Some(splits)).unwrap();
                    // Two dispatches (partials, their sum) wherever K holds two strips.
                    assert_eq!(d.len(), if shape.k > 16 { 2 } else { 1 }, "{splits} splits of {shape:?}");
                    d
                });
                check(&format!("tiled, {splits} splits"), shape, case, got);
            }
        }
    });
}

/// The rule splits a weight gradient's few blocks of C on the tiled kernel, not a product with
/// blocks enough, and nothing where another kernel runs the product (CPU adapters).
#[test]
fn the_split_rule_splits_weight_gradients_on_the_tiled_kernel_only() {
    for_each_gpu(|gpu| {
        let tiled = Matmul::tiled(gpu, (4, 4)).unwrap();
        let weight_gradient = MatmulShape::packed(1, 512, 512, 4096, true, false);
        assert_eq!(tiled.splits_for(gpu, &weight_gradient), 4);
        assert_eq!(tiled.splits_for(gpu, &MatmulShape::packed(1, 2048, 2048, 4096, false, false)), 1);
        assert_eq!(tiled.splits_for(gpu, &MatmulShape::packed(1, 512, 512, 256, true, false)), 1);
        let default = Matmul::new(gpu).unwrap();
        if default.variant_for(&weight_gradient) != MatmulVariant::Tiled {
            assert_eq!(default.splits_for(gpu, &weight_gradient), 1);
        }
    });
}

#[test]
fn extras_that_disagree_with_the_shape_are_errors() {
    for_each_gpu(|gpu| {
        let mm = Matmul::new(gpu).unwrap();
        let t = gpu.zeros("t", 64).unwrap();
        let short = gpu.zeros("short", 2).unwrap();
        let plain = MatmulShape::packed(1, 4, 4, 4, false, false);
        let with = |residual, row_sums| MatmulExtras { residual, row_sums, ..Default::default() };
        let cases = [
            (plain, with(Some(&t), None), "disagree"),
            (MatmulShape { row_sums: true, ..plain }, with(None, None), "disagree"),
            (MatmulShape { residual: true, ..plain }, with(Some(&short), None), "residual"),
            (MatmulShape { row_sums: true, ..plain }, with(None, Some(&short)), "row sums"),
            (
                MatmulShape { row_sums: true, ..MatmulShape::packed(2, 4, 4, 4, false, false) },
                with(None, Some(&t)),
                "batch",
            ),
        ];
        for (shape, extras, words) in cases {
            let err = mm.fwd_fused(gpu, &t, &t, &t, None, extras, &shape).expect_err("refused");
            assert!(err.to_string().contains(words), "{err}");
        }
        // One binding read and one written: a residual with an activation's derivative is refused.
        let both = MatmulShape { residual: true, activation: Some(Activation::Relu), activation_grad: true, ..plain };
        let extras = MatmulExtras { residual: Some(&t), pre_activation: Some(&t), ..Default::default() };
        let err = mm.fwd_fused(gpu, &t, &t, &t, None, extras, &both).expect_err("refused");
        assert!(err.to_string().contains("at once"), "{err}");
        // A dropout needs the step's uniform, a C of its own, packed, and a probability below 1.
        let step = gpu.uniform("step", &STEP);
        let with_step = MatmulExtras { step: Some(&step), ..Default::default() };
        let dropout = MatmulShape { dropout: Some(DROP), ..plain };
        let cases = [
            (dropout, MatmulExtras::default(), "uniform"),
            (plain, with_step, "uniform"),
            (MatmulShape { accumulate: true, ..dropout }, with_step, "packed"),
            (MatmulShape { ldc: 5, ..dropout }, with_step, "packed"),
            (MatmulShape { dropout: Some(ProductDropout::new(1.0, 0)), ..plain }, with_step, "probability"),
        ];
        for (shape, extras, words) in cases {
            let err = mm.fwd_fused(gpu, &t, &t, &t, None, extras, &shape).expect_err("refused");
            assert!(err.to_string().contains(words), "{shape:?}: {err}");
        }
    });
}
