//! wgformer in a browser: the training page's trainer (`train.rs`, for index.html) and the
//! kernel cases. Each case runs a kernel on the page's WebGPU adapter and compares it with the
//! CPU reference compiled into the same module. `run_cases` returns one JSON report;
//! kernels.html shows it and web/run.mjs checks it in headless Chromium.

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wgformer::gpu::GpuOptions;
use wgformer::kernels::attention::{AttentionShape, Variant};
use wgformer::kernels::matmul::{MatmulTiles, MatmulVariant};
use wgformer::kernels::{
    self, Attention, Dispatch, Elementwise, Gelu, GeluKind, LayerNorm, Matmul, MatmulShape, Softmax,
};
use wgformer::models::vit::{self, Preprocess, VitConfig};
use wgformer::models::Vit;
use wgformer::reference::cast as cast_ref;
use wgformer::reference::softmax as sm_ref;
use wgformer::reference::{elementwise as ew_ref, gelu as gelu_ref, layernorm as ln_ref, matmul as mm_ref};
use wgformer::util::rng::Rng;
use wgformer::{Gpu, Result, Tensor};

mod half_cases;
mod train;
mod translate;

/// The ViT reference case (PyTorch / Hugging Face), bundled into the module: config, weights,
/// its images and the logits PyTorch computed for them.
const VIT_DIR: &str = "tests/golden/vit-tiny-s0";
const VIT_CONFIG: &str = include_str!("../../tests/golden/vit-tiny-s0/config.json");
const VIT_MODEL: &[u8] = include_bytes!("../../tests/golden/vit-tiny-s0/model.safetensors");
const VIT_INPUTS: &[u8] = include_bytes!("../../tests/golden/vit-tiny-s0/inputs.safetensors");
const VIT_EXPECTED: &[u8] = include_bytes!("../../tests/golden/vit-tiny-s0/expected.safetensors");

#[derive(Serialize)]
struct Case {
    name: String,
    ok: bool,
    /// The largest |got - want| over the case's outputs, or why it could not run.
    detail: String,
    ms: f64,
}

#[derive(Serialize)]
struct Report {
    adapter: String,
    subgroups: bool,
    f16: bool,
    passed: usize,
    failed: usize,
    cases: Vec<Case>,
}

/// An output to compare: (name, GPU tensor, reference values, atol, rtol).
type Check<'a> = (&'a str, &'a wgformer::gpu::Tensor, &'a [f32], f64, f64);

