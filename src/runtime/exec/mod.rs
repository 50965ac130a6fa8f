//! The executor: owns the buffers, bind groups and uniforms of one planned graph, all created
//! once, and records a whole training step (forward, backward, optimizer) into one command
//! encoder with one compute pass and ONE submit. Only the loss is read back. A checked mode
//! runs node by node and compares each output with the CPU reference. The lowering of each
//! op to dispatches is in `lower.rs`, Adam and clipping in `optimizer.rs`, checked mode in
//! `checked.rs`, per-node timing in `profile.rs`.

mod checked;
#[cfg(not(target_arch = "wasm32"))]
mod data_parallel;
mod lower;
mod optimizer;
mod profile;
#[cfg(not(target_arch = "wasm32"))]
pub use data_parallel::CommStats;
pub use profile::MatmulProfile;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Held, Tensor};
use crate::graph::autodiff::Gradients;
use crate::graph::plan::{plan, training_pinned, Plan};
use crate::graph::{AdamStep, Dtype, Graph, Op, TensorId};
use crate::kernels::clip::ClipParams;
use crate::kernels::dropout::StepParams;
use crate::kernels::{Adam, Dispatch, KernelSet};
use lower::{encode_node, NodeContext};
use optimizer::{prepare_adam, Optimizer};
use std::collections::HashMap;

/// Values for one input or parameter.
#[derive(Clone, Copy, Debug)]
pub enum HostData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

/// A graph ready to run on one GPU.
pub struct Executor {
    graph: Graph,
    plan: Plan,
    tensors: Vec<Tensor>,
    node_dispatches: Vec<Vec<Dispatch>>,
    optimizer: Option<Optimizer>,
    loss: Option<TensorId>,
    /// The loss and the global gradient norm of the last step, read back together.
    loss_staging: Held<wgpu::Buffer>,
    /// The last step's gradient norm, when it clipped.
    last_norm: std::sync::Mutex<Option<f32>>,
    /// Host time of the last step, from its start to the submit's return (ns; not in browsers).
    host_ns: std::sync::atomic::AtomicU64,
    /// u32 inputs that index something: (tensor, exclusive bound, allowed exception), checked
    /// on upload (cross-entropy targets with their ignore index, embedding ids).
    id_checks: Vec<(TensorId, usize, Option<u32>)>,
    /// Embedding gradients read their ids grouped by value, made on the host at upload:
    /// (ids, vocabulary, order, starts).
    id_groups: Vec<IdGroups>,
    /// The uniform with the step's seed, read by dropout.
    step_params: Held<wgpu::Buffer>,
    /// The loss scale (1 element) the cross-entropy's gradient is multiplied by, written by
    /// every step (1 unless [`StepOptions::loss_scale`] says otherwise).
    loss_scale: Tensor,
    /// Data-parallel steps: gradient buckets (made on the first such step) and the last
    /// step's communication.
    #[cfg(not(target_arch = "wasm32"))]
    buckets: std::sync::OnceLock<Vec<data_parallel::Bucket>>,
    #[cfg(not(target_arch = "wasm32"))]
    comm: std::sync::Mutex<CommStats>,
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
    /// Multiply the loss's gradient by this (mixed precision: small f16 gradients stay above
    /// f16's underflow). Gradients are unscaled with the clipping factor before Adam, and a
    /// step whose scaled gradients overflowed is skipped on the GPU; its norm
    /// ([`Executor::last_step_norm`]) reads inf or NaN.
    pub loss_scale: Option<f32>,
    /// Multiply the loss's gradient by this as well, without unscaling it: a data-parallel
    /// rank's share of the global loss (its examples or tokens over the global batch's).
    pub loss_weight: Option<f32>,
}

/// The token ids of an embedding's backward grouped by id (see `kernels::embedding::group_ids`),
/// written with every upload of `ids`.
struct IdGroups {
    ids: TensorId,
    vocab: usize,
    /// The row that gets no gradient.
    padding: Option<u32>,
    order: Tensor,
    starts: Tensor,
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
        let (mut graph, f16) = lower::cast_products(gpu, graph)?;
        let mut pinned = training_pinned(loss, grads);
        pinned.extend_from_slice(outputs);
        if gpu.settings.kernels.fusion {
            crate::graph::fuse::fuse(&mut graph, &pinned);
        }
        let plan = plan(&graph, &pinned);
        let shared = with.map(|w| w.shared_params(&graph)).unwrap_or_default();
        let tensors = allocate(gpu, &graph, &plan, &shared)?;
        let step_params = gpu.hold(gpu.uniform("step params", &StepParams { seed: 0, step: 0, shard: 0, _pad: 0 }));
        let loss_scale = gpu.upload("loss scale", &[1.0])?;
        let mut id_groups = Vec::new();
        let mut node_dispatches = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let groups = if let Op::EmbeddingBwd { padding } = node.op {
                let (ids, vocab) = (node.inputs[0], graph.desc(node.outputs[0]).shape[0]);
                let order = gpu.zeros_u32("embedding.order", graph.desc(ids).len())?;
                let starts = gpu.zeros_u32("embedding.starts", vocab + 1)?;
                id_groups.push(IdGroups { ids, vocab, padding, order, starts });
                id_groups.last().map(|g| (&g.order, &g.starts))
            } else {
                None
            };
            let ctx = NodeContext {
                step_params: &step_params,
                id_groups: groups,
                loss_scale: &loss_scale,
                f16: f16.as_deref(),
            };
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
                size: 8,
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
                Op::Embedding { .. } => Some((n.inputs[1], graph.desc(n.inputs[0]).shape[0], None)),
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
            last_norm: Default::default(),
            host_ns: Default::default(),
            id_checks,
            id_groups,
            step_params,
            loss_scale,
            #[cfg(not(target_arch = "wasm32"))]
            buckets: Default::default(),
            #[cfg(not(target_arch = "wasm32"))]
            comm: Default::default(),
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

