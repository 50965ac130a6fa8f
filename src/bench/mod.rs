//! Kernel timing for `wgformer bench` and the criterion benches: median of several runs after
//! a warm-up, timed with GPU timestamp queries where the adapter has them, else wall clock
//! around a blocking submit.

#[cfg(not(target_arch = "wasm32"))]
pub mod allreduce;
pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
mod step;
#[cfg(not(target_arch = "wasm32"))]
pub use step::{matmul_flops, run_step};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
pub use crate::kernels::Timer;
use crate::kernels::{Dispatch, Elementwise, Gelu, GeluKind, LayerNorm, Matmul, MatmulShape, Softmax};
use serde::Serialize;

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
pub const KERNELS: &[&str] = &["matmul", "layernorm", "gelu", "silu", "softmax", "cross_entropy", "add", "dispatch"];
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

/// The standard matmul shapes (MxNxK): square, the ViT-B/16 layers for 8 images of 197
/// tokens and a transformer-base weight gradient (dY^T X over 128 pairs of 32 tokens, split-K's
/// case); 4096^3 too on GPUs (it takes seconds per run on a CPU adapter).
pub fn matmul_shapes(gpu: &Gpu) -> Vec<(String, MatmulShape)> {
    let t = 8 * 197;
    let square = |n| (format!("{n}x{n}x{n}"), MatmulShape::packed(1, n, n, n, false, false));
    // x W^T as in a Linear layer: qkv projection, MLP fc1, MLP fc2.
    let vit = |n, k| (format!("{t}x{n}x{k}"), MatmulShape::packed(1, t, n, k, false, true));
    let weight_gradient = ("512x512x4096 TN".to_string(), MatmulShape::packed(1, 512, 512, 4096, true, false));
    let mut shapes = vec![square(1024), square(2048), vit(2304, 768), vit(3072, 768), vit(768, 3072), weight_gradient];
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
            // As the executor runs it: K in splits where the rule says.
            dispatches: mm.fwd_split(gpu, &c, &a, &b, None, Default::default(), s, None)?,
            flops: Some(s.flops()),
            bytes: None,
            note: Some(match mm.splits_for(gpu, s) {
                1 => mm.describe(s),
                n => format!("{}, K in {n} splits", mm.describe(s)),
            }),
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
            let fwd = ge.fwd(gpu, &y, &x, n, GeluKind::Exact)?;
            activation_cases("gelu", act_shape, n, fwd, ge.bwd(gpu, &dx, &x, &dout, n, GeluKind::Exact)?)
        }
        "silu" => {
            let ew = Elementwise::new(gpu)?;
            let (x, dout, y, dx) = (fill("x", n)?, fill("dout", n)?, gpu.zeros("y", n)?, gpu.zeros("dx", n)?);
            let fwd = ew.silu_fwd(gpu, &y, &x, n)?;
            activation_cases("silu", act_shape, n, fwd, ew.silu_bwd(gpu, &dx, &x, &dout, n)?)
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
        // The loss over a translation batch's logits: 256 tokens of a 32000-entry vocabulary.
        "cross_entropy" => {
            let (tokens, vocab) = (256, 32_000);
            let ce = crate::kernels::CrossEntropy::new(gpu)?;
            let (logits, dlogits, loss) =
                (fill("logits", tokens * vocab)?, gpu.zeros("dlogits", tokens * vocab)?, gpu.zeros("loss", 1)?);
            let targets = gpu.upload_u32("targets", &vec![7; tokens])?;
            let d = ce.fwd(gpu, &loss, &dlogits, &logits, &targets, tokens, vocab, 0.1, None)?;
            vec![Case {
                kernel: "cross_entropy".into(),
                shape: format!("{tokens}x{vocab}"),
                dispatches: d.to_vec(),
                flops: None,
                // What it must move: the logits once in, the gradient once out.
                bytes: Some(2.0 * (tokens * vocab) as f64 * f32b),
                note: None,
            }]
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
                    "one of matmul, matmul_f16, cast_f16, layernorm, gelu, silu, softmax, cross_entropy, add, dispatch, attention, step",
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

/// The two cases of an elementwise activation over `n` f32 values: the forward reads x and writes
/// y, the backward reads x and dy and writes dx.
fn activation_cases(name: &str, shape: String, n: usize, fwd: Dispatch, bwd: Dispatch) -> Vec<Case> {
    let bytes = |tensors: f64| Some(tensors * n as f64 * 4.0);
    vec![
        Case {
            kernel: format!("{name}_fwd"),
            shape: shape.clone(),
            dispatches: vec![fwd],
            flops: None,
            bytes: bytes(2.0),
            note: None,
        },
        Case {
            kernel: format!("{name}_bwd"),
            shape,
            dispatches: vec![bwd],
            flops: None,
            bytes: bytes(3.0),
            note: None,
        },
    ]
}
