//! Attention as the fused op or as the composed path (split heads, QK^T matmul, scale, mask,
//! softmax, PV matmul, merge heads), chosen per adapter and class of shapes by measurement.
//!
//! The choice changes a graph's nodes, so it is made before the graphs are built:
//! [`policy`] builds the caller's graphs once with a policy that only records the attention
//! calls, times both paths (forward and backward, one pass each, interleaved) for each class
//! not in the tuning cache (`kernels::tuning`: the same budget, cache file and settings), and
//! returns a policy that answers from those measurements. On an H200 the fused row kernels ran
//! 5-15x slower than the composed path, which is why the rule (no measuring) stays composed
//! on GPUs wherever the scores fit one binding, and fused on CPU adapters.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{AttentionChooser, AttentionPolicy, AttentionShape, Dtype, Graph, Op, Precision, TensorId};
use crate::kernels::tuning::{self, attention_class, Choices, Family};
use crate::runtime::exec::{Executor, HostData};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One attention call alone in a graph: q (B, Tq, H D), k and v (B, Tk, H D), optional key
/// lengths, then a cross-entropy over o's channels (the cheapest loss whose gradient is a
/// full dO).
pub struct AttentionGraph {
    pub graph: Graph,
    pub loss: TensorId,
    pub inputs: [TensorId; 3],
    pub targets: TensorId,
    pub lens: Option<TensorId>,
}

/// The graph of one attention call of shape `s`, fused or composed (op by op, whatever a
/// policy would say).
pub fn attention_graph(s: &AttentionShape, masked: bool, fused: bool) -> Result<AttentionGraph> {
    let (b, h, d) = (s.batch, s.heads, s.head_dim);
    let c = h * d;
    let mut g = Graph::new();
    let q = g.input("q", &[b, s.tq, c], Dtype::F32);
    let k = g.input("k", &[b, s.tk, c], Dtype::F32);
    let v = g.input("v", &[b, s.tk, c], Dtype::F32);
    let targets = g.input("targets", &[b, s.tq], Dtype::U32);
    let lens = masked.then(|| g.input("key_lens", &[b], Dtype::U32));
    let o = if fused {
        g.fused_attention(q, k, v, h, lens, s.causal)?
    } else {
        let (qh, kh, vh) = (g.split_heads(q, h)?, g.split_heads(k, h)?, g.split_heads(v, h)?);
        let scores = g.matmul_full(qh, kh, None, false, true, true)?;
        let scores = g.scale(scores, 1.0 / (d as f32).sqrt())?;
        let scores = if masked || s.causal { g.mask(scores, lens, s.causal)? } else { scores };
        let p = g.softmax(scores)?;
        let o = g.matmul_full(p, vh, None, false, false, true)?;
        g.merge_heads(o)?
    };
    let loss = g.cross_entropy(o, targets, 0.0, None)?;
    Ok(AttentionGraph { graph: g, loss, inputs: [q, k, v], targets, lens })
}

/// The executor of `a` (with its backward where `backward`), inputs set to random values and
/// every key visible; with its planned activation memory in bytes.
pub fn attention_executor(gpu: &Gpu, a: &AttentionGraph, backward: bool) -> Result<(Executor, u64)> {
    let mut graph = a.graph.clone();
    let grads =
        if backward { Some(crate::graph::autodiff::backward_wrt(&mut graph, a.loss, &a.inputs)?) } else { None };
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
    if let Some(lens) = a.lens {
        let b = exec.graph().desc(lens).len();
        let tk = exec.graph().desc(a.inputs[1]).shape[1] as u32;
        exec.set(gpu, lens, HostData::U32(&vec![tk; b]))?;
    }
    let memory = exec.plan().peak_activation_bytes;
    Ok((exec, memory))
}

/// Milliseconds of one run of the attention nodes of `exec` (all but the loss and its
/// gradient), in one pass.
pub fn time_attention_nodes(gpu: &Gpu, exec: &Executor) -> Result<f64> {
    exec.time_nodes(gpu, |op| !matches!(op, Op::CrossEntropy { .. }))
}

/// Records the attention calls of the graphs built with it; answers "fused" meanwhile.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<(AttentionShape, bool)>>,
}

impl AttentionChooser for Recorder {
    fn fused(&self, s: &AttentionShape, masked: bool) -> bool {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((*s, masked));
        }
        true
    }
}

/// Answers from measurements per class; the rule for classes not measured.
#[derive(Debug)]
struct Measured {
    max_score_bytes: u64,
    rule_fused: bool,
    precision: Precision,
    fused: HashMap<String, bool>,
}

impl AttentionChooser for Measured {
    fn fused(&self, s: &AttentionShape, masked: bool) -> bool {
        if s.score_bytes() > self.max_score_bytes {
            return true;
        }
        self.fused.get(&class_in(s, masked, self.precision)).copied().unwrap_or(self.rule_fused)
    }
}

/// The tuning cache's class of a call in `precision`: mixed precision runs other kernels (f16
/// forms, products on matrix units), so its choices are measured and kept apart.
fn class_in(s: &AttentionShape, masked: bool, precision: Precision) -> String {
    match precision {
        Precision::F32 => attention_class(s, masked),
        Precision::F16 => format!("{} f16", attention_class(s, masked)),
    }
}

/// The device's measured choices between the two paths.
struct PathChoices(Choices);

