//! Adam / AdamW parameter updates on the GPU: `shaders/adam.wgsl`.

use super::{check_len, dispatch_with_uniforms, grid, u32_of, Dispatch};
use crate::error::Result;
use crate::gpu::{Gpu, Held, Tensor};
use crate::graph::AdamStep;

const WG: u32 = 256;

/// Mirrors `AdamSize` in adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamSize {
    n: u32,
    _pad: [u32; 3],
}

/// Mirrors `AdamHyper` in adam.wgsl: the per-step values shared by every parameter.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamHyper {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bc1: f32,
    bc2: f32,
    _pad: f32,
}

/// The Adam kernel (shared by every optimizer on the device).
pub struct Adam {
    pipeline: wgpu::ComputePipeline,
}

/// The per-step values that every update of one optimizer reads: one uniform per optimizer,
/// rewritten before each step by [`Adam::set_step`].
pub struct AdamHyperParams(Held<wgpu::Buffer>);

impl Adam {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("adam.wgsl", crate::shaders::ADAM)?;
        Ok(Adam { pipeline: gpu.pipeline(&module, "adam_update", &[("WG", WG as f64)])? })
    }

    /// A new uniform for the hyper-parameters of one optimizer's steps.
    pub fn hyper_params(&self, gpu: &Gpu) -> AdamHyperParams {
        AdamHyperParams(gpu.hold(gpu.uniform("adam.hyper", &AdamHyper::zeroed_default())))
    }

    /// Prepares the update of one parameter tensor; `grad_scale` (1 element) multiplies the
    /// gradient (1, or a clipping factor computed on the GPU).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        gpu: &Gpu,
        hyper: &AdamHyperParams,
        param: &Tensor,
        m: &Tensor,
        v: &Tensor,
        grad: &Tensor,
        grad_scale: &Tensor,
        n: usize,
    ) -> Result<Dispatch> {
        for (name, t) in [("param", param), ("m", m), ("v", v), ("grad", grad)] {
            check_len("adam_update", name, t, n)?;
        }
        check_len("adam_update", "grad_scale", grad_scale, 1)?;
        let size = gpu.uniform("adam.size", &AdamSize { n: u32_of("adam_update", "n", n)?, _pad: [0; 3] });
        let groups = grid(gpu, "adam_update", (n as u64).div_ceil(WG as u64))?;
        dispatch_with_uniforms(
            gpu,
            "adam_update",
            &self.pipeline,
            &[param, m, v, grad, grad_scale],
            &[&size, &hyper.0],
            groups,
        )
    }

    /// Sets the step's hyper-parameters for every update prepared with `hyper` (a queue write:
    /// it takes effect for the next submit, with no allocation).
    pub fn set_step(gpu: &Gpu, hyper: &AdamHyperParams, s: &AdamStep) {
        let t = s.step.max(1) as i32;
        let values = AdamHyper {
            lr: s.lr,
            beta1: s.beta1,
            beta2: s.beta2,
            eps: s.eps,
            weight_decay: s.weight_decay,
            bc1: (1.0 - (s.beta1 as f64).powi(t)) as f32,
            bc2: (1.0 - (s.beta2 as f64).powi(t)) as f32,
            _pad: 0.0,
        };
        gpu.write_buffer(&hyper.0, 0, bytemuck::bytes_of(&values));
    }
}

impl AdamHyper {
    fn zeroed_default() -> Self {
        AdamHyper { lr: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, bc1: 1.0, bc2: 1.0, _pad: 0.0 }
    }
}