/// Runs `dispatches`, reads the outputs back without blocking, compares them with the references.
async fn verify(gpu: &Gpu, dispatches: &[&Dispatch], checks: &[Check<'_>]) -> Result<(bool, String)> {
    kernels::run(gpu, dispatches)?;
    let mut ok = true;
    let mut details = Vec::new();
    for (name, tensor, want, atol, rtol) in checks {
        let got = gpu.read_async(tensor).await?;
        let mut worst = 0.0f64;
        for (&g, &w) in got.iter().zip(want.iter()) {
            let err = (g as f64 - w as f64).abs();
            if err.is_nan() || err > atol + rtol * (w as f64).abs() {
                ok = false;
            }
            worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
        }
        ok &= got.len() == want.len();
        details.push(format!("{name} {worst:.1e}"));
    }
    Ok((ok, details.join(", ")))
}

fn up(gpu: &Gpu, v: &[f32]) -> Result<wgformer::gpu::Tensor> {
    gpu.upload("input", v)
}

/// The step a fused dropout draws in (seed 9, one process).
const STEP: kernels::dropout::StepParams = kernels::dropout::StepParams { seed: 9, step: 1, shard: 0, _pad: 0 };

/// `x` after the dropout `s` fuses (if any), drawn as the dropout op draws in STEP.
fn dropped(s: &MatmulShape, x: Vec<f32>) -> Result<Vec<f32>> {
    let Some(drop) = s.dropout else { return Ok(x) };
    let (threshold, scale) = kernels::dropout::dropout_constants(drop.p())?;
    let keep = |i: usize| wgformer::reference::dropout::keep(STEP.seed, drop.salt, i as u32, threshold);
    Ok(x.iter().enumerate().map(|(i, &v)| if keep(i) { v * scale } else { 0.0 }).collect())
}

/// A product against the reference, with the residual, row sums, activation and dropout its
/// shape asks for (matmul_extras.wgsl), K in `splits` splits where the tiled kernel runs it.
async fn matmul_case(gpu: &Gpu, mm: &Matmul, s: &MatmulShape, seed: u64, splits: usize) -> Result<(bool, String)> {
    let (na, nb, nc) = s.extents();
    let mut rng = Rng::new(seed);
    let (a, b, residual) = (vec_f32(&mut rng, na), vec_f32(&mut rng, nb), vec_f32(&mut rng, nc));
    let mut want = vec![0.0f32; nc];
    mm_ref::matmul_forward(&mut want, &a, &b, None, s);
    let mut want_aux = if s.row_sums { mm_ref::row_sums_of_a(&a, s) } else { vec![0.0; 1] };
    match s.activation {
        // The residual's values stand for the pre-activation, whose derivative multiplies C.
        Some(act) if s.activation_grad => {
            want = wgformer::reference::graph::activation_backward(act, &residual, &dropped(s, want)?)
        }
        Some(act) => want_aux = dropped(s, wgformer::reference::graph::activation_forward(act, &want))?,
        None => want = dropped(s, want)?,
    }
    if s.residual {
        want.iter_mut().zip(&residual).for_each(|(w, r)| *w += r);
    }
    let (ga, gb, gc) = (up(gpu, &a)?, up(gpu, &b)?, gpu.zeros("c", nc)?);
    let (gres, gaux) = (up(gpu, &residual)?, gpu.zeros("aux", want_aux.len())?);
    let (act, grad) = (s.activation.is_some(), s.activation_grad);
    let step = gpu.uniform("step", &STEP);
    let extras = kernels::MatmulExtras {
        residual: s.residual.then_some(&gres),
        row_sums: s.row_sums.then_some(&gaux),
        activated: (act && !grad).then_some(&gaux),
        pre_activation: grad.then_some(&gres),
        step: s.dropout.is_some().then_some(&step),
    };
    let d = mm.fwd_split(gpu, &gc, &ga, &gb, None, extras, s, Some(splits))?;
    let tol = 2e-6 * (s.k as f64).sqrt();
    verify(
        gpu,
        &d.iter().collect::<Vec<_>>(),
        &[("c", &gc, &want, tol, tol), ("row sums or activation", &gaux, &want_aux, tol, tol)],
    )
    .await
}

/// The f16 matmul's tiled kernel (f16 operands from the cast kernel, f32 accumulation)
/// against the reference on the same f16-rounded operands.
async fn matmul_f16_case(gpu: &Gpu, s: &MatmulShape, seed: u64) -> Result<(bool, String)> {
    let (na, nb, nc) = s.extents();
    let mut rng = Rng::new(seed);
    let (a, b) = (vec_f32(&mut rng, na), vec_f32(&mut rng, nb));
    let mut want = vec![0.0f32; nc];
    mm_ref::matmul_forward(&mut want, &cast_ref::round_f16(&a), &cast_ref::round_f16(&b), None, s);
    let cast = kernels::cast::Cast::new(gpu)?;
    let mm = kernels::matmul_f16::MatmulF16::with_variant(gpu, kernels::matmul_f16::F16Variant::Tiled)?;
    let (ga, gb) = (up(gpu, &a)?, up(gpu, &b)?);
    let (a16, b16, gc) = (gpu.zeros_f16("a16", na)?, gpu.zeros_f16("b16", nb)?, gpu.zeros("c", nc)?);
    let ca = cast.to_f16(gpu, &a16, &ga, na)?;
    let cb = cast.to_f16(gpu, &b16, &gb, nb)?;
    let d = mm.fwd(gpu, &gc, &a16, &b16, None, s)?;
    let tol = 1e-5 * (s.k as f64).sqrt();
    verify(gpu, &[&ca, &cb, &d], &[("c", &gc, &want, tol, 1e-4)]).await
}

async fn layernorm_case(gpu: &Gpu, rows: usize, cols: usize) -> Result<(bool, String)> {
    let n = rows * cols;
    let mut rng = Rng::new(10);
    let x: Vec<f32> = vec_f32(&mut rng, n).iter().map(|v| 2.0 * v + 3.0).collect();
    let (gamma, beta, dy) = (vec_f32(&mut rng, cols), vec_f32(&mut rng, cols), vec_f32(&mut rng, n));
    let (mut y, mut mean, mut rstd) = (vec![0.0f32; n], vec![0.0f32; rows], vec![0.0f32; rows]);
    ln_ref::layernorm_forward(&mut y, &mut mean, &mut rstd, &x, &gamma, &beta, rows, cols, 1e-5);
    let (mut dx, mut dg, mut db) = (vec![0.0f32; n], vec![0.0f32; cols], vec![0.0f32; cols]);
    ln_ref::layernorm_backward(&mut dx, &mut dg, &mut db, &x, &dy, &mean, &rstd, &gamma, rows, cols);
    let ln = LayerNorm::new(gpu)?;
    let (gx, gg, gb, gdy) = (up(gpu, &x)?, up(gpu, &gamma)?, up(gpu, &beta)?, up(gpu, &dy)?);
    let z = |len| gpu.zeros("out", len);
    let (gy, gm, gr, gdx, gdg, gdb) = (z(n)?, z(rows)?, z(rows)?, z(n)?, z(cols)?, z(cols)?);
    let f = ln.fwd(gpu, &gy, &gm, &gr, &gx, &gg, &gb, rows, cols, 1e-5)?;
    let [b1, b2] = ln.bwd(gpu, &gdx, &gdg, &gdb, &gx, &gdy, &gm, &gr, &gg, rows, cols)?;
    let checks: [Check; 4] = [
        ("y", &gy, &y, 1e-5, 1e-4),
        ("dx", &gdx, &dx, 1e-5, 1e-4),
        ("dgamma", &gdg, &dg, 1e-4, 1e-4),
        ("dbeta", &gdb, &db, 1e-4, 1e-4),
    ];
    verify(gpu, &[&f, &b1, &b2], &checks).await
}

/// An elementwise activation, forward and backward, over 4099 values spread over [-6, 6):
/// `reference(x, dy, y, dx)` fills y and dx, `dispatch(y, x, dx, dy, n)` makes the kernels'.
async fn activation_case(
    gpu: &Gpu,
    reference: impl Fn(&[f32], &[f32], &mut [f32], &mut [f32]),
    dispatch: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor, usize) -> Result<(Dispatch, Dispatch)>,
) -> Result<(bool, String)> {
    let n = 4099;
    let mut rng = Rng::new(20);
    let (x, dy): (Vec<f32>, Vec<f32>) = (vec_f32(&mut rng, n).iter().map(|v| 6.0 * v).collect(), vec_f32(&mut rng, n));
    let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
    reference(&x, &dy, &mut y, &mut dx);
    let (gx, gdy, gy, gdx) = (up(gpu, &x)?, up(gpu, &dy)?, gpu.zeros("y", n)?, gpu.zeros("dx", n)?);
    let (f, b) = dispatch(&gy, &gx, &gdx, &gdy, n)?;
    verify(gpu, &[&f, &b], &[("y", &gy, &y, 1e-5, 1e-4), ("dx", &gdx, &dx, 1e-5, 1e-4)]).await
}