    /// Dispatches of the forward and backward nodes (as fused) per step.
    pub fn forward_backward_dispatches(&self) -> usize {
        self.node_dispatches.iter().map(|d| d.len()).sum()
    }

    /// Dispatches one step records: the forward and backward's (fused), clipping and Adam.
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
                for g in &self.id_groups {
                    if g.ids == t {
                        let (o, s) = crate::kernels::embedding::group_ids(v, g.vocab, g.padding);
                        gpu.write_raw(&g.order, &o)?;
                        gpu.write_raw(&g.starts, &s)?;
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
        let clip = self.prepare_step(gpu, inputs, opts, 0)?;
        let mut enc = gpu.encoder("step");
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            for d in self.node_dispatches.iter().flatten() {
                d.record(&mut pass);
            }
            self.record_optimizer(&mut pass, opts, clip);
        }
        let clipped = self.clipping(opts, clip);
        if let Some(loss) = self.loss {
            enc.copy_buffer_to_buffer(&self.tensors[loss.0].buffer, 0, &self.loss_staging, 0, 4);
            if let Some(opt) = clipped {
                enc.copy_buffer_to_buffer(&opt.grad_scale.buffer, 4, &self.loss_staging, 4, 4);
            }
        }
        gpu.scoped("training step", || gpu.submit(enc.finish()))?;
        #[cfg(not(target_arch = "wasm32"))]
        self.host_ns.store(host_start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        let Some(_) = self.loss else {
            return gpu.wait().map(|_| f32::NAN);
        };
        let bytes = gpu.map_read(&self.loss_staging, 8).await?;
        let norm = clipped.map(|_| bytemuck::pod_read_unaligned::<f32>(&bytes[4..8]));
        if let Ok(mut slot) = self.last_norm.lock() {
            *slot = norm;
        }
        Ok(bytemuck::pod_read_unaligned::<f32>(&bytes[..4]))
    }

    /// Uploads `inputs` and writes the step's uniforms (Adam's values, clipping, loss scale,
    /// dropout seed); returns the clipping limit the step runs with.
    /// `shard` is the data-parallel rank, whose dropout masks are those of its share of the
    /// global batch (0 in one process).
    fn prepare_step(
        &self,
        gpu: &Gpu,
        inputs: &[(TensorId, HostData<'_>)],
        opts: &StepOptions,
        shard: u32,
    ) -> Result<Option<f32>> {
        for &(t, data) in inputs {
            self.set(gpu, t, data)?;
        }
        let adam = opts.adam.as_ref();
        // A scaled loss takes the clipping path without a limit: it unscales the gradients and
        // finds the steps whose gradients overflowed.
        let clip = opts.clip.or(opts.loss_scale.map(|_| f32::MAX));
        if let (Some(s), Some(opt)) = (adam, &self.optimizer) {
            Adam::set_step(gpu, &opt.hyper, s);
            match clip {
                Some(max_norm) => {
                    let inv_loss_scale = 1.0 / opts.loss_scale.unwrap_or(1.0);
                    let params = ClipParams { partials: opt.partials as u32, max_norm, inv_loss_scale, _pad: 0 };
                    gpu.write_buffer(&opt.clip_params, 0, bytemuck::bytes_of(&params));
                }
                None => gpu.write(&opt.grad_scale, &[1.0, f32::NAN])?,
            }
        }
        if self.loss.is_some() {
            let multiplier = opts.loss_scale.unwrap_or(1.0) * opts.loss_weight.unwrap_or(1.0);
            gpu.write(&self.loss_scale, &[multiplier])?;
        }
        self.set_seed(gpu, opts.seed, adam.map_or(0, |a| a.step), shard);
        Ok(clip)
    }

    /// Records clipping (when `clip` is set) and Adam, when the step asks for Adam.
    fn record_optimizer(&self, pass: &mut wgpu::ComputePass<'_>, opts: &StepOptions, clip: Option<f32>) {
        if let (Some(_), Some(opt)) = (opts.adam, &self.optimizer) {
            if clip.is_some() {
                for d in &opt.clip {
                    d.record(pass);
                }
            }
            for d in &opt.updates {
                d.record(pass);
            }
        }
    }

    /// The optimizer, when this step clips with it (its norm is then read back).
    fn clipping(&self, opts: &StepOptions, clip: Option<f32>) -> Option<&Optimizer> {
        match (opts.adam, &self.optimizer, clip) {
            (Some(_), Some(opt), Some(_)) => Some(opt),
            _ => None,
        }
    }

    /// The global gradient norm of the last step (read back with its loss), `None` when that
    /// step did not clip or the graph has no loss. A NaN or inf norm means Adam skipped the
    /// step.
    pub fn last_step_norm(&self) -> Option<f32> {
        self.last_norm.lock().ok().and_then(|slot| *slot)
    }

    fn set_seed(&self, gpu: &Gpu, seed: u32, step: u32, shard: u32) {
        gpu.write_buffer(&self.step_params, 0, bytemuck::bytes_of(&StepParams { seed, step, shard, _pad: 0 }));
    }
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
            let dtype = match d.dtype {
                Dtype::F32 => DType::F32,
                Dtype::U32 => DType::U32,
                Dtype::F16 => DType::F16,
            };
            Tensor { buffer, len: d.len(), dtype }
        })
        .collect())
}
