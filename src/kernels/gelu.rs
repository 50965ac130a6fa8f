//! GELU forward and backward, exact (erf) or tanh-approximated: `shaders/gelu.wgsl`.

use super::{check_len, dispatch, grid, u32_of, Dispatch};
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

/// The GELU kernels.
pub struct Gelu {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
}

impl Gelu {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("gelu.wgsl", crate::shaders::GELU)?;
        let wg = [("WG", WG as f64)];
        Ok(Gelu { fwd: gpu.pipeline(&module, "gelu_fwd", &wg)?, bwd: gpu.pipeline(&module, "gelu_bwd", &wg)? })
    }

    fn params(op: &'static str, n: usize, kind: GeluKind) -> Result<GeluParams> {
        Ok(GeluParams { n: u32_of(op, "n", n)?, approximate: (kind == GeluKind::Tanh) as u32, _pad: [0; 2] })
    }

    /// out = gelu(inp) over `n` elements.
    pub fn fwd(&self, gpu: &Gpu, out: &Tensor, inp: &Tensor, n: usize, kind: GeluKind) -> Result<Dispatch> {
        check_len("gelu_fwd", "out", out, n)?;
        check_len("gelu_fwd", "inp", inp, n)?;
        let groups = grid(gpu, "gelu_fwd", (n as u64).div_ceil(WG as u64))?;
        dispatch(gpu, "gelu_fwd", &self.fwd, &[out, inp], &Self::params("gelu_fwd", n, kind)?, groups)
    }

    /// dinp = dout * gelu'(inp) over `n` elements.
    pub fn bwd(
        &self,
        gpu: &Gpu,
        dinp: &Tensor,
        inp: &Tensor,
        dout: &Tensor,
        n: usize,
        kind: GeluKind,
    ) -> Result<Dispatch> {
        for (name, t) in [("dinp", dinp), ("inp", inp), ("dout", dout)] {
            check_len("gelu_bwd", name, t, n)?;
        }
        let groups = grid(gpu, "gelu_bwd", (n as u64).div_ceil(WG as u64))?;
        dispatch(gpu, "gelu_bwd", &self.bwd, &[dinp, inp, dout], &Self::params("gelu_bwd", n, kind)?, groups)
    }
}
