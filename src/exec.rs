//! The executor: owns the buffers, bind groups and uniforms of one planned graph, all created
//! once, and records a whole training step (forward, backward, optimizer) into one command
//! encoder with one compute pass and ONE submit. Only the loss is read back. A checked mode
//! runs node by node and compares each output with the CPU reference.

use crate::autodiff::Gradients;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Held, Tensor};
use crate::graph::build::matmul_dims;
use crate::graph::AdamStep;
use crate::graph::{Dtype, Graph, Node, Op, TensorId};
use crate::kernels::adam::AdamHyperParams;
use crate::kernels::attention::AttentionShape;
use crate::kernels::clip::{partials_for, ClipParams};
use crate::kernels::dropout::StepParams;
use crate::kernels::layout::TokenCopy;
use crate::kernels::{self, Adam, Dispatch, KernelSet, MatmulShape};
use crate::plan::{plan, training_pinned, Plan};
use std::collections::HashMap;

/// Values for one input or parameter.
#[derive(Clone, Copy, Debug)]
pub enum HostData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

/// Adam state: moments per parameter, the prepared updates, and the global-norm clipping
/// that runs before them when a step asks for it.
struct Optimizer {
    /// This optimizer's step values (learning rate, bias corrections), read by every update.
    hyper: AdamHyperParams,
    updates: Vec<Dispatch>,
    clip: Vec<Dispatch>,
    clip_params: Held<wgpu::Buffer>,
    partials: usize,
    /// [factor, norm]: Adam multiplies every gradient by the factor.
    grad_scale: Tensor,
    /// (param, m, v): bound by the updates, read and written for checkpoints.
    state: Vec<(TensorId, Tensor, Tensor)>,
}

/// A graph ready to run on one GPU.
pub struct Executor {
    graph: Graph,
    plan: Plan,
    tensors: Vec<Tensor>,
    node_dispatches: Vec<Vec<Dispatch>>,
    optimizer: Option<Optimizer>,
    loss: Option<TensorId>,
    loss_staging: Held<wgpu::Buffer>,
    /// Host time of the last step, from its start to the submit's return (ns; not in browsers).
    host_ns: std::sync::atomic::AtomicU64,
    /// u32 inputs that index something: (tensor, exclusive bound, allowed exception), checked
    /// on upload (cross-entropy targets with their ignore index, embedding ids).
    id_checks: Vec<(TensorId, usize, Option<u32>)>,
    /// Embedding gradients read their ids grouped by value, made on the host at upload:
    /// (ids, vocabulary, order, starts).
    id_groups: Vec<(TensorId, usize, Tensor, Tensor)>,
    /// The uniform with the step's seed, read by dropout.
    step_params: Held<wgpu::Buffer>,
}

/// What one training step does besides forward and backward.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepOptions {
    /// Run Adam with these values after the backward (when the executor has gradients).
    pub adam: Option<AdamStep>,
    /// Seed of this step's dropout masks.
    pub seed: u32,
    /// Scale gradients down so that their global norm is at most this.
    pub clip: Option<f32>,
}

impl Executor {
    /// Plans `graph` and prepares every dispatch. With `grads`, the step also runs Adam on
    /// every parameter that has a gradient.
    pub fn new(gpu: &Gpu, graph: Graph, loss: Option<TensorId>, grads: Option<&Gradients>) -> Result<Self> {
        Self::keeping(gpu, graph, loss, grads, &[])
    }

    /// [`Executor::new`], also keeping `outputs` intact after a step (their buffers are not
    /// reused), so that they can be read back.
    pub fn keeping(
        gpu: &Gpu,
        graph: Graph,
        loss: Option<TensorId>,
        grads: Option<&Gradients>,
        outputs: &[TensorId],
    ) -> Result<Self> {
        Self::build(gpu, graph, loss, grads, outputs, None)
    }

    /// [`Executor::keeping`] for another shape of the same model: parameters with the same name
    /// and shape as in `with` (and their Adam moments) are the same buffers, so a step of either
    /// trains both. Used for batches of several padded lengths.
    pub fn sharing(
        gpu: &Gpu,
        graph: Graph,
        loss: Option<TensorId>,
        grads: Option<&Gradients>,
        outputs: &[TensorId],
        with: &Executor,
    ) -> Result<Self> {
        Self::build(gpu, graph, loss, grads, outputs, Some(with))
    }