/// The policy where nothing is measured: `WGFORMER_ATTENTION_VARIANT=composed` asks for the
/// composed path anywhere and `rows`, `subgroup` or `tiled` for the fused op anywhere; else
/// composed on GPUs wherever the scores fit one storage binding and fused on CPU adapters (no
/// (Tq x Tk) tensor, and on lavapipe faster).
pub fn rule(gpu: &Gpu) -> Result<AttentionPolicy> {
    let composed = AttentionPolicy::Composed { max_score_bytes: gpu.limits.max_storage_buffer_binding_size };
    Ok(match gpu.settings.kernels.attention {
        Some(crate::settings::AttentionKernel::Composed) => composed,
        Some(_) => AttentionPolicy::Fused,
        None if gpu.is_cpu() => AttentionPolicy::Fused,
        None => composed,
    })
}

/// How models for `gpu` should build attention. Where the path is measured here (GPUs by
/// default, `kernels::tuning`) and no variant is asked for, `probe` is called once with a
/// recording policy and must build the graphs the caller is about to build (their attention
/// calls are what gets measured); elsewhere it is not called and the [`rule`] applies.
pub fn policy(gpu: &Gpu, probe: impl FnOnce(AttentionPolicy) -> Result<()>) -> Result<AttentionPolicy> {
    policy_in(gpu, Precision::F32, probe)
}

/// [`policy`] for graphs that will run in `precision`: both paths are measured so.
pub fn policy_in(
    gpu: &Gpu,
    precision: Precision,
    probe: impl FnOnce(AttentionPolicy) -> Result<()>,
) -> Result<AttentionPolicy> {
    let rule = rule(gpu)?;
    if gpu.settings.kernels.attention.is_some() || !tuning::enabled(gpu, Family::AttentionPath) {
        return Ok(rule);
    }
    let recorder = Arc::new(Recorder::default());
    probe(AttentionPolicy::Chosen(recorder.clone()))?;
    let calls = recorder.calls.lock().map(|c| c.clone()).unwrap_or_default();
    let choices = gpu.shared(|_| Ok(PathChoices(Choices::new(Family::AttentionPath))))?;
    let max_score_bytes = gpu.limits.max_storage_buffer_binding_size;
    let rule_fused = matches!(rule, AttentionPolicy::Fused);
    let mut fused = HashMap::new();
    for (s, masked) in calls {
        let class = class_in(&s, masked, precision);
        if s.score_bytes() > max_score_bytes || fused.contains_key(&class) {
            continue;
        }
        let pick = match choices.0.get(gpu, &class) {
            Some(name) => name == "fused",
            None if tuning::budget_left(gpu) => match measure(gpu, &s, masked, rule_fused, precision) {
                Ok(pick) => {
                    choices.0.insert(gpu, class.clone(), if pick { "fused" } else { "composed" });
                    pick
                }
                Err(e) if e.is_device_lost() => return Err(e),
                // Over a limit, say: the rule, whose path reports it when built.
                Err(_) => rule_fused,
            },
            None => rule_fused,
        };
        fused.insert(class, pick);
    }
    Ok(AttentionPolicy::Chosen(Arc::new(Measured { max_score_bytes, rule_fused, precision, fused })))
}

/// Whether the fused op ran the call `s` faster than the composed path in `precision`:
/// forward and backward, 3 interleaved runs each after a warm-up, best run each
/// (`kernels::tuning::pick`).
fn measure(gpu: &Gpu, s: &AttentionShape, masked: bool, rule_fused: bool, precision: Precision) -> Result<bool> {
    let start = Instant::now();
    let outcome = (|| {
        let graph = |fused| -> Result<AttentionGraph> {
            let mut a = attention_graph(s, masked, fused)?;
            a.graph.precision = precision;
            Ok(a)
        };
        let fused = attention_executor(gpu, &graph(true)?, true)?.0;
        let composed = attention_executor(gpu, &graph(false)?, true)?.0;
        let mut best = [f64::INFINITY; 2];
        for round in 0..4 {
            for (i, exec) in [&fused, &composed].into_iter().enumerate() {
                let ms = time_attention_nodes(gpu, exec)?;
                if round > 0 {
                    best[i] = best[i].min(ms);
                }
            }
        }
        Ok(tuning::pick(&best, if rule_fused { 0 } else { 1 }) == 0)
    })();
    tuning::charge(gpu, start);
    outcome
}

/// One line saying what `policy` does, for `wgformer info` and progress lines.
pub fn describe_policy(policy: &AttentionPolicy) -> String {
    match policy {
        AttentionPolicy::Fused => "fused kernels".into(),
        AttentionPolicy::Composed { max_score_bytes } => format!(
            "composed (matmul, softmax, matmul) where the scores fit {} MiB, fused elsewhere",
            max_score_bytes >> 20
        ),
        AttentionPolicy::Chosen(_) => "fused or composed, measured per shape class".into(),
    }
}

/// What models built for `gpu` do with attention, in words (`wgformer info`): the rule, or
/// that it is measured per shape class.
pub fn describe(gpu: &Gpu) -> Result<String> {
    let rule = rule(gpu)?;
    let asked = gpu.settings.kernels.attention.is_some();
    Ok(match !asked && tuning::enabled(gpu, Family::AttentionPath) {
        true => format!("fused or composed, measured per shape class (rule: {})", describe_policy(&rule)),
        false => describe_policy(&rule),
    })
}