async fn gelu_case(gpu: &Gpu, kind: GeluKind) -> Result<(bool, String)> {
    let g = Gelu::new(gpu)?;
    let reference = |x: &[f32], dy: &[f32], y: &mut [f32], dx: &mut [f32]| {
        gelu_ref::gelu_forward(y, x, kind);
        gelu_ref::gelu_backward(dx, x, dy, kind);
    };
    activation_case(gpu, reference, |y, x, dx, dy, n| Ok((g.fwd(gpu, y, x, n, kind)?, g.bwd(gpu, dx, x, dy, n, kind)?)))
        .await
}

/// An elementwise chain's generated kernel (an embedding's scale, position add and dropout,
/// then activations and their gradients) against the reference interpretation of the chain.
async fn chain_case(gpu: &Gpu) -> Result<(bool, String)> {
    use wgformer::graph::chain::{Chain, ChainOp, ChainStep};
    use wgformer::graph::{Activation, ProductDropout};
    let (n, pos_len) = (4096, 64);
    let mut rng = Rng::new(23);
    let (x, pos, dy) = (vec_f32(&mut rng, n), vec_f32(&mut rng, pos_len), vec_f32(&mut rng, n));
    let step = |op, args: &[usize]| ChainStep { op, args: args.to_vec(), round: false };
    let steps = vec![
        step(ChainOp::Scale(2.0), &[0]),                            // v3
        step(ChainOp::Add, &[3, 1]),                                // v4: pos repeats
        step(ChainOp::Dropout(ProductDropout::new(0.25, 5)), &[4]), // v5
        step(ChainOp::Act(Activation::Gelu(GeluKind::Tanh)), &[5]), // v6
        step(ChainOp::ActGrad(Activation::Silu), &[6, 2]),          // v7
        step(ChainOp::Mul, &[7, 4]),                                // v8
        step(ChainOp::ActGrad(Activation::Relu), &[3, 8]),          // v9
    ];
    let chain = Chain { inputs: 3, steps, outputs: vec![5, 9] };
    let want = wgformer::reference::chain::chain_outputs(&chain, &[&x, &pos, &dy], n, STEP.seed);
    let (gx, gpos, gdy) = (up(gpu, &x)?, up(gpu, &pos)?, up(gpu, &dy)?);
    let (o0, o1) = (gpu.zeros("o0", n)?, gpu.zeros("o1", n)?);
    let step_uniform = gpu.uniform("step", &STEP);
    let chains = kernels::ChainKernels::default();
    let inputs = [(&gx, n), (&gpos, pos_len), (&gdy, n)];
    let d = chains.prepare(gpu, &chain, &inputs, &[&o0, &o1], n, &step_uniform)?;
    verify(gpu, &[&d], &[("dropped", &o0, &want[0], 1e-5, 1e-5), ("gradient", &o1, &want[1], 1e-5, 1e-5)]).await
}

