//! Dropout from a counter-based hash, no stored mask: `shaders/dropout.wgsl`.

use super::{check_f32_or_f16, dispatch_with_uniforms, grid, u32_of, Dispatch, HalfForm};
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DropoutParams {
    n: u32,
    threshold: u32,
    scale: f32,
    salt: u32,
}

/// Mirrors `StepParams` in dropout.wgsl: what changes every step.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub seed: u32,
    pub step: u32,
    /// A data-parallel rank's place in the global batch: dropout keys element i of a node on
    /// shard s as element i + s * n, its index in the whole batch (0 in one process).
    pub shard: u32,
    pub _pad: u32,
}

/// The dropout kernels.
pub struct Dropout {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
    /// Forms with the input or the output in f16 (mixed precision).
    half: HalfForm,
}

pub use crate::graph::params::dropout_constants;

impl Dropout {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("dropout.wgsl", crate::shaders::DROPOUT)?;
        let wg = [("WG", WG as f64)];
        Ok(Dropout {
            fwd: gpu.pipeline(&module, "dropout_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "dropout_bwd", &wg)?,
            half: HalfForm::new(&super::f16_forms::DROPOUT),
        })
    }

    /// y = dropout(x) (`backward` false) or dx = dropout'(dy) (`backward` true) over `n`
    /// elements, with the seed in `step` (a uniform holding [`StepParams`]); `out` and `inp`
    /// each f32 or f16.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        inp: &Tensor,
        n: usize,
        p: f32,
        salt: u32,
        step: &wgpu::Buffer,
        backward: bool,
    ) -> Result<Dispatch> {
        let op = if backward { "dropout_bwd" } else { "dropout_fwd" };
        check_f32_or_f16(op, "out", out, n)?;
        check_f32_or_f16(op, "inp", inp, n)?;
        let (threshold, scale) = dropout_constants(p)?;
        let params = gpu.uniform(op, &DropoutParams { n: u32_of(op, "n", n)?, threshold, scale, salt });
        let f32_form = if backward { &self.bwd } else { &self.fwd };
        let pipeline = self.half.for_types(gpu, &[inp, out], f32_form, op, &[("WG", WG as f64)])?;
        dispatch_with_uniforms(
            gpu,
            op,
            &pipeline,
            &[out, inp],
            &[&params, step],
            grid(gpu, op, (n as u64).div_ceil(WG as u64))?,
        )
    }
}
