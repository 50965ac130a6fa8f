//! Precision casts (`shaders/cast.wgsl`): f32 tensors rounded to f16 copies, the operands of
//! the f16 matmul in mixed-precision training. Needs SHADER_F16.

use super::{check_len, check_typed, dispatch, grid, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};

/// Mirrors `CastParams` in cast.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct CastParams {
    n: u32,
    _pad: [u32; 3],
}

const WG: u64 = 256;

/// The cast kernels.
pub struct Cast {
    to_f16: wgpu::ComputePipeline,
    round: wgpu::ComputePipeline,
}

impl Cast {
    /// An error where the adapter has no f16 shaders.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        if !gpu.caps.f16 {
            return Err(Error::Unsupported { what: "f16 arithmetic (SHADER_F16)", adapter: gpu.describe() });
        }
        let module = gpu.shader("cast.wgsl", crate::shaders::CAST)?;
        Ok(Cast {
            to_f16: gpu.pipeline(&module, "cast_f16", &[("WG", WG as f64)])?,
            round: gpu.pipeline(&module, "round_f16", &[("WG", WG as f64)])?,
        })
    }

    /// dst (f16) = the first `n` elements of src (f32), rounded to nearest.
    pub fn to_f16(&self, gpu: &Gpu, dst: &Tensor, src: &Tensor, n: usize) -> Result<Dispatch> {
        check_typed("cast_f16", "dst", dst, n, DType::F16)?;
        check_len("cast_f16", "src", src, n)?;
        let params = CastParams { n: u32_of("cast_f16", "n", n)?, _pad: [0; 3] };
        let groups = grid(gpu, "cast_f16", (n as u64).div_ceil(2).div_ceil(WG))?;
        dispatch(gpu, "cast_f16", &self.to_f16, &[dst, src], &params, groups)
    }

    /// dst (f32) = the first `n` elements of src rounded to the nearest f16 values.
    pub fn round_f16(&self, gpu: &Gpu, dst: &Tensor, src: &Tensor, n: usize) -> Result<Dispatch> {
        check_len("round_f16", "dst", dst, n)?;
        check_len("round_f16", "src", src, n)?;
        let params = CastParams { n: u32_of("round_f16", "n", n)?, _pad: [0; 3] };
        let groups = grid(gpu, "round_f16", (n as u64).div_ceil(WG))?;
        dispatch(gpu, "round_f16", &self.round, &[dst, src], &params, groups)
    }
}