async fn silu_case(gpu: &Gpu) -> Result<(bool, String)> {
    let e = Elementwise::new(gpu)?;
    let reference = |x: &[f32], dy: &[f32], y: &mut [f32], dx: &mut [f32]| {
        ew_ref::silu_forward(y, x);
        ew_ref::silu_backward(dx, x, dy);
    };
    activation_case(gpu, reference, |y, x, dx, dy, n| Ok((e.silu_fwd(gpu, y, x, n)?, e.silu_bwd(gpu, dx, x, dy, n)?)))
        .await
}

async fn softmax_case(gpu: &Gpu, rows: usize, cols: usize) -> Result<(bool, String)> {
    let n = rows * cols;
    let mut rng = Rng::new(30);
    let (x, dy): (Vec<f32>, Vec<f32>) = (vec_f32(&mut rng, n).iter().map(|v| 60.0 * v).collect(), vec_f32(&mut rng, n));
    let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
    sm_ref::softmax_forward(&mut y, &x, rows, cols);
    sm_ref::softmax_backward(&mut dx, &y, &dy, rows, cols);
    let sm = Softmax::new(gpu)?;
    let (gx, gdy, gy, gdx) = (up(gpu, &x)?, up(gpu, &dy)?, gpu.zeros("y", n)?, gpu.zeros("dx", n)?);
    let f = sm.fwd(gpu, &gy, &gx, rows, cols)?;
    let b = sm.bwd(gpu, &gdx, &gy, &gdy, rows, cols)?;
    verify(gpu, &[&f, &b], &[("y", &gy, &y, 1e-6, 1e-4), ("dx", &gdx, &dx, 1e-6, 1e-4)]).await
}

/// ViT inference on the reference case's images against PyTorch's logits (the case's
/// tolerance: 1e-4 of the logits' scale).
async fn vit_case(gpu: &Gpu) -> Result<(bool, String)> {
    use std::path::Path;
    let tensor = |bytes: &[u8], file: &str, name: &str| -> Result<Vec<f32>> {
        let path = Path::new(VIT_DIR).join(file);
        let all = wgformer::util::io::parse_safetensors(bytes, &path)?;
        let t = all.iter().find(|t| t.name == name).ok_or_else(|| wgformer::Error::Format {
            path: path.display().to_string(),
            msg: format!("no tensor {name}"),
        })?;
        Ok(t.f32(&path)?.to_vec())
    };
    let cfg = VitConfig::from_json(VIT_CONFIG)?;
    let pixels = tensor(VIT_INPUTS, "inputs.safetensors", "pixel_values")?;
    let want = tensor(VIT_EXPECTED, "expected.safetensors", "logits")?;
    let batch = pixels.len() / (cfg.num_channels * cfg.image_size * cfg.image_size);
    let graph = vit::build(&cfg, batch, false)?.graph;
    let model_path = Path::new(VIT_DIR).join("model.safetensors");
    let params = wgformer::runtime::checkpoint::params_from(
        wgformer::util::io::parse_safetensors(VIT_MODEL, &model_path)?,
        &model_path,
        &graph,
        &vit::stored_shape(&cfg),
    )?;
    let channels = cfg.num_channels;
    let model = Vit::with_params(gpu, cfg, Preprocess::default_for(channels), batch, &params)?;
    let got: Vec<f32> = model.logits_async(gpu, &pixels).await?.concat();
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs())) as f64;
    let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs() as f64).fold(0.0, f64::max);
    let ok = got.len() == want.len() && worst <= 1e-4 * scale;
    Ok((ok, format!("logits of {batch} images vs PyTorch {worst:.1e} (limit {:.1e})", 1e-4 * scale)))
}

