//! Column sums (bias gradients) and their backward, a broadcast: `shaders/reduce.wgsl`.

use super::{check_len, dispatch, grid, u32_of, Dispatch};
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

const WG: u32 = 64;

/// Mirrors `ReduceParams` in reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

/// The column-reduction kernels.
pub struct Reduce {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
}

impl Reduce {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("reduce.wgsl", crate::shaders::REDUCE)?;
        let wg = [("WG", WG as f64)];
        Ok(Reduce { fwd: gpu.pipeline(&module, "reduce_cols_fwd", &wg)?, bwd: gpu.pipeline(&module, "reduce_cols_bwd", &wg)? })
    }

    fn params(op: &'static str, rows: usize, cols: usize) -> Result<ReduceParams> {
        Ok(ReduceParams { rows: u32_of(op, "rows", rows)?, cols: u32_of(op, "cols", cols)?, _pad: [0; 2] })
    }

    /// out[c] = sum over rows of inp[r, c].
    pub fn fwd(&self, gpu: &Gpu, out: &Tensor, inp: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        check_len("reduce_cols_fwd", "out", out, cols)?;
        check_len("reduce_cols_fwd", "inp", inp, rows * cols)?;
        let groups = grid(gpu, "reduce_cols_fwd", (cols as u64).div_ceil(WG as u64))?;
        dispatch(gpu, "reduce_cols_fwd", &self.fwd, &[out, inp], &Self::params("reduce_cols_fwd", rows, cols)?, groups)
    }

    /// dinp[r, c] = dout[c].
    pub fn bwd(&self, gpu: &Gpu, dinp: &Tensor, dout: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        check_len("reduce_cols_bwd", "dinp", dinp, rows * cols)?;
        check_len("reduce_cols_bwd", "dout", dout, cols)?;
        let groups = grid(gpu, "reduce_cols_bwd", ((rows * cols) as u64).div_ceil(WG as u64))?;
        dispatch(gpu, "reduce_cols_bwd", &self.bwd, &[dinp, dout], &Self::params("reduce_cols_bwd", rows, cols)?, groups)
    }
}