    fn build(
        gpu: &Gpu,
        graph: Graph,
        loss: Option<TensorId>,
        grads: Option<&Gradients>,
        outputs: &[TensorId],
        with: Option<&Executor>,
    ) -> Result<Self> {
        let kernels = KernelSet::of(gpu)?;
        let mut pinned = training_pinned(loss, grads);
        pinned.extend_from_slice(outputs);
        let plan = plan(&graph, &pinned);
        let shared = with.map(|w| w.shared_params(&graph)).unwrap_or_default();
        let tensors = allocate(gpu, &graph, &plan, &shared)?;
        let step_params = gpu.hold(gpu.uniform("step params", &StepParams { seed: 0, step: 0, _pad: [0; 2] }));
        let mut id_groups = Vec::new();
        let mut node_dispatches = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let groups = if node.op == Op::EmbeddingBwd {
                let (ids, vocab) = (node.inputs[0], graph.desc(node.outputs[0]).shape[0]);
                let order = gpu.zeros_u32("embedding.order", graph.desc(ids).len())?;
                let starts = gpu.zeros_u32("embedding.starts", vocab + 1)?;
                id_groups.push((ids, vocab, order, starts));
                id_groups.last().map(|(_, _, o, s)| (o, s))
            } else {
                None
            };
            let ctx = NodeContext { step_params: &step_params, id_groups: groups };
            node_dispatches.push(encode_node(gpu, &kernels, &graph, &tensors, node, &ctx)?);
        }
        let moments = with.map(|w| w.shared_moments(&graph)).unwrap_or_default();
        let optimizer = match grads {
            Some(g) => Some(prepare_adam(gpu, &kernels, &graph, &tensors, g, &moments)?),
            None => None,
        };
        let loss_staging = {
            let _turn = gpu.turn();
            gpu.hold(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("loss readback"),
                size: 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        };
        let id_checks = graph
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::CrossEntropy { ignore_index, .. } => {
                    Some((n.inputs[1], graph.desc(n.inputs[0]).last_dim(), ignore_index))
                }
                Op::Embedding => Some((n.inputs[1], graph.desc(n.inputs[0]).shape[0], None)),
                _ => None,
            })
            .collect();
        Ok(Executor {
            graph,
            plan,
            tensors,
            node_dispatches,
            optimizer,
            loss,
            loss_staging,
            host_ns: Default::default(),
            id_checks,
            id_groups,
            step_params,
        })
    }

    /// This executor's parameters that `other` has too (same name and shape), by `other`'s ids.
    fn shared_params(&self, other: &Graph) -> HashMap<TensorId, Tensor> {
        self.matching_params(other).map(|(mine, theirs)| (theirs, self.tensors[mine.0].clone())).collect()
    }

    /// Adam moments of the shared parameters, by `other`'s ids.
    fn shared_moments(&self, other: &Graph) -> HashMap<TensorId, (Tensor, Tensor)> {
        let Some(opt) = &self.optimizer else { return HashMap::new() };
        self.matching_params(other)
            .filter_map(|(mine, theirs)| {
                opt.state.iter().find(|(p, _, _)| *p == mine).map(|(_, m, v)| (theirs, (m.clone(), v.clone())))
            })
            .collect()
    }

    fn matching_params<'a>(&'a self, other: &'a Graph) -> impl Iterator<Item = (TensorId, TensorId)> + 'a {
        other.params().into_iter().filter_map(move |theirs| {
            let d = other.desc(theirs);
            self.graph.find(&d.name).filter(|&mine| self.graph.desc(mine).shape == d.shape).map(|mine| (mine, theirs))
        })
    }

    /// The buffer behind `t`. After a step only inputs, parameters, gradients, the loss and
    /// kept outputs hold their own values: other activations share buffers.
    pub fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.tensors[t.0].buffer
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Dispatches recorded per step (forward, backward, clipping and optimizer).
    pub fn dispatches_per_step(&self) -> usize {
        let nodes: usize = self.node_dispatches.iter().map(|d| d.len()).sum();
        nodes + self.optimizer.as_ref().map_or(0, |o| o.updates.len() + o.clip.len())
    }

    /// Writes an input or a parameter (takes effect for the next submit).
    pub fn set(&self, gpu: &Gpu, t: TensorId, data: HostData) -> Result<()> {
        let d = self.graph.desc(t);
        let bad = |msg: String| Err(Error::Input { name: d.name.clone(), msg });
        match (d.dtype, data) {
            (Dtype::F32, HostData::F32(v)) if v.len() == d.len() => gpu.write_raw(&self.tensors[t.0], v),
            (Dtype::U32, HostData::U32(v)) if v.len() == d.len() => {
                for &(ids, bound, allowed) in &self.id_checks {
                    if ids == t {
                        if let Some(bad_id) = v.iter().find(|&&x| x as usize >= bound && Some(x) != allowed) {
                            return bad(format!("id {bad_id} is out of range for {bound} classes or rows"));
                        }
                    }
                }
                for (ids, vocab, order, starts) in &self.id_groups {
                    if *ids == t {
                        let (o, s) = crate::kernels::embedding::group_ids(v, *vocab);
                        gpu.write_raw(order, &o)?;
                        gpu.write_raw(starts, &s)?;
                    }
                }
                gpu.write_raw(&self.tensors[t.0], v)
            }
            (_, HostData::F32(v)) => {
                bad(format!("got {} f32 values, expected {} {:?} values {:?}", v.len(), d.len(), d.dtype, d.shape))
            }
            (_, HostData::U32(v)) => {
                bad(format!("got {} u32 values, expected {} {:?} values {:?}", v.len(), d.len(), d.dtype, d.shape))
            }
        }
    }

    /// Reads a tensor back (blocking; not for inside a training loop's hot path). After a step,
    /// only the loss, gradients, parameters, inputs and the outputs the executor was asked to
    /// keep hold their values: other buffers are shared.
    pub fn read(&self, gpu: &Gpu, t: TensorId) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(gpu, t))
    }

    /// Milliseconds the last step spent on the host before its work was submitted: uploading
    /// inputs, recording the pass and submitting (0 in browsers, which have no clock here).
    pub fn last_host_ms(&self) -> f64 {
        self.host_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    }

    /// [`Executor::read`] without blocking (browsers).
    pub async fn read_async(&self, gpu: &Gpu, t: TensorId) -> Result<Vec<f32>> {
        let mut v = gpu.read_async(&self.tensors[t.0]).await?;
        v.truncate(self.graph.desc(t).len());
        Ok(v)
    }

    /// One step: uploads `inputs`, runs forward and backward, then Adam if `opts` asks, in one
    /// submit; returns the loss (NaN when the graph has none).
    pub fn step(&self, gpu: &Gpu, inputs: &[(TensorId, HostData)], opts: &StepOptions) -> Result<f32> {
        pollster::block_on(self.step_async(gpu, inputs, opts))
    }

    /// [`Executor::step`] without blocking: in a browser the loss arrives once the page's
    /// event loop has run the step.
    pub async fn step_async(&self, gpu: &Gpu, inputs: &[(TensorId, HostData<'_>)], opts: &StepOptions) -> Result<f32> {
        #[cfg(not(target_arch = "wasm32"))]
        let host_start = std::time::Instant::now();
        for &(t, data) in inputs {
            self.set(gpu, t, data)?;
        }
        let adam = opts.adam.as_ref();
        if let (Some(s), Some(opt)) = (adam, &self.optimizer) {
            Adam::set_step(gpu, &opt.hyper, s);
            match opts.clip {
                Some(max_norm) => {
                    let params = ClipParams { partials: opt.partials as u32, max_norm, _pad: [0; 2] };
                    gpu.write_buffer(&opt.clip_params, 0, bytemuck::bytes_of(&params));
                }
                None => gpu.write(&opt.grad_scale, &[1.0, f32::NAN])?,
            }
        }
        self.set_seed(gpu, opts.seed, adam.map_or(0, |a| a.step));
        let mut enc = gpu.encoder("step");
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            for d in self.node_dispatches.iter().flatten() {
                d.record(&mut pass);
            }
            if let (Some(_), Some(opt)) = (adam, &self.optimizer) {
                if opts.clip.is_some() {
                    for d in &opt.clip {
                        d.record(&mut pass);
                    }
                }
                for d in &opt.updates {
                    d.record(&mut pass);
                }
            }
        }
        if let Some(loss) = self.loss {
            enc.copy_buffer_to_buffer(&self.tensors[loss.0].buffer, 0, &self.loss_staging, 0, 4);
        }
        gpu.scoped("training step", || gpu.submit(enc.finish()))?;
        #[cfg(not(target_arch = "wasm32"))]
        self.host_ns.store(host_start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        let Some(_) = self.loss else {
            return gpu.wait().map(|_| f32::NAN);
        };
        let bytes = gpu.map_read(&self.loss_staging, 4).await?;
        Ok(bytemuck::pod_read_unaligned::<f32>(&bytes[..4]))
    }

    /// Times every node on its own (one pass each, GPU timestamps where available) and returns
    /// the total milliseconds per op name, largest first. Inputs and parameters must be set.
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<(&'static str, f64, usize)>> {
        let timer = crate::kernels::Timer::new(gpu);
        let mut per_op: std::collections::BTreeMap<&'static str, (f64, usize)> = Default::default();
        for (node, dispatches) in self.graph.nodes.iter().zip(&self.node_dispatches) {
            let ms = timer.time_once(gpu, dispatches)?;
            let name = match node.op {
                Op::MatMul { batched: true, .. } => "matmul (batched)",
                _ => node.op.name(),
            };
            let e = per_op.entry(name).or_default();
            e.0 += ms;
            e.1 += 1;
        }
        if let Some(opt) = &self.optimizer {
            let e = per_op.entry("adam").or_default();
            e.0 += timer.time_once(gpu, &opt.updates)?;
            e.1 += opt.updates.len();
        }
        let mut out: Vec<(&'static str, f64, usize)> = per_op.into_iter().map(|(k, (ms, n))| (k, ms, n)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }

    /// Adam's moments (param, m, v) for every updated parameter (blocking; for checkpoints).
    pub fn optimizer_state(&self, gpu: &Gpu) -> Result<crate::optim::Moments> {
        let Some(opt) = &self.optimizer else { return Ok(Vec::new()) };
        opt.state.iter().map(|(p, m, v)| Ok((*p, gpu.read(m)?, gpu.read(v)?))).collect()
    }

    /// Restores Adam's moments of `param` (from a checkpoint).
    pub fn set_optimizer_state(&self, gpu: &Gpu, param: TensorId, m: &[f32], v: &[f32]) -> Result<()> {
        let state = self.optimizer.as_ref().and_then(|o| o.state.iter().find(|(p, _, _)| *p == param));
        let Some((_, tm, tv)) = state else {
            return Err(Error::Input {
                name: self.graph.desc(param).name.clone(),
                msg: "has no optimizer state".into(),
            });
        };
        gpu.write(tm, m)?;
        gpu.write(tv, v)
    }

    /// The global gradient norm of the last step that clipped (blocking read; for logs).
    pub fn last_grad_norm(&self, gpu: &Gpu) -> Result<Option<f32>> {
        match &self.optimizer {
            Some(opt) => Ok(gpu.read(&opt.grad_scale)?.get(1).copied().filter(|v| v.is_finite())),
            None => Ok(None),
        }
    }

    fn set_seed(&self, gpu: &Gpu, seed: u32, step: u32) {
        gpu.write_buffer(&self.step_params, 0, bytemuck::bytes_of(&StepParams { seed, step, _pad: [0; 2] }));
    }

    /// Checked mode: runs the graph node by node (one submit each) and compares every output
    /// with the CPU reference computed from the GPU's own inputs to that node. Returns the
    /// first node that differs beyond `atol + rtol * |want|`. Inputs and parameters must be set.
    /// Dropout draws from `seed`.
    pub fn check_nodes(&self, gpu: &Gpu, seed: u32, atol: f64, rtol: f64) -> Result<()> {
        self.set_seed(gpu, seed, 0);
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.graph.tensors.len()];
        for (i, node) in self.graph.nodes.iter().enumerate() {
            kernels::run(gpu, &self.node_dispatches[i].iter().collect::<Vec<_>>())?;
            for t in &node.inputs {
                values[t.0] = self.read(gpu, *t)?;
            }
            let want = crate::reference::graph::run_node(&self.graph, node, &values, seed);
            for (t, w) in node.outputs.iter().zip(want) {
                let got = self.read(gpu, *t)?;
                if let Some(detail) = first_mismatch(&got, &w, atol, rtol) {
                    let tensor = self.graph.desc(*t).name.clone();
                    return Err(Error::Check { node: i, op: node.op.name(), tensor, detail });
                }
            }
        }
        Ok(())
    }
}

// `!(err <= tol)` on purpose: a NaN error is a mismatch.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn first_mismatch(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Option<String> {
    got.iter().zip(want).enumerate().find_map(|(i, (&g, &w))| {
        let err = (g as f64 - w as f64).abs();
        (!(err <= atol + rtol * (w as f64).abs())).then(|| format!("element {i}: got {g}, want {w}"))
    })
}

/// One buffer per plan slot; every tensor a view of its slot.
/// One buffer per plan slot (parameters in `shared` use those buffers instead; they have
/// slots of their own, being pinned).
fn allocate(gpu: &Gpu, g: &Graph, plan: &Plan, shared: &HashMap<TensorId, Tensor>) -> Result<Vec<Tensor>> {
    let mut owner = vec![0usize; plan.slot_bytes.len()];
    for (t, &s) in plan.slot_of.iter().enumerate() {
        if g.tensors[t].len() >= g.tensors[owner[s]].len() {
            owner[s] = t;
        }
    }
    let slots = plan
        .slot_bytes
        .iter()
        .zip(&owner)
        .map(|(&b, &t)| match shared.get(&TensorId(t)) {
            Some(_) => Ok(None),
            None => gpu.zeros(&g.tensors[t].name, (b / 4) as usize).map(Some),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(g.tensors
        .iter()
        .enumerate()
        .map(|(t, d)| {
            let buffer = match (&slots[plan.slot_of[t]], shared.get(&TensorId(t))) {
                (_, Some(s)) => s.buffer.clone(),
                (Some(slot), None) => slot.buffer.clone(),
                (None, None) => unreachable!("a slot without a buffer belongs to a shared parameter"),
            };
            Tensor { buffer, len: d.len(), dtype: if d.dtype == Dtype::U32 { DType::U32 } else { DType::F32 } }
        })
        .collect())
}

/// What some nodes need beyond their tensors.
struct NodeContext<'a> {
    step_params: &'a wgpu::Buffer,
    /// (order, starts) of an embedding gradient.
    id_groups: Option<(&'a Tensor, &'a Tensor)>,
}

/// The dispatches of one node.
fn encode_node(
    gpu: &Gpu,
    k: &KernelSet,
    g: &Graph,
    ts: &[Tensor],
    node: &Node,
    ctx: &NodeContext,
) -> Result<Vec<Dispatch>> {
    let i = |n: usize| &ts[node.inputs[n].0];
    let o = |n: usize| &ts[node.outputs[n].0];
    let in_desc = |n: usize| g.desc(node.inputs[n]);
    let (len, rows, cols) = (in_desc(0).len(), in_desc(0).rows(), in_desc(0).last_dim());
    Ok(match node.op {
        Op::MatMul { trans_a, trans_b, bias, batched } => {
            let d = matmul_dims(&in_desc(0).shape, &in_desc(1).shape, trans_a, trans_b, batched)
                .map_err(|m| Error::shape("matmul", m))?;
            let shape = MatmulShape { bias, ..MatmulShape::packed(d.batch, d.m, d.n, d.k, trans_a, trans_b) };
            vec![k.matmul.fwd(gpu, o(0), i(0), i(1), bias.then(|| i(2)), &shape)?]
        }
        Op::Add if in_desc(1).len() == len => vec![k.elementwise.add_fwd(gpu, o(0), i(0), i(1), len)?],
        Op::Add => vec![k.elementwise.add_bcast_fwd(gpu, o(0), i(0), i(1), len, in_desc(1).len())?],
        Op::Mul => vec![k.elementwise.mul_fwd(gpu, o(0), i(0), i(1), len)?],
        Op::MulBwd => vec![k.elementwise.mul_bwd(gpu, o(0), o(1), i(2), i(0), i(1), len)?],
        Op::Scale { alpha } => vec![k.elementwise.scale_fwd(gpu, o(0), i(0), alpha, len)?],
        Op::LayerNorm { eps } => vec![k.layernorm.fwd(gpu, o(0), o(1), o(2), i(0), i(1), i(2), rows, cols, eps)?],
        Op::LayerNormBwd => k.layernorm.bwd(gpu, o(0), o(1), o(2), i(0), i(1), i(2), i(3), i(4), rows, cols)?.to_vec(),
        Op::Gelu { kind } => vec![k.gelu.fwd(gpu, o(0), i(0), len, kind)?],
        Op::GeluBwd { kind } => vec![k.gelu.bwd(gpu, o(0), i(0), i(1), len, kind)?],
        Op::Relu => vec![k.elementwise.relu_fwd(gpu, o(0), i(0), len)?],
        Op::ReluBwd => vec![k.elementwise.relu_bwd(gpu, o(0), i(0), i(1), len)?],
        Op::Softmax => vec![k.softmax.fwd(gpu, o(0), i(0), rows, cols)?],
        Op::SoftmaxBwd => vec![k.softmax.bwd(gpu, o(0), i(0), i(1), rows, cols)?],
        Op::SumRows => {
            let cols = g.desc(node.outputs[0]).len();
            vec![k.reduce.fwd(gpu, o(0), i(0), len / cols, cols)?]
        }
        Op::SumRowsBwd => vec![k.reduce.bwd(gpu, o(0), i(0), g.desc(node.outputs[0]).len() / len, len)?],
        Op::SplitHeads { heads } => {
            let [b, t, c] = in_desc(0).shape[..] else {
                return Err(Error::shape("split_heads", "input is not (B, T, C)"));
            };
            vec![k.layout.swap12(gpu, o(0), i(0), [b, t, heads, c / heads])?]
        }
        Op::MergeHeads => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("merge_heads", "input is not 4D"))?;
            vec![k.layout.swap12(gpu, o(0), i(0), dims)?]
        }
        Op::Concat => {
            let (a, b) = (tokens3(in_desc(0))?, tokens3(in_desc(1))?);
            let total = a[1] + b[1];
            let copy = |src: [usize; 3], dst_off| TokenCopy {
                batch: b[0],
                channels: b[2],
                src_tokens: src[1],
                dst_tokens: total,
                src_off: 0,
                dst_off,
                len: src[1],
                src_broadcast: src[0] == 1 && b[0] > 1,
            };
            vec![
                k.layout.copy_tokens(gpu, o(0), i(0), &copy(a, 0))?,
                k.layout.copy_tokens(gpu, o(0), i(1), &copy(b, a[1]))?,
            ]
        }
        Op::Slice { dim, start, len } => {
            let [b, t, c] = crate::graph::around(&in_desc(0).shape, dim);
            let copy = TokenCopy {
                batch: b,
                channels: c,
                src_tokens: t,
                dst_tokens: len,
                src_off: start,
                dst_off: 0,
                len,
                src_broadcast: false,
            };
            vec![k.layout.copy_tokens(gpu, o(0), i(0), &copy)?]
        }
        Op::SliceBwd { dim, start, total } => {
            let [b, l, c] = crate::graph::around(&in_desc(0).shape, dim);
            let copy = TokenCopy {
                batch: b,
                channels: c,
                src_tokens: l,
                dst_tokens: total,
                src_off: 0,
                dst_off: start,
                len: l,
                src_broadcast: false,
            };
            vec![k.layout.fill(gpu, o(0), 0.0, b * total * c)?, k.layout.copy_tokens(gpu, o(0), i(0), &copy)?]
        }
        Op::Dropout { p, salt } => vec![k.dropout.prepare(gpu, o(0), i(0), len, p, salt, ctx.step_params, false)?],
        Op::DropoutBwd { p, salt } => vec![k.dropout.prepare(gpu, o(0), i(0), len, p, salt, ctx.step_params, true)?],
        Op::Embedding => {
            let (vocab, c) = (in_desc(0).shape[0], cols);
            vec![k.embedding.fwd(gpu, o(0), i(0), i(1), in_desc(1).len(), vocab, c)?]
        }
        Op::EmbeddingBwd => {
            let (order, starts) = ctx.id_groups.ok_or_else(|| Error::shape("embedding_bwd", "no id groups"))?;
            let d = g.desc(node.outputs[0]);
            vec![k.embedding.bwd(gpu, o(0), i(1), order, starts, in_desc(0).len(), d.shape[0], d.last_dim())?]
        }
        Op::Attention { heads, causal } | Op::AttentionBwd { heads, causal } => {
            let ([b, tq, c], [_, tk, _]) = (tokens3(in_desc(0))?, tokens3(in_desc(1))?);
            let s = AttentionShape { batch: b, heads, tq, tk, head_dim: c / heads, causal };
            if let Op::Attention { .. } = node.op {
                let lens = (node.inputs.len() > 3).then(|| i(3));
                vec![k.attention.fwd(gpu, o(0), o(1), i(0), i(1), i(2), lens, &s)?]
            } else {
                let lens = (node.inputs.len() > 6).then(|| i(6));
                k.attention.bwd(gpu, [o(0), o(1), o(2)], o(3), [i(0), i(1), i(2), i(3), i(4), i(5)], lens, &s)?.to_vec()
            }
        }
        Op::Patchify { patch } => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("patchify", "image is not 4D"))?;
            vec![k.layout.patchify(gpu, o(0), i(0), dims, patch, false)?]
        }
        Op::PatchifyBwd { patch } => {
            let dims = g.desc(node.outputs[0]).shape[..]
                .try_into()
                .map_err(|_| Error::shape("patchify", "image is not 4D"))?;
            vec![k.layout.patchify(gpu, o(0), i(0), dims, patch, true)?]
        }
        Op::Mask { causal } | Op::MaskBwd { causal } => {
            let dims = in_desc(0).shape[..].try_into().map_err(|_| Error::shape("mask", "scores are not 4D"))?;
            let lens = (node.inputs.len() > 1).then(|| i(1));
            vec![k.mask.prepare(gpu, o(0), i(0), lens, dims, causal, matches!(node.op, Op::MaskBwd { .. }))?]
        }
        Op::CrossEntropy { smoothing, ignore_index } => {
            k.cross_entropy.fwd(gpu, o(0), o(1), i(0), i(1), rows, cols, smoothing, ignore_index)?.to_vec()
        }
    })
}

