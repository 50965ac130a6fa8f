//! GELU forward and backward, exact (erf) or tanh-approximated: `shaders/gelu.wgsl`.

use super::{check_f32_or_f16, dispatch, grid, u32_of, Dispatch, HalfForm};
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

const WG: u32 = 256;

pub use crate::graph::params::GeluKind;

/// Mirrors `GeluParams` in gelu.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GeluParams {
    n: u32,
    approximate: u32,
    _pad: [u32; 2],
}

/// The GELU kernels; every operand may be f16 (mixed precision's half-precision tensors).
pub struct Gelu {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
    half: HalfForm,
}

impl Gelu {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("gelu.wgsl", crate::shaders::GELU)?;
        let wg = [("WG", WG as f64)];
        Ok(Gelu {
            fwd: gpu.pipeline(&module, "gelu_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "gelu_bwd", &wg)?,
            half: HalfForm::new(&super::f16_forms::GELU),
        })
    }

    fn params(op: &'static str, n: usize, kind: GeluKind) -> Result<GeluParams> {
        Ok(GeluParams { n: u32_of(op, "n", n)?, approximate: (kind == GeluKind::Tanh) as u32, _pad: [0; 2] })
    }

    /// out = gelu(inp) over `n` elements; each f32 or f16.
    pub fn fwd(&self, gpu: &Gpu, out: &Tensor, inp: &Tensor, n: usize, kind: GeluKind) -> Result<Dispatch> {
        check_f32_or_f16("gelu_fwd", "out", out, n)?;
        check_f32_or_f16("gelu_fwd", "inp", inp, n)?;
        let groups = grid(gpu, "gelu_fwd", (n as u64).div_ceil(WG as u64))?;
        let pipeline = self.half.for_types(gpu, &[inp, out], &self.fwd, "gelu_fwd", &[("WG", WG as f64)])?;
        dispatch(gpu, "gelu_fwd", &pipeline, &[out, inp], &Self::params("gelu_fwd", n, kind)?, groups)
    }

    /// dinp = dout * gelu'(inp) over `n` elements; each f32 or f16.
    pub fn bwd(
        &self,
        gpu: &Gpu,
        dinp: &Tensor,
        inp: &Tensor,
        dout: &Tensor,
        n: usize,
        kind: GeluKind,
    ) -> Result<Dispatch> {
        check_f32_or_f16("gelu_bwd", "dinp", dinp, n)?;
        check_f32_or_f16("gelu_bwd", "inp", inp, n)?;
        check_f32_or_f16("gelu_bwd", "dout", dout, n)?;
        let groups = grid(gpu, "gelu_bwd", (n as u64).div_ceil(WG as u64))?;
        let pipeline = self.half.for_types(gpu, &[inp, dinp, dout], &self.bwd, "gelu_bwd", &[("WG", WG as f64)])?;
        dispatch(gpu, "gelu_bwd", &pipeline, &[dinp, inp, dout], &Self::params("gelu_bwd", n, kind)?, groups)
    }
}
