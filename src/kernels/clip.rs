//! Global-norm gradient clipping on the GPU: `shaders/clip.wgsl`.

use super::{check_len, check_loop_budget, dispatch, dispatch_entries, dispatch_with_uniforms, grid, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use bytemuck::Zeroable;

const WG: u32 = 256;
const ITEMS: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SumsqParams {
    n: u32,
    offset: u32,
    _pad: [u32; 2],
}

/// Mirrors `ClipParams` in clip.wgsl; rewritten every step that clips.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ClipParams {
    pub partials: u32,
    pub max_norm: f32,
    /// 1 / the loss scale of mixed-precision training (1 otherwise): gradients are unscaled
    /// with the clipping factor.
    pub inv_loss_scale: f32,
    pub _pad: u32,
}

/// Mirrors `SumsqMany` in clip.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SumsqMany {
    count: u32,
    offset: u32,
    total: u32,
    _pad: u32,
    starts: [u32; 8],
    ns: [u32; 8],
}

/// Gradients one `sumsq_many` dispatch sums (with the partials, the 8 storage buffers a stage
/// may bind on every WebGPU adapter).
pub use crate::graph::plan::CLIP_SUMSQ_TENSORS as SUMSQ_TENSORS;

/// The clipping kernels.
pub struct Clip {
    sumsq: wgpu::ComputePipeline,
    sumsq_many: wgpu::ComputePipeline,
    scale: wgpu::ComputePipeline,
}

/// Workgroups (and so partial sums) for a tensor of `n` elements.
pub fn partials_for(n: usize) -> usize {
    n.div_ceil((WG * ITEMS) as usize).max(1)
}

impl Clip {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("clip.wgsl", crate::shaders::CLIP)?;
        let c = [("WG", WG as f64), ("ITEMS", ITEMS as f64)];
        Ok(Clip {
            sumsq: gpu.pipeline(&module, "sumsq_partial", &c)?,
            sumsq_many: gpu.pipeline(&module, "sumsq_many", &c)?,
            scale: gpu.pipeline(&module, "clip_scale", &c)?,
        })
    }

    /// Sums of squares of `grad` (n elements) into `partial[offset..offset + partials_for(n)]`.
    pub fn sumsq(&self, gpu: &Gpu, partial: &Tensor, grad: &Tensor, n: usize, offset: usize) -> Result<Dispatch> {
        let op = "sumsq_partial";
        check_len(op, "grad", grad, n)?;
        check_len(op, "partial", partial, offset + partials_for(n))?;
        let params = SumsqParams { n: u32_of(op, "n", n)?, offset: u32_of(op, "offset", offset)?, _pad: [0; 2] };
        dispatch(gpu, op, &self.sumsq, &[partial, grad], &params, grid(gpu, op, partials_for(n) as u64)?)
    }

    /// [`Clip::sumsq`] of 1 to [`SUMSQ_TENSORS`] gradients (each with its element count) in
    /// one dispatch: their partials one after another from `offset`, the same values one
    /// dispatch each would write.
    pub fn sumsq_many(
        &self,
        gpu: &Gpu,
        partial: &Tensor,
        grads: &[(&Tensor, usize)],
        offset: usize,
    ) -> Result<Dispatch> {
        let op = "sumsq_many";
        if grads.is_empty() || grads.len() > SUMSQ_TENSORS {
            return Err(Error::shape(op, format!("{} gradients (1 to {SUMSQ_TENSORS})", grads.len())));
        }
        let mut p =
            SumsqMany { count: grads.len() as u32, offset: u32_of(op, "offset", offset)?, ..Zeroable::zeroed() };
        let mut total = 0;
        for (t, &(grad, n)) in grads.iter().enumerate() {
            check_len(op, "grad", grad, n)?;
            (p.starts[t], p.ns[t]) = (u32_of(op, "workgroups", total)?, u32_of(op, "n", n)?);
            total += partials_for(n);
        }
        check_len(op, "partial", partial, offset + total)?;
        p.total = u32_of(op, "workgroups", total)?;
        let params = gpu.uniform(op, &p);
        let mut entries: Vec<wgpu::BindGroupEntry> = vec![
            wgpu::BindGroupEntry { binding: 0, resource: partial.buffer().as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: params.as_entire_binding() },
        ];
        // Unused gradient bindings get the first gradient (nothing reads them).
        for t in 0..SUMSQ_TENSORS {
            let grad = grads.get(t).unwrap_or(&grads[0]).0;
            entries.push(wgpu::BindGroupEntry { binding: 2 + t as u32, resource: grad.buffer().as_entire_binding() });
        }
        dispatch_entries(gpu, op, &self.sumsq_many, &entries, grid(gpu, op, total as u64)?)
    }

    /// `out[0]` = the clipping factor, `out[1]` = the global norm, from `partials` partial sums;
    /// `params` holds a [`ClipParams`] the caller rewrites with each step's max norm.
    pub fn scale(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        partial: &Tensor,
        partials: usize,
        params: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let op = "clip_scale";
        check_len(op, "out", out, 2)?;
        check_len(op, "partial", partial, partials)?;
        check_loop_budget(gpu, op, partials.div_ceil(WG as usize) as u64 + 16, &format!("{partials} partial sums"))?;
        dispatch_with_uniforms(gpu, op, &self.scale, &[out, partial], &[params], [1, 1, 1])
    }
}
