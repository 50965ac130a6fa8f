//! Attention masks (padding, causal) for the composed attention path: `shaders/mask.wgsl`.

use super::{check_len, check_typed, dispatch, grid, u32_of, Dispatch};
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MaskParams {
    batch: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    causal: u32,
    has_lens: u32,
    _pad: [u32; 2],
}

/// The mask kernels.
pub struct Mask {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
    no_lens: Tensor,
}

impl Mask {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("mask.wgsl", crate::shaders::MASK)?;
        let wg = [("WG", WG as f64)];
        Ok(Mask {
            fwd: gpu.pipeline(&module, "mask_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "mask_bwd", &wg)?,
            no_lens: gpu.zeros_u32("mask.no_lens", 1)?,
        })
    }

    /// Masks scores (batch, heads, tq, tk): keys at or past `key_lens[b]` and, when causal,
    /// future keys. `backward` zeroes the same entries of a gradient instead.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        inp: &Tensor,
        key_lens: Option<&Tensor>,
        dims: [usize; 4],
        causal: bool,
        backward: bool,
    ) -> Result<Dispatch> {
        let op = if backward { "mask_bwd" } else { "mask_fwd" };
        let n: usize = dims.iter().product();
        check_len(op, "out", out, n)?;
        check_len(op, "inp", inp, n)?;
        if let Some(l) = key_lens {
            check_typed(op, "key_lens", l, dims[0], DType::U32)?;
        }
        let u = |v| u32_of(op, "size", v);
        let params = MaskParams {
            batch: u(dims[0])?,
            heads: u(dims[1])?,
            tq: u(dims[2])?,
            tk: u(dims[3])?,
            causal: causal as u32,
            has_lens: key_lens.is_some() as u32,
            _pad: [0; 2],
        };
        let pipeline = if backward { &self.bwd } else { &self.fwd };
        let lens = key_lens.unwrap_or(&self.no_lens);
        dispatch(gpu, op, pipeline, &[out, inp, lens], &params, grid(gpu, op, (n as u64).div_ceil(WG as u64))?)
    }
}
