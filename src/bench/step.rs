//! `bench step`: whole training steps of the model presets (forward, backward, clipping,
//! Adam), in one process or as one rank of a data-parallel job.

use super::BenchResult;
use crate::dist::collective::Collective;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::AttentionPolicy;
use crate::runtime::exec::CommStats;
use std::time::Instant;

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

/// Parameters (and so gradient floats) of a preset: `bench allreduce` sums as many.
pub fn gradient_floats(model: &str) -> Result<Option<usize>> {
    let g = if let Some(cfg) = crate::models::vit::VitConfig::preset(model) {
        crate::models::vit::build(&cfg, 1, true)?.graph
    } else if let Some(cfg) = transformer_preset(model) {
        crate::models::transformer::build(&cfg, 1, STEP_TOKENS, STEP_TOKENS, true)?.graph
    } else {
        return Ok(None);
    };
    Ok(Some(g.params().into_iter().map(|p| g.desc(p).len()).sum()))
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
    group: Option<&dyn Collective>,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchResult> {
    use crate::runtime::exec::{Executor, HostData, StepOptions};
    if batch == 0 {
        return Err(Error::InvalidSetting { name: "--batch", value: "0".into(), expected: "at least 1" });
    }
    // Under mpirun every rank steps on its share of the batch and the gradients are summed.
    let ranks = group.map_or(1, |g| g.size());
    if !batch.is_multiple_of(ranks) {
        return Err(Error::Config(format!("--batch {batch} must be a multiple of the {ranks} ranks")));
    }
    let global_batch = batch;
    let batch = batch / ranks;
    let attention = crate::runtime::attention_choice::policy_in(gpu, precision, |p| step_graph(model, batch, p))?;
    progress(&format!("attention: {}", crate::runtime::attention_choice::describe_policy(&attention)));
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
    let grads = crate::graph::autodiff::backward(&mut graph, case.loss)?;
    let flops = matmul_flops(&graph);
    progress(&format!("{model} batch {batch}: {} nodes, building the executor", graph.nodes.len()));
    let exec = Executor::new(gpu, graph, Some(case.loss), Some(&grads))?;
    progress(&format!("  {:.0} ms measuring kernel choices", crate::kernels::tuning::spent_ms(gpu)));
    let (all, fb) = (exec.dispatches_per_step(), exec.forward_backward_dispatches());
    progress(&format!("  {all} dispatches a step: {fb} forward+backward, {} optimizer", all - fb));
    for (p, values) in &case.params {
        exec.set(gpu, *p, HostData::F32(values))?;
    }
    let mut feed: Vec<(crate::graph::TensorId, HostData)> =
        case.f32_inputs.iter().map(|(t, v)| (*t, HostData::F32(v))).collect();
    feed.extend(case.u32_inputs.iter().map(|(t, v)| (*t, HostData::U32(v))));
    let adam = crate::runtime::optim::AdamConfig { weight_decay: 0.05, ..Default::default() };
    let (mut times, mut host, mut comm) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..=runs.max(1) {
        let opts = StepOptions {
            adam: Some(adam.at(step as u32 + 1, 1e-4)),
            seed: step as u32,
            clip: Some(1.0),
            loss_scale: (graph_precision == crate::graph::Precision::F16).then_some(1024.0),
            loss_weight: group.map(|_| 1.0 / ranks as f32),
        };
        let start = Instant::now();
        let loss = match group {
            Some(g) => exec.step_data_parallel(gpu, &feed, &opts, g)?,
            None => exec.step(gpu, &feed, &opts)?,
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let host_ms = exec.last_host_ms();
        let warm = if step == 0 { " (warm-up)" } else { "" };
        let c = exec.last_comm();
        let sums = match group {
            Some(_) => {
                format!(", gradient sums {:.1} ms, {:.1} ms exposed", c.comm_seconds * 1e3, c.exposed_seconds * 1e3)
            }
            None => String::new(),
        };
        progress(&format!("  step {step}: {ms:.1} ms ({host_ms:.2} ms on the host), loss {loss:.4}{sums}{warm}"));
        if step > 0 {
            times.push(ms);
            host.push(host_ms);
            comm.push(exec.last_comm());
        }
    }
    times.sort_by(f64::total_cmp);
    host.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    let host_ms = host[host.len() / 2];
    let (count, unit) = case.items;
    let count = count * ranks;
    progress(&format!("  {:.1} {unit}/s", count as f64 / (median_ms / 1e3)));
    let comm_note = match group {
        Some(g) => ranks_note(g.size(), &comm, median_ms),
        None => String::new(),
    };
    if gpu.settings.profile {
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
        shape: format!("{model} batch {global_batch}"),
        dtype: precision.name().into(),
        median_ms,
        gflops: Some(ranks as f64 * flops / (median_ms / 1e3) / 1e9),
        gbps: None,
        memory_mib: None,
        note: Some(format!(
            "attention {} ({fused_calls} fused, {composed_calls} composed calls); host: upload + encode + submit {host_ms:.2} ms, {:.1}% of the step{comm_note}",
            attention.kind(),
            100.0 * host_ms / median_ms
        )),
    })
}

/// Floating-point operations of every matmul node in `g`.
pub fn matmul_flops(g: &crate::graph::Graph) -> f64 {
    g.nodes.iter().filter_map(|n| g.matmul_product(n)).map(|[b, m, n, k]| 2.0 * (b * m * n * k) as f64).sum()
}

/// "; N ranks: compute X ms, gradient sums Y ms in K buckets, Z% hidden" from the measured
/// steps (medians): compute is the step less the communication that was not hidden.
fn ranks_note(ranks: usize, comm: &[CommStats], median_ms: f64) -> String {
    let median = |f: fn(&CommStats) -> f64| {
        let mut v: Vec<f64> = comm.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (sum_ms, exposed_ms) = (median(|c| c.comm_seconds) * 1e3, median(|c| c.exposed_seconds) * 1e3);
    let hidden: f64 = comm.iter().map(|c| c.comm_seconds - c.exposed_seconds.min(c.comm_seconds)).sum::<f64>()
        / comm.iter().map(|c| c.comm_seconds).sum::<f64>().max(1e-12);
    let (buckets, mib) = comm.first().map_or((0, 0.0), |c| (c.buckets, c.bytes as f64 / (1 << 20) as f64));
    format!(
        "; {ranks} ranks: compute {:.1} ms, gradient sums {sum_ms:.1} ms ({mib:.1} MiB in {buckets} buckets), {exposed_ms:.1} ms exposed, {:.0}% hidden behind the backward",
        median_ms - exposed_ms,
        100.0 * hidden.clamp(0.0, 1.0)
    )
}