/// (B, T, C) of a token tensor.
fn tokens3(d: &crate::graph::TensorDesc) -> Result<[usize; 3]> {
    d.shape[..].try_into().map_err(|_| Error::shape("tokens", format!("{} {:?} is not (B, T, C)", d.name, d.shape)))
}

/// Moments and one Adam dispatch per parameter with a gradient, in parameter order, and the
/// clipping dispatches (sums of squares of every gradient, then the factor).
fn prepare_adam(
    gpu: &Gpu,
    k: &KernelSet,
    g: &Graph,
    ts: &[Tensor],
    grads: &Gradients,
    shared: &HashMap<TensorId, (Tensor, Tensor)>,
) -> Result<Optimizer> {
    let with_grad: Vec<(TensorId, TensorId)> =
        g.params().into_iter().filter_map(|p| grads.get(p).map(|d| (p, d))).collect();
    let partials: usize = with_grad.iter().map(|(p, _)| partials_for(g.desc(*p).len())).sum();
    let partial = gpu.zeros("clip.partials", partials.max(1))?;
    let grad_scale = gpu.upload("adam.grad_scale", &[1.0, f32::NAN])?;
    let clip_params =
        gpu.hold(gpu.uniform("clip.params", &ClipParams { partials: partials as u32, max_norm: 1.0, _pad: [0; 2] }));
    let hyper = k.adam.hyper_params(gpu);
    let (mut updates, mut clip, mut state) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    for (p, grad) in with_grad {
        let n = g.desc(p).len();
        let name = &g.desc(p).name;
        let (m, v) = match shared.get(&p) {
            Some((m, v)) => (m.clone(), v.clone()),
            None => (gpu.zeros(&format!("{name}.adam_m"), n)?, gpu.zeros(&format!("{name}.adam_v"), n)?),
        };
        updates.push(k.adam.update(gpu, &hyper, &ts[p.0], &m, &v, &ts[grad.0], &grad_scale, n)?);
        clip.push(k.clip.sumsq(gpu, &partial, &ts[grad.0], n, offset)?);
        offset += partials_for(n);
        state.push((p, m, v));
    }
    clip.push(k.clip.scale(gpu, &grad_scale, &partial, partials, &clip_params)?);
    Ok(Optimizer { hyper, updates, clip, clip_params, partials, grad_scale, state })
}
