//! `wgformer bench attention`: the fused attention kernels against the composed path
//! (split heads, QK^T matmul, scale, mask, softmax, PV matmul, merge heads), forward and
//! forward + backward, at B = 8, H = 8, D = 64, T = 256 and 1024, with and without the causal
//! mask. Both run as graphs through the executor; the time of the attention nodes is measured
//! per node (`Executor::profile`), leaving out the cross-entropy that seeds the backward.
//! FLOPs follow the FlashAttention papers: forward 4 B H T^2 D (halved when causal), backward
//! 2.5 times the forward. Memory is the executor's planned activation memory, inputs included.

use super::BenchResult;
use crate::engine::exec::{Executor, HostData};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Dtype, Graph, TensorId};
use crate::kernels::attention::HEAD_DIMS;

/// The shapes timed by default: (batch, heads, tokens, head dim).
pub const SHAPES: [(usize, usize, usize, usize); 2] = [(8, 8, 256, 64), (8, 8, 1024, 64)];

struct AttentionGraph {
    graph: Graph,
    loss: TensorId,
    inputs: [TensorId; 3],
    targets: TensorId,
}

/// q, k, v (B, T, H*D) -> attention -> cross-entropy over the channels (the cheapest loss whose
/// gradient is a full dO).
fn attention_graph(b: usize, h: usize, t: usize, d: usize, causal: bool, fused: bool) -> Result<AttentionGraph> {
    let c = h * d;
    let mut g = Graph::new();
    let q = g.input("q", &[b, t, c], Dtype::F32);
    let k = g.input("k", &[b, t, c], Dtype::F32);
    let v = g.input("v", &[b, t, c], Dtype::F32);
    let targets = g.input("targets", &[b, t], Dtype::U32);
    // attention() takes the fused op whenever it can; dropout > 0 forces the composed path, so
    // the composed graph is built op by op here instead.
    let o = if fused {
        g.fused_attention(q, k, v, h, None, causal)?
    } else {
        let (qh, kh, vh) = (g.split_heads(q, h)?, g.split_heads(k, h)?, g.split_heads(v, h)?);
        let s = g.matmul_full(qh, kh, None, false, true, true)?;
        let s = g.scale(s, 1.0 / (d as f32).sqrt())?;
        let s = if causal { g.mask(s, None, true)? } else { s };
        let p = g.softmax(s)?;
        let o = g.matmul_full(p, vh, None, false, false, true)?;
        g.merge_heads(o)?
    };
    let loss = g.cross_entropy(o, targets, 0.0, None)?;
    Ok(AttentionGraph { graph: g, loss, inputs: [q, k, v], targets })
}

/// Milliseconds of the attention nodes of one step (all nodes but the loss and its gradient).
fn time_attention(gpu: &Gpu, a: &AttentionGraph, backward: bool, runs: usize) -> Result<(f64, u64)> {
    let mut graph = a.graph.clone();
    let grads =
        if backward { Some(crate::engine::autodiff::backward_wrt(&mut graph, a.loss, &a.inputs)?) } else { None };
    let exec = Executor::new(gpu, graph, Some(a.loss), grads.as_ref())?;
    let mut rng = crate::util::rng::Rng::new(7);
    for &x in &a.inputs {
        let values: Vec<f32> = (0..exec.graph().desc(x).len()).map(|_| rng.uniform() as f32 - 0.5).collect();
        exec.set(gpu, x, HostData::F32(&values))?;
    }
    let n = exec.graph().desc(a.targets).len();
    let c = exec.graph().desc(a.inputs[0]).last_dim();
    let targets: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
    exec.set(gpu, a.targets, HostData::U32(&targets))?;
    let memory = exec.plan().peak_activation_bytes;
    let mut times = Vec::new();
    for run in 0..=runs.max(1) {
        let per_op = exec.profile(gpu)?;
        let ms: f64 = per_op.iter().filter(|(op, _, _)| !op.starts_with("cross_entropy")).map(|(_, ms, _)| ms).sum();
        if run > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], memory))
}

/// Which attention shapes to time: B and H as in [`SHAPES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionCases {
    /// Sequence lengths; empty: those of [`SHAPES`].
    pub tokens: Vec<usize>,
    /// The head dimension, one of [`HEAD_DIMS`].
    pub head_dim: usize,
}

impl Default for AttentionCases {
    fn default() -> Self {
        AttentionCases { tokens: Vec::new(), head_dim: SHAPES[0].3 }
    }
}

/// Times the four cases at every shape of `cases`, with and without the causal mask. A case
/// whose tensors exceed the adapter's limits is reported with its memory and the reason, not timed.
pub fn run(gpu: &Gpu, runs: usize, cases: &AttentionCases, progress: &mut dyn FnMut(&str)) -> Result<Vec<BenchResult>> {
    if cases.tokens.contains(&0) {
        return Err(Error::Config("--tokens 0: sequence lengths must be at least 1".into()));
    }
    if !HEAD_DIMS.contains(&cases.head_dim) {
        return Err(Error::Config(format!(
            "--head-dim {}: the attention kernels take head dims {HEAD_DIMS:?}",
            cases.head_dim
        )));
    }
    let (batch, heads) = (SHAPES[0].0, SHAPES[0].1);
    let tokens: Vec<usize> =
        if cases.tokens.is_empty() { SHAPES.iter().map(|s| s.2).collect() } else { cases.tokens.clone() };
    let shapes: Vec<(usize, usize, usize, usize)> = tokens.iter().map(|&t| (batch, heads, t, cases.head_dim)).collect();
    let fused_variant = crate::kernels::KernelSet::of(gpu)?.attention.variant().name();
    let mut results = Vec::new();
    for (b, h, t, d) in shapes {
        for causal in [false, true] {
            let fwd_flops = 4.0 * (b * h * t * t * d) as f64 * if causal { 0.5 } else { 1.0 };
            for fused in [true, false] {
                for backward in [false, true] {
                    // The fused op runs the variant the device's kernels were built with.
                    let variant = if fused { fused_variant } else { "composed" };
                    let kernel = format!("attention_{variant}_{}", if backward { "fwd_bwd" } else { "fwd" });
                    let shape = format!("B{b} H{h} T{t} D{d}{}", if causal { " causal" } else { "" });
                    let flops = fwd_flops * if backward { 3.5 } else { 1.0 };
                    let graph = attention_graph(b, h, t, d, causal, fused)?;
                    let mut r = BenchResult {
                        kernel,
                        shape,
                        dtype: "f32".into(),
                        median_ms: f64::NAN,
                        gflops: None,
                        gbps: None,
                        memory_mib: None,
                        note: None,
                    };
                    match time_attention(gpu, &graph, backward, runs) {
                        Ok((ms, memory)) => {
                            r.median_ms = ms;
                            r.gflops = Some(flops / (ms / 1e3) / 1e9);
                            r.memory_mib = Some(memory as f64 / (1 << 20) as f64);
                        }
                        Err(e @ (Error::TooLarge { .. } | Error::Gpu { .. })) => {
                            let mut g = graph.graph.clone();
                            if backward {
                                crate::engine::autodiff::backward_wrt(&mut g, graph.loss, &graph.inputs)?;
                            }
                            let plan = crate::engine::plan::plan(&g, &[graph.loss]);
                            r.memory_mib = Some(plan.peak_activation_bytes as f64 / (1 << 20) as f64);
                            r.note = Some(format!("not run: {e}"));
                        }
                        Err(e) => return Err(e),
                    }
                    progress(&super::row(&r));
                    results.push(r);
                }
            }
        }
    }
    Ok(results)
}
