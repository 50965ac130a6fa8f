//! Row softmax, forward and backward: `shaders/softmax.wgsl`.

use super::{check_len, check_loop_budget, dispatch, grid, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

/// Mirrors `SoftmaxParams` in softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

/// The softmax kernels (one workgroup per row).
pub struct Softmax {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
}

/// Invocations per row (WG in the row kernels), a power of two.
pub(crate) const ROW_WG: u32 = 64;

/// Validates a (rows, cols) row-wise op and returns its params.
pub(crate) fn row_params(
    gpu: &Gpu,
    op: &'static str,
    tensors: &[(&str, &Tensor)],
    rows: usize,
    cols: usize,
) -> Result<([u32; 2], [u32; 3])> {
    if cols == 0 {
        return Err(Error::shape(op, "rows of zero length"));
    }
    for (name, t) in tensors {
        check_len(op, name, t, rows * cols)?;
    }
    // Up to three passes over the row plus the reduction trees.
    check_loop_budget(gpu, op, 3 * cols.div_ceil(ROW_WG as usize) as u64 + 64, &format!("rows of {cols}"))?;
    Ok(([u32_of(op, "rows", rows)?, u32_of(op, "cols", cols)?], grid(gpu, op, rows as u64)?))
}

impl Softmax {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("softmax.wgsl", crate::shaders::SOFTMAX)?;
        let wg = [("WG", ROW_WG as f64)];
        Ok(Softmax { fwd: gpu.pipeline(&module, "softmax_fwd", &wg)?, bwd: gpu.pipeline(&module, "softmax_bwd", &wg)? })
    }

    /// y = softmax(x) over the last dimension of (rows, cols).
    pub fn fwd(&self, gpu: &Gpu, y: &Tensor, x: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        let ([r, c], groups) = row_params(gpu, "softmax_fwd", &[("y", y), ("x", x)], rows, cols)?;
        dispatch(gpu, "softmax_fwd", &self.fwd, &[y, x], &SoftmaxParams { rows: r, cols: c, _pad: [0; 2] }, groups)
    }

    /// dx = y * (dy - sum(dy * y)) per row.
    pub fn bwd(&self, gpu: &Gpu, dx: &Tensor, y: &Tensor, dy: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        let ([r, c], groups) = row_params(gpu, "softmax_bwd", &[("dx", dx), ("y", y), ("dy", dy)], rows, cols)?;
        dispatch(gpu, "softmax_bwd", &self.bwd, &[dx, y, dy], &SoftmaxParams { rows: r, cols: c, _pad: [0; 2] }, groups)
    }
}
