//! `wgformer bench attention`: the fused attention kernels against the composed path
//! (split heads, QK^T matmul, scale, mask, softmax, PV matmul, merge heads), forward and
//! forward + backward, at B = 8, H = 8, D = 64, T = 256 and 1024, with and without the causal
//! mask. Both run as graphs through the executor (`runtime::attention_choice`, which makes the
//! same comparison to choose a path); the attention nodes are timed in one pass, as a step
//! records them, leaving out the cross-entropy that seeds the backward.
//! FLOPs follow the FlashAttention papers: forward 4 B H T^2 D (halved when causal), backward
//! 2.5 times the forward. Memory is the executor's planned activation memory, inputs included.

use super::BenchResult;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::attention::{AttentionShape, HEAD_DIMS};
use crate::runtime::attention_choice::{attention_executor, attention_graph, time_attention_nodes, AttentionGraph};

/// The shapes timed by default: (batch, heads, tokens, head dim).
pub const SHAPES: [(usize, usize, usize, usize); 2] = [(8, 8, 256, 64), (8, 8, 1024, 64)];

/// Median milliseconds of the attention nodes of one step (all nodes but the loss), recorded
/// into one pass, over `runs` runs after a warm-up; with the planned activation memory.
fn time_attention(gpu: &Gpu, a: &AttentionGraph, backward: bool, runs: usize) -> Result<(f64, u64)> {
    let (exec, memory) = attention_executor(gpu, a, backward)?;
    time_attention_nodes(gpu, &exec)?;
    let mut times = (0..runs.max(1)).map(|_| time_attention_nodes(gpu, &exec)).collect::<Result<Vec<_>>>()?;
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
    let kernels = crate::kernels::KernelSet::of(gpu)?;
    let mut results = Vec::new();
    for (b, h, t, d) in shapes {
        for causal in [false, true] {
            let fwd_flops = 4.0 * (b * h * t * t * d) as f64 * if causal { 0.5 } else { 1.0 };
            for fused in [true, false] {
                for backward in [false, true] {
                    // Named after timing: the fused op runs the variant chosen for its shape.
                    let name =
                        |variant: &str| format!("attention_{variant}_{}", if backward { "fwd_bwd" } else { "fwd" });
                    let attention = AttentionShape { batch: b, heads: h, tq: t, tk: t, head_dim: d, causal };
                    let shape = format!("B{b} H{h} T{t} D{d}{}", if causal { " causal" } else { "" });
                    let flops = fwd_flops * if backward { 3.5 } else { 1.0 };
                    let graph = attention_graph(&attention, false, fused)?;
                    let mut r = BenchResult {
                        kernel: String::new(),
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
                                crate::graph::autodiff::backward_wrt(&mut g, graph.loss, &graph.inputs)?;
                            }
                            let plan = crate::graph::plan::plan(&g, &[graph.loss]);
                            r.memory_mib = Some(plan.peak_activation_bytes as f64 / (1 << 20) as f64);
                            r.note = Some(format!("not run: {e}"));
                        }
                        Err(e) => return Err(e),
                    }
                    r.kernel = match fused {
                        true => name(kernels.attention.variant_for(&attention, false).name()),
                        false => name("composed"),
                    };
                    progress(&super::row(&r));
                    results.push(r);
                }
            }
        }
    }
    Ok(results)
}
