//! LayerNorm forward (saving mean and rstd) and backward: `shaders/layernorm.wgsl`.

use super::reduce::{column_grid, COL_BLOCK, ROW_LANES};
use super::softmax::{row_launch, RowVariant, ROW_WG};
use super::{check_len, dispatch, Dispatch};
use crate::error::Error;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};

/// Mirrors `LayerNormParams` in layernorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct LayerNormParams {
    rows: u32,
    cols: u32,
    eps: f32,
    /// Bit 0 (backward): add dx into the dx buffer's values.
    flags: u32,
}

/// The LayerNorm kernels.
pub struct LayerNorm {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
    fwd_rows: wgpu::ComputePipeline,
    bwd_rows: wgpu::ComputePipeline,
    bwd_params: wgpu::ComputePipeline,
    variant: RowVariant,
}

impl LayerNorm {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_variant(gpu, RowVariant::Auto)
    }

    pub fn with_variant(gpu: &Gpu, variant: RowVariant) -> Result<Self> {
        let module = gpu.shader("layernorm.wgsl", crate::shaders::LAYERNORM)?;
        let wg = [("WG", ROW_WG as f64)];
        Ok(LayerNorm {
            fwd: gpu.pipeline(&module, "layernorm_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "layernorm_bwd", &wg)?,
            fwd_rows: gpu.pipeline(&module, "layernorm_fwd_rows", &wg)?,
            bwd_rows: gpu.pipeline(&module, "layernorm_bwd_rows", &wg)?,
            variant,
            bwd_params: gpu.pipeline(
                &module,
                "layernorm_bwd_params",
                &[("CB", COL_BLOCK as f64), ("RL", ROW_LANES as f64)],
            )?,
        })
    }

    /// y = LN(x) * gamma + beta over rows of `cols`; writes mean and rstd (rows) for the backward.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd(
        &self,
        gpu: &Gpu,
        y: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<Dispatch> {
        let ([r, c], groups, per_row) =
            row_launch(gpu, "layernorm_fwd", &[("y", y), ("x", x)], rows, cols, self.variant)?;
        check_len("layernorm_fwd", "mean", mean, rows)?;
        check_len("layernorm_fwd", "rstd", rstd, rows)?;
        check_len("layernorm_fwd", "gamma", gamma, cols)?;
        check_len("layernorm_fwd", "beta", beta, cols)?;
        let params = LayerNormParams { rows: r, cols: c, eps, flags: 0 };
        let pipeline = if per_row { &self.fwd_rows } else { &self.fwd };
        dispatch(gpu, "layernorm_fwd", pipeline, &[y, mean, rstd, x, gamma, beta], &params, groups)
    }

    /// The two dispatches of the backward: dx (per row), then dgamma and dbeta (per column).
    #[allow(clippy::too_many_arguments)]
    pub fn bwd(
        &self,
        gpu: &Gpu,
        dx: &Tensor,
        dgamma: &Tensor,
        dbeta: &Tensor,
        x: &Tensor,
        dy: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        gamma: &Tensor,
        rows: usize,
        cols: usize,
    ) -> Result<[Dispatch; 2]> {
        self.bwd_into(gpu, [dx, dgamma, dbeta], [x, dy, mean, rstd, gamma], rows, cols, false)
    }

    /// [`LayerNorm::bwd`] of `[x, dy, mean, rstd, gamma]` into `[dx, dgamma, dbeta]`; with
    /// `accumulate`, dx is added to what its buffer holds.
    pub fn bwd_into(
        &self,
        gpu: &Gpu,
        [dx, dgamma, dbeta]: [&Tensor; 3],
        [x, dy, mean, rstd, gamma]: [&Tensor; 5],
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) -> Result<[Dispatch; 2]> {
        let tensors = [("dx", dx), ("x", x), ("dy", dy)];
        let ([r, c], groups, per_row) = row_launch(gpu, "layernorm_bwd", &tensors, rows, cols, self.variant)?;
        check_len("layernorm_bwd", "mean", mean, rows)?;
        check_len("layernorm_bwd", "rstd", rstd, rows)?;
        for (name, t) in [("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
            check_len("layernorm_bwd", name, t, cols)?;
        }
        let params = LayerNormParams { rows: r, cols: c, eps: 0.0, flags: accumulate as u32 };
        let pipeline = if per_row { &self.bwd_rows } else { &self.bwd };
        let dx_pass = dispatch(gpu, "layernorm_bwd", pipeline, &[dx, x, dy, mean, rstd, gamma], &params, groups)?;
        let col_groups = column_grid(gpu, "layernorm_bwd_params", rows, cols)?;
        if col_groups[1] > 1 {
            return Err(Error::shape("layernorm_bwd", format!("{cols} columns need more than one row of workgroups")));
        }
        let param_pass = dispatch(
            gpu,
            "layernorm_bwd_params",
            &self.bwd_params,
            &[dgamma, dbeta, x, dy, mean, rstd],
            &params,
            col_groups,
        )?;
        Ok([dx_pass, param_pass])
    }
}