fn vec_f32(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect()
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Runs every case on the browser's WebGPU adapter; returns the JSON report.
#[wasm_bindgen]
pub async fn run_cases() -> String {
    match run_all().await {
        Ok(report) => serde_json::to_string(&report).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    }
}

async fn run_all() -> Result<Report> {
    let gpu = Gpu::with_options_async(&GpuOptions::default()).await?;
    let mut cases = Vec::new();
    let mut record = |name: String, start: f64, result: Result<(bool, String)>| {
        let (ok, detail) = result.unwrap_or_else(|e| (false, format!("error: {e}")));
        cases.push(Case { name, ok, detail, ms: now_ms() - start });
    };

    // Matmul: every variant the adapter has (those it lacks fall back), every transpose, edges
    // that are not tile multiples, and an aligned shape for the vec4 paths.
    let tiles = MatmulTiles::for_adapter(&gpu);
    for (label, variant) in [
        ("general", MatmulVariant::General),
        ("vec4", MatmulVariant::Vec4),
        ("subgroup", MatmulVariant::Subgroup),
        ("tiled", MatmulVariant::Tiled),
    ] {
        let mm = match Matmul::build(&gpu, tiles, variant) {
            Ok(mm) => mm,
            Err(e) => {
                record(format!("matmul {label}"), now_ms(), Err(e));
                continue;
            }
        };
        let mut shapes: Vec<MatmulShape> = [(false, false), (false, true), (true, false), (true, true)]
            .iter()
            .map(|&(ta, tb)| MatmulShape::packed(2, 37, 29, 23, ta, tb))
            .collect();
        shapes.push(MatmulShape::packed(1, 64, 96, 128, false, true));
        // A residual added and op(A)'s row sums (a bias gradient), odd and aligned; GELU written
        // beside the product, and its derivative applied; the residual and GELU' after a dropout.
        for (m, n, k) in [(37, 29, 23), (64, 96, 128)] {
            let packed = MatmulShape::packed(1, m, n, k, true, false);
            shapes.push(MatmulShape { residual: true, row_sums: true, ..packed });
            let activation = Some(wgformer::graph::Activation::Gelu(GeluKind::Exact));
            shapes.push(MatmulShape { activation, ..MatmulShape::packed(1, m, n, k, false, true) });
            shapes.push(MatmulShape { activation, activation_grad: true, ..packed });
            let dropout = Some(wgformer::graph::ProductDropout::new(0.25, 3));
            shapes.push(MatmulShape { residual: true, dropout, ..packed });
            shapes.push(MatmulShape { activation, activation_grad: true, dropout, ..packed });
        }
        for (i, s) in shapes.iter().enumerate() {
            let start = now_ms();
            let name = format!(
                "matmul {label} ({:?}) {}x{}x{}x{} ta {} tb {}{}",
                mm.variant_for(s),
                s.batch,
                s.m,
                s.n,
                s.k,
                s.trans_a,
                s.trans_b,
                match (s.residual, s.activation, s.activation_grad, s.dropout.is_some()) {
                    (true, _, _, true) => " + residual after dropout",
                    (true, _, _, false) => " + residual, row sums",
                    (_, Some(_), false, _) => " + GELU",
                    (_, Some(_), true, true) => " * GELU' after dropout",
                    (_, Some(_), true, false) => " * GELU'",
                    _ => "",
                }
            );
            record(name, start, matmul_case(&gpu, &mm, s, i as u64, 1).await);
        }
        // Split-K: partial products over 3 splits of K, then their sum (tiled kernel only).
        if variant == MatmulVariant::Tiled {
            let s = MatmulShape { bias: false, row_sums: true, ..MatmulShape::packed(1, 37, 29, 203, true, false) };
            let start = now_ms();
            let name = "matmul tiled split-K, 3 splits, 1x37x29x203 ta true tb false + row sums".to_string();
            record(name, start, matmul_case(&gpu, &mm, &s, 77, 3).await);
        }
    }
    // f16 operands (mixed precision), where the browser's adapter has shader-f16.
    if gpu.caps.f16 {
        for (i, &(ta, tb)) in [(false, false), (true, true)].iter().enumerate() {
            let s = MatmulShape::packed(2, 37, 29, 23, ta, tb);
            let start = now_ms();
            let name = format!("matmul f16 operands (tiled) 2x37x29x23 ta {ta} tb {tb}");
            record(name, start, matmul_f16_case(&gpu, &s, 40 + i as u64).await);
        }
    }
    for (rows, cols) in [(7, 33), (5, 1000)] {
        let start = now_ms();
        record(format!("layernorm fwd+bwd {rows}x{cols}"), start, layernorm_case(&gpu, rows, cols).await);
        let start = now_ms();
        record(format!("softmax fwd+bwd {rows}x{cols}"), start, softmax_case(&gpu, rows, cols).await);
    }
    for kind in [GeluKind::Exact, GeluKind::Tanh] {
        let start = now_ms();
        record(format!("gelu {kind:?} fwd+bwd 4099"), start, gelu_case(&gpu, kind).await);
    }
    let start = now_ms();
    record("silu fwd+bwd 4099".into(), start, silu_case(&gpu).await);
    let start = now_ms();
    record("elementwise chain 4096: scale, add, dropout, GELU, gradients".into(), start, chain_case(&gpu).await);
    // Mixed precision's f16 forms, where the browser's adapter has shader-f16.
    if gpu.caps.f16 {
        let start = now_ms();
        record("gelu fwd+bwd 4099, every operand f16".into(), start, half_cases::gelu(&gpu, GeluKind::Exact).await);
        let start = now_ms();
        let name = "cross-entropy 9x1000, f16 logits and scaled f16 gradient".into();
        record(name, start, half_cases::cross_entropy(&gpu).await);
    }
    for wanted in [Variant::Rows, Variant::Subgroup, Variant::Tiled] {
        let att = match Attention::with_variant(&gpu, wanted) {
            Ok(a) => a,
            Err(e) => {
                record(format!("attention {}", wanted.name()), now_ms(), Err(e));
                continue;
            }
        };
        // Without fixed-size subgroups the subgroup variant is the rows one, run already.
        if att.variant() != wanted {
            continue;
        }
        let variant = wanted.name();
        let shape = |tq, tk, head_dim, causal| AttentionShape { batch: 2, heads: 2, tq, tk, head_dim, causal };
        let lens_77: &[u32] = &[77, 30];
        let lens_19: &[u32] = &[19, 5];
        for (s, lens) in [
            (shape(77, 77, 64, false), Some(lens_77)),
            (shape(7, 19, 32, false), Some(lens_19)),
            (shape(33, 33, 16, true), None),
        ] {
            let start = now_ms();
            let name = format!("attention {variant} fwd+bwd T{}x{} D{} causal {}", s.tq, s.tk, s.head_dim, s.causal);
            record(name, start, half_cases::attention(&gpu, &att, &s, lens, false).await);
            if gpu.caps.f16 {
                let start = now_ms();
                let name =
                    format!("attention {variant} fwd+bwd T{}x{} D{}, q/k/v/o/gradients f16", s.tq, s.tk, s.head_dim);
                record(name, start, half_cases::attention(&gpu, &att, &s, lens, true).await);
            }
        }
    }
    let start = now_ms();
    record("vit-tiny inference (reference case)".into(), start, vit_case(&gpu).await);
    let passed = cases.iter().filter(|c| c.ok).count();
    Ok(Report {
        adapter: gpu.describe(),
        subgroups: gpu.caps.subgroups,
        f16: gpu.caps.f16,
        passed,
        failed: cases.len() - passed,
        cases,
    })
}
