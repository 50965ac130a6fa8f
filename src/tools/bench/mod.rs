//! Kernel timing for `wgformer bench` and the criterion benches: median of several runs after
//! a warm-up, timed with GPU timestamp queries where the adapter has them, else wall clock
//! around a blocking submit.

pub mod attention;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::AttentionPolicy;
pub use crate::kernels::Timer;
use crate::kernels::{Dispatch, Elementwise, Gelu, GeluKind, LayerNorm, Matmul, MatmulShape, Softmax};
use serde::Serialize;
use std::time::Instant;

/// One timed case. `gflops` for compute-bound kernels, `gbps` for memory-bound ones.
#[derive(Serialize, Debug, Clone)]
pub struct BenchResult {
    pub kernel: String,
    pub shape: String,
    pub dtype: String,
    pub median_ms: f64,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    /// GPU memory the case needs (attention: planned activations, inputs included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<f64>,
    /// Why a case was not timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The kernel families `run_kernels` knows.
pub const KERNELS: &[&str] = &["matmul", "layernorm", "gelu", "softmax", "add", "dispatch"];
/// Families run only when named (they take minutes on a software adapter).
pub const SLOW_KERNELS: &[&str] = &["attention", "matmul_f16", "cast_f16"];

/// Dispatches in the `dispatch` case: its median_ms is per dispatch.
const OVERHEAD_DISPATCHES: usize = 1000;

/// One case to time: its dispatches and the work they do.
pub struct Case {
    pub kernel: String,
    pub shape: String,
    pub dispatches: Vec<Dispatch>,
    pub flops: Option<f64>,
    pub bytes: Option<f64>,
    /// How the case runs (the matmul variant and tiles).
    pub note: Option<String>,
}

/// The standard matmul shapes (MxNxK): square, and the ViT-B/16 layers for 8 images of 197
/// tokens; 4096^3 too on GPUs (it takes seconds per run on a CPU adapter).
pub fn matmul_shapes(gpu: &Gpu) -> Vec<(String, MatmulShape)> {
    let t = 8 * 197;
    let square = |n| (format!("{n}x{n}x{n}"), MatmulShape::packed(1, n, n, n, false, false));
    // x W^T as in a Linear layer: qkv projection, MLP fc1, MLP fc2.
    let vit = |n, k| (format!("{t}x{n}x{k}"), MatmulShape::packed(1, t, n, k, false, true));
    let mut shapes = vec![square(1024), square(2048), vit(2304, 768), vit(3072, 768), vit(768, 3072)];
    if !gpu.is_cpu() {
        shapes.insert(2, square(4096));
    }
    shapes
}

/// Plain products (no transposes, batch 1) of the given (M, N, K), labelled MxNxK.
pub fn custom_matmul_shapes(dims: &[[usize; 3]]) -> Vec<(String, MatmulShape)> {
    dims.iter().map(|&[m, n, k]| (format!("{m}x{n}x{k}"), MatmulShape::packed(1, m, n, k, false, false))).collect()
}

/// The matmul cases for `shapes`, with zero operands (timing does not depend on values, and no
/// host copy is made, so a shape over the adapter's buffer limits is refused before any
/// allocation).
pub fn matmul_cases(gpu: &Gpu, shapes: &[(String, MatmulShape)]) -> Result<Vec<Case>> {
    let mm = Matmul::new(gpu)?;
    let mut out = Vec::new();
    for (label, s) in shapes {
        let (na, nb, nc) = s.extents();
        let (a, b, c) = (gpu.zeros("a", na)?, gpu.zeros("b", nb)?, gpu.zeros("c", nc)?);
        out.push(Case {
            kernel: "matmul".into(),
            shape: label.clone(),
            dispatches: vec![mm.fwd(gpu, &c, &a, &b, None, s)?],
            flops: Some(s.flops()),
            bytes: None,
            note: Some(mm.describe(s)),
        });
    }
    Ok(out)
}

/// The f16 matmul cases (f16 operands, f32 output; `kernels::MatmulF16`, matrix units where
/// the device has them) for `shapes`, with zero operands. No cases where the adapter has no
/// f16 shaders.
pub fn matmul_f16_cases(gpu: &Gpu, shapes: &[(String, MatmulShape)]) -> Result<Vec<Case>> {
    if !gpu.caps.f16 {
        return Ok(Vec::new());
    }
    let mm = crate::kernels::MatmulF16::new(gpu)?;
    let mut out = Vec::new();
    for (label, s) in shapes {
        let (na, nb, nc) = s.extents();
        let zeros = vec![0.0; na.max(nb)];
        let (a, b) = (gpu.upload_f16("a", &zeros[..na])?, gpu.upload_f16("b", &zeros[..nb])?);
        let c = gpu.zeros("c", nc)?;
        out.push(Case {
            kernel: "matmul_f16".into(),
            shape: label.clone(),
            dispatches: vec![mm.fwd(gpu, &c, &a, &b, None, s)?],
            flops: Some(s.flops()),
            bytes: None,
            note: Some(format!("{} kernel, f16 operands, f32 accumulation", mm.variant().name())),
        });
    }
    Ok(out)
}

/// Builds the cases for `kernel` with random-free (constant) data: timing does not depend on values.
pub fn cases(gpu: &Gpu, kernel: &str) -> Result<Vec<Case>> {
    let (rows, cols) = (8 * 197, 768);
    let act_shape = format!("{rows}x{cols}");
    let n = rows * cols;
    let fill = |name: &str, len: usize| gpu.upload(name, &vec![0.5f32; len]);
    let f32b = 4.0;
    Ok(match kernel {
        "matmul" => matmul_cases(gpu, &matmul_shapes(gpu))?,
        "matmul_f16" => matmul_f16_cases(gpu, &matmul_shapes(gpu))?,
        // f32 -> f16 of an activation (mixed precision casts every product's operands).
        "cast_f16" if gpu.caps.f16 => {
            let cast = crate::kernels::cast::Cast::new(gpu)?;
            let (x, y) = (fill("x", n)?, gpu.zeros_f16("y", n)?);
            vec![Case {
                kernel: "cast_f16".into(),
                shape: act_shape.clone(),
                dispatches: vec![cast.to_f16(gpu, &y, &x, n)?],
                flops: None,
                bytes: Some(n as f64 * (f32b + 2.0)),
                note: None,
            }]
        }
        "cast_f16" => Vec::new(),
        "layernorm" => {
            let ln = LayerNorm::new(gpu)?;
            let (x, dy, g, b) = (fill("x", n)?, fill("dy", n)?, fill("gamma", cols)?, fill("beta", cols)?);
            let (y, dx, mean, rstd, dg, db) = (
                gpu.zeros("y", n)?,
                gpu.zeros("dx", n)?,
                gpu.zeros("mean", rows)?,
                gpu.zeros("rstd", rows)?,
                gpu.zeros("dg", cols)?,
                gpu.zeros("db", cols)?,
            );
            let fwd = ln.fwd(gpu, &y, &mean, &rstd, &x, &g, &b, rows, cols, 1e-5)?;
            let bwd = ln.bwd(gpu, &dx, &dg, &db, &x, &dy, &mean, &rstd, &g, rows, cols)?;
            vec![
                Case {
                    kernel: "layernorm_fwd".into(),
                    shape: act_shape.clone(),
                    dispatches: vec![fwd],
                    flops: None,
                    bytes: Some(2.0 * n as f64 * f32b),
                    note: None,
                },
                // dx reads x and dy and writes dx; dgamma/dbeta read x and dy again.
                Case {
                    kernel: "layernorm_bwd".into(),
                    shape: act_shape,
                    dispatches: bwd.to_vec(),
                    flops: None,
                    bytes: Some(5.0 * n as f64 * f32b),
                    note: None,
                },
            ]
        }
        "gelu" => {
            let ge = Gelu::new(gpu)?;
            let (x, dout, y, dx) = (fill("x", n)?, fill("dout", n)?, gpu.zeros("y", n)?, gpu.zeros("dx", n)?);
            vec![
                Case {
                    kernel: "gelu_fwd".into(),
                    shape: act_shape.clone(),
                    dispatches: vec![ge.fwd(gpu, &y, &x, n, GeluKind::Exact)?],
                    flops: None,
                    bytes: Some(2.0 * n as f64 * f32b),
                    note: None,
                },
                Case {
                    kernel: "gelu_bwd".into(),
                    shape: act_shape,
                    dispatches: vec![ge.bwd(gpu, &dx, &x, &dout, n, GeluKind::Exact)?],
                    flops: None,
                    bytes: Some(3.0 * n as f64 * f32b),
                    note: None,
                },
            ]
        }
        "softmax" => {
            let sm = Softmax::new(gpu)?;
            let (x, dy, y, dx) = (fill("x", n)?, fill("dy", n)?, gpu.zeros("y", n)?, gpu.zeros("dx", n)?);
            vec![
                Case {
                    kernel: "softmax_fwd".into(),
                    shape: act_shape.clone(),
                    dispatches: vec![sm.fwd(gpu, &y, &x, rows, cols)?],
                    flops: None,
                    bytes: Some(2.0 * n as f64 * f32b),
                    note: None,
                },
                Case {
                    kernel: "softmax_bwd".into(),
                    shape: act_shape,
                    dispatches: vec![sm.bwd(gpu, &dx, &y, &dy, rows, cols)?],
                    flops: None,
                    bytes: Some(3.0 * n as f64 * f32b),
                    note: None,
                },
            ]
        }
        "add" => {
            let ew = Elementwise::new(gpu)?;
            let (a, b, out) = (fill("a", n)?, fill("b", n)?, gpu.zeros("out", n)?);
            vec![Case {
                kernel: "add_fwd".into(),
                shape: act_shape,
                dispatches: vec![ew.add_fwd(gpu, &out, &a, &b, n)?],
                flops: None,
                bytes: Some(3.0 * n as f64 * f32b),
                note: None,
            }]
        }
        "dispatch" => {
            // The fixed cost of a dispatch inside one pass: 1000 one-element adds.
            let ew = Elementwise::new(gpu)?;
            let (a, out) = (fill("a", 1)?, gpu.zeros("out", 1)?);
            let d = ew.add_fwd(gpu, &out, &a, &a, 1)?;
            vec![Case {
                kernel: "dispatch_overhead".into(),
                shape: format!("{OVERHEAD_DISPATCHES}x1"),
                dispatches: vec![d; OVERHEAD_DISPATCHES],
                flops: None,
                bytes: None,
                note: None,
            }]
        }
        other => {
            return Err(Error::InvalidSetting {
                name: "bench kernel",
                value: other.to_string(),
                expected:
                    "one of matmul, matmul_f16, cast_f16, layernorm, gelu, softmax, add, dispatch, attention, step",
            })
        }
    })
}

/// Times every case of `kernels` (all when empty; `matmul` picks the matmul shapes, the standard
/// ones when empty, and `attention` the shapes attention runs at); `progress` gets one line per
/// case.
pub fn run_kernels(
    gpu: &Gpu,
    kernels: &[String],
    runs: usize,
    matmul: &[(String, MatmulShape)],
    attention: &attention::AttentionCases,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>> {
    let names: Vec<String> =
        if kernels.is_empty() { KERNELS.iter().map(|s| s.to_string()).collect() } else { kernels.to_vec() };
    let timer = Timer::new(gpu);
    progress(&format!("timing with {}, median of {runs} runs after a warm-up", timer.method()));
    let mut results = Vec::new();
    for name in &names {
        if name == "attention" {
            results.extend(attention::run(gpu, runs, attention, progress)?);
            continue;
        }
        let cases = match name.as_str() {
            "matmul" if !matmul.is_empty() => matmul_cases(gpu, matmul)?,
            "matmul_f16" if !gpu.caps.f16 => {
                progress(&format!("matmul_f16: not run, {} has no f16 shaders", gpu.describe()));
                Vec::new()
            }
            "matmul_f16" if !matmul.is_empty() => matmul_f16_cases(gpu, matmul)?,
            _ => cases(gpu, name)?,
        };
        for case in cases {
            let mut ms = timer.median_ms(gpu, &case.dispatches, runs)?;
            if case.kernel == "dispatch_overhead" {
                ms /= case.dispatches.len() as f64;
            }
            let secs = ms / 1e3;
            let dtype = if case.kernel.ends_with("_f16") { "f16" } else { "f32" };
            let r = BenchResult {
                kernel: case.kernel,
                shape: case.shape,
                // The operands' or outputs' type: f16 for the f16 matmul and the cast.
                dtype: dtype.into(),
                median_ms: ms,
                gflops: case.flops.map(|f| f / secs / 1e9),
                gbps: case.bytes.map(|b| b / secs / 1e9),
                memory_mib: None,
                note: case.note,
            };
            progress(&row(&r));
            results.push(r);
        }
    }
    Ok(results)
}

/// A training step to time: the graph, its loss, one batch of inputs and initial parameters.
struct StepCase {
    graph: crate::graph::Graph,
    loss: crate::graph::TensorId,
    f32_inputs: Vec<(crate::graph::TensorId, Vec<f32>)>,
    u32_inputs: Vec<(crate::graph::TensorId, Vec<u32>)>,
    params: Vec<(crate::graph::TensorId, Vec<f32>)>,
    /// What one step processes, for the rate: (count, unit).
    items: (usize, &'static str),
}

/// A ViT preset's step on random images.
fn vit_step(model: &str, batch: usize, attention: AttentionPolicy) -> Result<Option<StepCase>> {
    use crate::models::vit;
    let Some(cfg) = vit::VitConfig::preset(model) else { return Ok(None) };
    let v = vit::build_with(&cfg, batch, true, attention)?;
    let mut rng = crate::util::rng::Rng::new(1);
    let pixels = (0..v.graph.desc(v.pixel_values).len()).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect();
    let labels = (0..batch).map(|_| rng.below(cfg.labels()) as u32).collect();
    let params = vit::init_params(&v.graph, 0);
    Ok(Some(StepCase {
        graph: v.graph,
        loss: v.loss,
        f32_inputs: vec![(v.pixel_values, pixels)],
        u32_inputs: vec![(v.labels, labels)],
        params,
        items: (batch, "images"),
    }))
}

/// Tokens per side of a Transformer step's sentence pairs.
const STEP_TOKENS: usize = 32;

/// A Transformer preset's step (transformer-small, transformer-base) on `batch` random pairs
/// of 32 tokens, with a vocabulary of 8000 (small) or 37000 (base, as in the paper).
fn transformer_step(model: &str, batch: usize, attention: AttentionPolicy) -> Result<Option<StepCase>> {
    use crate::models::transformer::{build_with, init_params};
    let Some(cfg) = transformer_preset(model) else { return Ok(None) };
    let t = build_with(&cfg, batch, STEP_TOKENS, STEP_TOKENS, true, attention)?;
    let mut rng = crate::util::rng::Rng::new(1);
    let mut ids = |n: usize| (0..n).map(|_| 4 + rng.below(cfg.vocab_size - 4) as u32).collect::<Vec<u32>>();
    let n = batch * STEP_TOKENS;
    let u32_inputs =
        vec![(t.src, ids(n)), (t.tgt_in, ids(n)), (t.tgt_out, ids(n)), (t.src_lens, vec![STEP_TOKENS as u32; batch])];
    let f32_inputs = t.constants();
    let params = init_params(&t.graph, 0);
    Ok(Some(StepCase { graph: t.graph, loss: t.loss, f32_inputs, u32_inputs, params, items: (n, "target tokens") }))
}

/// The Transformer presets of `bench step`.
fn transformer_preset(model: &str) -> Option<crate::models::transformer::TransformerConfig> {
    use crate::models::transformer::TransformerConfig;
    match model {
        "transformer-small" => Some(TransformerConfig::small(8000)),
        "transformer-base" => Some(TransformerConfig::base(37000)),
        _ => None,
    }
}

/// Builds the graph of a preset's step alone (the attention policy's probe).
fn step_graph(model: &str, batch: usize, attention: AttentionPolicy) -> Result<()> {
    if let Some(cfg) = crate::models::vit::VitConfig::preset(model) {
        crate::models::vit::build_with(&cfg, batch, true, attention)?;
    } else if let Some(cfg) = transformer_preset(model) {
        crate::models::transformer::build_with(&cfg, batch, STEP_TOKENS, STEP_TOKENS, true, attention)?;
    }
    Ok(())
}

/// Times whole training steps of a model preset (vit-tiny, vit-small, vit-base, vit-cifar,
/// transformer-small, transformer-base): forward, backward, gradient clipping and Adam in one
/// submit, wall clock including the batch upload and the loss readback, median of `runs` after
/// one warm-up step. GFLOP/s counts the matmuls.
pub fn run_step(
    gpu: &Gpu,
    model: &str,
    batch: usize,
    runs: usize,
    precision: crate::graph::Precision,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult> {
    use crate::engine::exec::{Executor, HostData, StepOptions};
    if batch == 0 {
        return Err(Error::InvalidSetting { name: "--batch", value: "0".into(), expected: "at least 1" });
    }
    let attention = crate::engine::attention_choice::policy(gpu, |p| step_graph(model, batch, p))?;
    progress(&format!("attention: {}", crate::engine::attention_choice::describe_policy(&attention)));
    let case = match vit_step(model, batch, attention.clone())? {
        Some(c) => c,
        None => transformer_step(model, batch, attention.clone())?.ok_or_else(|| Error::InvalidSetting {
            name: "--model",
            value: model.to_string(),
            expected: "vit-tiny, vit-small, vit-base, vit-cifar, transformer-small or transformer-base",
        })?,
    };
    let mut graph = case.graph;
    graph.precision = precision;
    let graph_precision = precision;
    // Forward attention calls by path: the fused op, or a softmax (only composed attention has one).
    let count = |want: fn(&crate::graph::Op) -> bool| graph.nodes.iter().filter(|n| want(&n.op)).count();
    let fused_calls = count(|op| matches!(op, crate::graph::Op::Attention { .. }));
    let composed_calls = count(|op| matches!(op, crate::graph::Op::Softmax));
    let grads = crate::engine::autodiff::backward(&mut graph, case.loss)?;
    let flops = matmul_flops(&graph);
    progress(&format!("{model} batch {batch}: {} nodes, building the executor", graph.nodes.len()));
    let exec = Executor::new(gpu, graph, Some(case.loss), Some(&grads))?;
    progress(&format!("  {:.0} ms measuring kernel choices", crate::kernels::tuning::spent_ms()));
    for (p, values) in &case.params {
        exec.set(gpu, *p, HostData::F32(values))?;
    }
    let mut feed: Vec<(crate::graph::TensorId, HostData)> =
        case.f32_inputs.iter().map(|(t, v)| (*t, HostData::F32(v))).collect();
    feed.extend(case.u32_inputs.iter().map(|(t, v)| (*t, HostData::U32(v))));
    let adam = crate::engine::optim::AdamConfig { weight_decay: 0.05, ..Default::default() };
    let (mut times, mut host) = (Vec::new(), Vec::new());
    for step in 0..=runs.max(1) {
        let opts = StepOptions {
            adam: Some(adam.at(step as u32 + 1, 1e-4)),
            seed: step as u32,
            clip: Some(1.0),
            loss_scale: (graph_precision == crate::graph::Precision::F16).then_some(1024.0),
            loss_weight: None,
        };
        let start = Instant::now();
        let loss = exec.step(gpu, &feed, &opts)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let host_ms = exec.last_host_ms();
        let warm = if step == 0 { " (warm-up)" } else { "" };
        progress(&format!("  step {step}: {ms:.1} ms ({host_ms:.2} ms on the host), loss {loss:.4}{warm}"));
        if step > 0 {
            times.push(ms);
            host.push(host_ms);
        }
    }
    times.sort_by(f64::total_cmp);
    host.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    let host_ms = host[host.len() / 2];
    let (count, unit) = case.items;
    progress(&format!("  {:.1} {unit}/s", count as f64 / (median_ms / 1e3)));
    if std::env::var("WGFORMER_PROFILE").is_ok_and(|v| v == "1") {
        for (op, ms, n) in exec.profile(gpu)? {
            progress(&format!("  {op:<16} {ms:9.2} ms in {n} nodes"));
        }
        progress("  matmuls by shape (batch x M x N x K, transposes of A and B):");
        for m in exec.profile_matmuls(gpu)? {
            let gflops = m.flops / (m.ms / 1e3) / 1e9;
            progress(&format!("    {:<24} {:8.2} ms in {:3} nodes {gflops:10.1} GFLOP/s", m.shape, m.ms, m.nodes));
        }
    }
    Ok(BenchResult {
        kernel: "step".into(),
        shape: format!("{model} batch {batch}"),
        dtype: precision.name().into(),
        median_ms,
        gflops: Some(flops / (median_ms / 1e3) / 1e9),
        gbps: None,
        memory_mib: None,
        note: Some(format!(
            "attention {} ({fused_calls} fused, {composed_calls} composed calls); host: upload + encode + submit {host_ms:.2} ms, {:.1}% of the step",
            attention.kind(),
            100.0 * host_ms / median_ms
        )),
    })
}

/// Floating-point operations of every matmul node in `g`.
pub fn matmul_flops(g: &crate::graph::Graph) -> f64 {
    g.nodes.iter().filter_map(|n| g.matmul_product(n)).map(|[b, m, n, k]| 2.0 * (b * m * n * k) as f64).sum()
}

/// One line of the table.
pub fn row(r: &BenchResult) -> String {
    let rate = match (r.gflops, r.gbps) {
        (Some(g), _) => format!("{g:10.2} GFLOP/s"),
        (_, Some(b)) => format!("{b:10.2} GB/s"),
        _ => String::new(),
    };
    let mut s = format!("{:<26} {:<22} {:<5} {:>10.3} ms {rate}", r.kernel, r.shape, r.dtype, r.median_ms);
    if let Some(m) = r.memory_mib {
        s += &format!("  {m:8.1} MiB");
    }
    if let Some(n) = &r.note {
        s += &format!("  ({n})");
    }
    s
}

/// The results as an aligned table.
pub fn table(results: &[BenchResult]) -> String {
    let mut s = format!("{:<26} {:<22} {:<5} {:>13} {:>18}\n", "kernel", "shape", "dtype", "median", "rate");
    for r in results {
        s += &row(r);
        s.push('\n');
    }
    s
}
