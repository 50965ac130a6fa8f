//! GPU kernels: one `.rs` per `.wgsl`. Pipelines are built once in `new`; each `fwd`/`bwd`
//! call checks sizes, creates its params uniform and bind group ONCE and returns a [`Dispatch`],
//! which only records into a compute pass the caller owns. A training step replays its
//! dispatches without creating anything.

pub mod adam;
pub mod attention;
pub mod cast;
pub mod chain;
pub mod clip;
pub mod crossentropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod f16_forms;
pub mod gelu;
mod half_form;
pub mod layernorm;
pub mod layout;
pub mod mask;
pub mod matmul;
pub mod matmul_f16;
pub mod reduce;
pub mod softmax;
pub mod timer;
pub mod tuning;

pub use adam::Adam;
pub use attention::Attention;
pub use chain::ChainKernels;
pub use clip::Clip;
pub use crossentropy::CrossEntropy;
pub use dropout::Dropout;
pub use elementwise::Elementwise;
pub use embedding::Embedding;
pub use gelu::{Gelu, GeluKind};
pub(crate) use half_form::HalfForm;
pub use layernorm::LayerNorm;
pub use layout::Layout;
pub use mask::Mask;
pub use matmul::{Matmul, MatmulExtras, MatmulShape};
pub use matmul_f16::MatmulF16;
pub use reduce::Reduce;
pub use softmax::{RowVariant, Softmax};
pub use timer::Timer;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Held, Tensor};

/// Every kernel family: what an executor dispatches from. Holds no per-run state, so one set
/// serves every executor on a device.
pub struct KernelSet {
    pub matmul: Matmul,
    pub layernorm: LayerNorm,
    pub gelu: Gelu,
    pub softmax: Softmax,
    pub elementwise: Elementwise,
    /// Elementwise chains' generated kernels.
    pub chain: ChainKernels,
    pub reduce: Reduce,
    pub cross_entropy: CrossEntropy,
    pub adam: Adam,
    pub layout: Layout,
    pub dropout: Dropout,
    pub embedding: Embedding,
    pub mask: Mask,
    pub clip: Clip,
    pub attention: Attention,
}

/// The kernels of mixed-precision products: the casts and the f16 matmul. Built on first use
/// (only where the adapter has f16 shaders), shared per device.
pub struct F16Set {
    pub cast: cast::Cast,
    /// True where products take f16 values rounded into f32 tensors (the f32 kernels) by
    /// default, false where they read f16 tensors.
    pub rounded: bool,
    matmul: std::sync::OnceLock<MatmulF16>,
}

impl F16Set {
    /// The device's set; an error naming the adapter where it has no f16 shaders. CPU adapters
    /// without matrix units round the operands to f16 values kept in f32 and run the f32
    /// register-tile matmul: the same numbers as f16 operands with f32 accumulation (a product
    /// of two f16 values is exact in f32) at f32's speed, where lavapipe ran the tiled f16
    /// kernel at a tenth of it (a vit-tiny step: 30 s against 3.2-4.2). Elsewhere, and with
    /// `WGFORMER_MATMUL_F16=tiled|coop`, f16 operands; `WGFORMER_MATMUL_F16=rounded` asks
    /// for the rounded ones anywhere.
    pub fn of(gpu: &Gpu) -> Result<std::sync::Arc<Self>> {
        gpu.shared(|gpu| {
            let cast = cast::Cast::new(gpu)?;
            let rounded = match gpu.settings.kernels.f16_products {
                Some(crate::settings::F16Products::Rounded) => true,
                Some(_) => false,
                None => gpu.is_cpu() && matmul_f16::coop_subgroup(gpu).is_none(),
            };
            let set = F16Set { cast, rounded, matmul: Default::default() };
            if !rounded {
                set.matmul(gpu)?;
            }
            Ok(set)
        })
    }

    /// The matmul of f16 tensors (made on first use where the set rounds by default: a graph
    /// cast for f16 storage runs anywhere with f16 shaders).
    pub fn matmul(&self, gpu: &Gpu) -> Result<&MatmulF16> {
        if let Some(mm) = self.matmul.get() {
            return Ok(mm);
        }
        let mm = MatmulF16::new(gpu)?;
        Ok(self.matmul.get_or_init(|| mm))
    }

    /// How products run in mixed precision here, in words.
    pub fn describe(&self) -> String {
        match (self.rounded, self.matmul.get()) {
            (false, Some(mm)) => format!("f16 operands, {} kernel", mm.variant().name()),
            _ => "operands rounded to f16 values, f32 register-tile kernel".into(),
        }
    }
}

impl KernelSet {
    /// The device's kernel set: built (shaders validated and compiled) by the first caller,
    /// shared by every executor after it. Pipelines are compiled on first use and kept.
    pub fn of(gpu: &Gpu) -> Result<std::sync::Arc<Self>> {
        gpu.shared(Self::new)
    }

    /// A kernel set of its own (most callers want the device's shared one, [`KernelSet::of`]).
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(KernelSet {
            matmul: Matmul::new(gpu)?,
            layernorm: LayerNorm::new(gpu)?,
            gelu: Gelu::new(gpu)?,
            softmax: Softmax::new(gpu)?,
            elementwise: Elementwise::new(gpu)?,
            chain: ChainKernels::default(),
            reduce: Reduce::new(gpu)?,
            cross_entropy: CrossEntropy::new(gpu)?,
            adam: Adam::new(gpu)?,
            layout: Layout::new(gpu)?,
            dropout: Dropout::new(gpu)?,
            embedding: Embedding::new(gpu)?,
            mask: Mask::new(gpu)?,
            clip: Clip::new(gpu)?,
            attention: Attention::new(gpu)?,
        })
    }
}

