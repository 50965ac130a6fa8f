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

/// The softmax kernels: a workgroup per row, or an invocation per row (see [`RowVariant`]).
pub struct Softmax {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
    fwd_rows: wgpu::ComputePipeline,
    bwd_rows: wgpu::ComputePipeline,
    variant: RowVariant,
}

/// How a row kernel spreads a row over invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowVariant {
    /// Invocation per row for short rows, and for every row that fits the loop budget on CPU
    /// adapters (where barriers are expensive); a workgroup per row otherwise.
    Auto,
    /// WG invocations per row, combined through workgroup memory.
    Workgroup,
    /// One invocation per row, no workgroup memory.
    Invocation,
}

/// Rows at most this long take the invocation-per-row kernels on every adapter.
const SHORT_ROW: usize = 128;

/// The params and grid of a row kernel over (rows, cols), and whether it runs an invocation
/// per row.
pub(crate) fn row_launch(
    gpu: &Gpu,
    op: &'static str,
    tensors: &[(&str, &Tensor)],
    rows: usize,
    cols: usize,
    variant: RowVariant,
) -> Result<([u32; 2], [u32; 3], bool)> {
    // A row kernel walks its row up to three times.
    let per_row_iterations = 3 * cols as u64 + 16;
    let fits = gpu.loop_budget().is_none_or(|b| per_row_iterations <= b);
    let per_invocation = match variant {
        RowVariant::Invocation => true,
        RowVariant::Workgroup => false,
        RowVariant::Auto => fits && (cols <= SHORT_ROW || gpu.is_cpu()),
    };
    if !per_invocation {
        let (params, groups) = row_params(gpu, op, tensors, rows, cols)?;
        return Ok((params, groups, false));
    }
    if cols == 0 {
        return Err(Error::shape(op, "rows of zero length"));
    }
    for (name, t) in tensors {
        check_len(op, name, t, rows * cols)?;
    }
    check_loop_budget(gpu, op, per_row_iterations, &format!("rows of {cols} in one invocation"))?;
    let groups = grid(gpu, op, (rows as u64).div_ceil(ROW_WG as u64))?;
    Ok(([u32_of(op, "rows", rows)?, u32_of(op, "cols", cols)?], groups, true))
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
        Self::with_variant(gpu, RowVariant::Auto)
    }

    pub fn with_variant(gpu: &Gpu, variant: RowVariant) -> Result<Self> {
        let module = gpu.shader("softmax.wgsl", crate::shaders::SOFTMAX)?;
        let wg = [("WG", ROW_WG as f64)];
        Ok(Softmax {
            fwd: gpu.pipeline(&module, "softmax_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "softmax_bwd", &wg)?,
            fwd_rows: gpu.pipeline(&module, "softmax_fwd_rows", &wg)?,
            bwd_rows: gpu.pipeline(&module, "softmax_bwd_rows", &wg)?,
            variant,
        })
    }

    /// y = softmax(x) over the last dimension of (rows, cols).
    pub fn fwd(&self, gpu: &Gpu, y: &Tensor, x: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        let ([r, c], groups, per_row) =
            row_launch(gpu, "softmax_fwd", &[("y", y), ("x", x)], rows, cols, self.variant)?;
        let pipeline = if per_row { &self.fwd_rows } else { &self.fwd };
        dispatch(gpu, "softmax_fwd", pipeline, &[y, x], &SoftmaxParams { rows: r, cols: c, _pad: [0; 2] }, groups)
    }

    /// dx = y * (dy - sum(dy * y)) per row.
    pub fn bwd(&self, gpu: &Gpu, dx: &Tensor, y: &Tensor, dy: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        let tensors = [("dx", dx), ("y", y), ("dy", dy)];
        let ([r, c], groups, per_row) = row_launch(gpu, "softmax_bwd", &tensors, rows, cols, self.variant)?;
        let pipeline = if per_row { &self.bwd_rows } else { &self.bwd };
        dispatch(gpu, "softmax_bwd", pipeline, &[dx, y, dy], &SoftmaxParams { rows: r, cols: c, _pad: [0; 2] }, groups)
    }
}
