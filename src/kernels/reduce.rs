//! Column sums (bias gradients) and their backward, a broadcast: `shaders/reduce.wgsl`.

use super::{check_f32_or_f16, check_len, check_loop_budget, dispatch, grid, u32_of, Dispatch, HalfForm};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

/// Columns per workgroup and row lanes per workgroup of the column sums (CB, RL in WGSL).
pub(crate) const COL_BLOCK: u32 = 8;
pub(crate) const ROW_LANES: u32 = 32;
const WG: u32 = 256;

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
    /// The column sums of an f16 input (mixed precision's gradients).
    half: HalfForm,
}

/// Checks a column sum over (rows, cols) and returns its workgroup grid.
pub(crate) fn column_grid(gpu: &Gpu, op: &'static str, rows: usize, cols: usize) -> Result<[u32; 3]> {
    if cols == 0 {
        return Err(Error::shape(op, "zero columns"));
    }
    check_loop_budget(gpu, op, rows.div_ceil(ROW_LANES as usize) as u64 + 16, &format!("summing {rows} rows"))?;
    grid(gpu, op, (cols as u64).div_ceil(COL_BLOCK as u64))
}

impl Reduce {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("reduce.wgsl", crate::shaders::REDUCE)?;
        let tiles = [("CB", COL_BLOCK as f64), ("RL", ROW_LANES as f64)];
        Ok(Reduce {
            fwd: gpu.pipeline(&module, "reduce_cols_fwd", &tiles)?,
            bwd: gpu.pipeline(&module, "reduce_cols_bwd", &[("WG", WG as f64)])?,
            half: HalfForm::new(&super::f16_forms::REDUCE),
        })
    }

    fn params(op: &'static str, rows: usize, cols: usize) -> Result<ReduceParams> {
        Ok(ReduceParams { rows: u32_of(op, "rows", rows)?, cols: u32_of(op, "cols", cols)?, _pad: [0; 2] })
    }

    /// `out[c]` = sum over rows of `inp[r, c]` (`inp` f32, or f16 in mixed precision).
    pub fn fwd(&self, gpu: &Gpu, out: &Tensor, inp: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        check_len("reduce_cols_fwd", "out", out, cols)?;
        check_f32_or_f16("reduce_cols_fwd", "inp", inp, rows * cols)?;
        let groups = column_grid(gpu, "reduce_cols_fwd", rows, cols)?;
        if groups[1] > 1 {
            return Err(Error::shape(
                "reduce_cols_fwd",
                format!("{cols} columns need more than one row of workgroups"),
            ));
        }
        let tiles = [("CB", COL_BLOCK as f64), ("RL", ROW_LANES as f64)];
        let pipeline = self.half.for_input(gpu, inp, &self.fwd, "reduce_cols_fwd", &tiles)?;
        dispatch(gpu, "reduce_cols_fwd", &pipeline, &[out, inp], &Self::params("reduce_cols_fwd", rows, cols)?, groups)
    }

    /// `dinp[r, c]` = `dout[c]`.
    pub fn bwd(&self, gpu: &Gpu, dinp: &Tensor, dout: &Tensor, rows: usize, cols: usize) -> Result<Dispatch> {
        check_len("reduce_cols_bwd", "dinp", dinp, rows * cols)?;
        check_len("reduce_cols_bwd", "dout", dout, cols)?;
        let groups = grid(gpu, "reduce_cols_bwd", ((rows * cols) as u64).div_ceil(WG as u64))?;
        dispatch(
            gpu,
            "reduce_cols_bwd",
            &self.bwd,
            &[dinp, dout],
            &Self::params("reduce_cols_bwd", rows, cols)?,
            groups,
        )
    }
}