/// One recorded kernel launch: pipeline, bind group and workgroup counts, ready to replay.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub label: &'static str,
    /// Dropped during the device's turn: the bind group may hold the last reference to a
    /// uniform buffer.
    resources: Held<(wgpu::ComputePipeline, wgpu::BindGroup)>,
    groups: [u32; 3],
}

impl Dispatch {
    /// Records this launch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        let (pipeline, bind_group) = &*self.resources;
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    /// Workgroups launched (x, y, z).
    pub fn groups(&self) -> [u32; 3] {
        self.groups
    }
}

/// Builds a dispatch: `tensors` bound at 0.. in order (outputs first, then inputs), a new
/// uniform holding `params` after them.
pub(crate) fn dispatch<P: bytemuck::Pod>(
    gpu: &Gpu,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    tensors: &[&Tensor],
    params: &P,
    groups: [u32; 3],
) -> Result<Dispatch> {
    let uniform = gpu.uniform(label, params);
    dispatch_with_uniforms(gpu, label, pipeline, tensors, &[&uniform], groups)
}

/// Builds a dispatch: `tensors` bound at 0.., then `uniforms` (shared or per-dispatch).
pub(crate) fn dispatch_with_uniforms(
    gpu: &Gpu,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    tensors: &[&Tensor],
    uniforms: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let resources =
        tensors.iter().map(|t| t.buffer.as_entire_binding()).chain(uniforms.iter().map(|u| u.as_entire_binding()));
    let entries: Vec<wgpu::BindGroupEntry> =
        resources.enumerate().map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource }).collect();
    dispatch_entries(gpu, label, pipeline, &entries, groups)
}

/// Builds a dispatch whose resources are bound at the numbers `entries` give (kernels whose
/// entry points use different subsets of one module's bindings).
pub(crate) fn dispatch_entries(
    gpu: &Gpu,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    entries: &[wgpu::BindGroupEntry],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let bind_group = gpu.scoped(label, || {
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries,
        })
    })?;
    Ok(Dispatch { label, resources: gpu.hold((pipeline.clone(), bind_group)), groups })
}

/// A grid covering `n` workgroups, folded into y when x would pass the 65535 limit.
pub(crate) fn grid(gpu: &Gpu, op: &'static str, n: u64) -> Result<[u32; 3]> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as u64;
    if n == 0 {
        return Ok([0, 1, 1]);
    }
    let x = n.min(max);
    let y = n.div_ceil(x);
    if y > max {
        return Err(Error::shape(op, format!("{n} workgroups exceed the adapter's {max} x {max} grid")));
    }
    Ok([x as u32, y as u32, 1])
}

/// Checks that `t` is f32 with at least `len` elements.
pub(crate) fn check_len(op: &'static str, name: &str, t: &Tensor, len: usize) -> Result<()> {
    check_typed(op, name, t, len, DType::F32)
}

/// Checks that `t` is f32 or f16 (a value mixed precision may keep in half precision) with at
/// least `len` elements.
pub(crate) fn check_f32_or_f16(op: &'static str, name: &str, t: &Tensor, len: usize) -> Result<()> {
    check_typed(op, name, t, len, if t.dtype == DType::F16 { DType::F16 } else { DType::F32 })
}

/// Checks that `t` has type `dtype` and at least `len` elements.
pub(crate) fn check_typed(op: &'static str, name: &str, t: &Tensor, len: usize, dtype: DType) -> Result<()> {
    if t.dtype != dtype {
        return Err(Error::shape(op, format!("{name} must be {dtype:?}, got {:?}", t.dtype)));
    }
    if t.len < len {
        return Err(Error::shape(op, format!("{name} has {} elements, needs {len}", t.len)));
    }
    Ok(())
}

/// Refuses a launch whose invocations would run more loop iterations than the driver allows
/// (see [`Gpu::loop_budget`]), rather than returning silently truncated results.
pub(crate) fn check_loop_budget(gpu: &Gpu, op: &'static str, iterations: u64, what: &str) -> Result<()> {
    match gpu.loop_budget() {
        Some(max) if iterations > max => Err(Error::shape(
            op,
            format!(
                "{what} needs {iterations} loop iterations per invocation, over {}'s limit of {max}",
                gpu.info.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Converts a size to u32 for a params struct, or refuses it.
pub(crate) fn u32_of(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::shape(op, format!("{what} = {v} does not fit in 32 bits")))
}

/// The value in `cell`, built by `build` on first use (pipelines compiled only when needed).
pub(crate) fn lazy<T>(cell: &std::sync::OnceLock<T>, build: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = build()?;
    Ok(cell.get_or_init(|| v))
}

/// Runs `dispatches` in one pass and one submit, and waits for them (tests, simple callers).
pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<()> {
    gpu.scoped("run", || {
        let mut enc = gpu.encoder("run");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        gpu.submit(enc.finish());
    })?;
    gpu.wait()
}
