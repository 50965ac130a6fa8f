//! Fused label-smoothed cross-entropy and its gradient: `shaders/crossentropy.wgsl`.

use super::softmax::{row_params, ROW_WG};
use super::{check_f32_or_f16, check_len, check_loop_budget, check_typed, dispatch, grid, u32_of, Dispatch, HalfForm};
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};

const SCALE_WG: u32 = 256;

/// Mirrors `CeParams` in crossentropy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct CeParams {
    rows: u32,
    vocab: u32,
    smoothing: f32,
    ignore_index: u32,
    has_ignore: u32,
    n: u32,
    _pad: [u32; 2],
}

/// The cross-entropy kernels.
pub struct CrossEntropy {
    fwd: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    scale: wgpu::ComputePipeline,
    /// The gradient multiplier when none is given: 1.
    one: Tensor,
    /// The form reading f16 logits (mixed precision).
    half: HalfForm,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("crossentropy.wgsl", crate::shaders::CROSSENTROPY)?;
        let wg = [("WG", ROW_WG as f64)];
        Ok(CrossEntropy {
            fwd: gpu.pipeline(&module, "crossentropy_fwd", &wg)?,
            reduce: gpu.pipeline(&module, "crossentropy_reduce", &wg)?,
            scale: gpu.pipeline(&module, "crossentropy_scale", &[("WG", SCALE_WG as f64)])?,
            one: gpu.upload("cross_entropy.one", &[1.0])?,
            half: HalfForm::new("crossentropy.wgsl", crate::shaders::CROSSENTROPY, &["LogitT"]),
        })
    }

    /// The three dispatches computing `loss` (1) and `dlogits` (rows, vocab) from `logits` (f32,
    /// or f16 in mixed precision) and u32 `targets` (rows). Targets must be below `vocab` or equal to `ignore_index`: the
    /// caller checks them when it uploads a batch.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd(
        &self,
        gpu: &Gpu,
        loss: &Tensor,
        dlogits: &Tensor,
        logits: &Tensor,
        targets: &Tensor,
        rows: usize,
        vocab: usize,
        smoothing: f32,
        ignore_index: Option<u32>,
    ) -> Result<[Dispatch; 3]> {
        self.fwd_scaled(gpu, [loss, dlogits], [logits, targets], rows, vocab, smoothing, ignore_index, &self.one)
    }

    /// [`CrossEntropy::fwd`] with `dlogits` multiplied by `grad_mul[0]` (the loss scale of
    /// mixed-precision training, read when the step runs); the loss is not.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd_scaled(
        &self,
        gpu: &Gpu,
        [loss, dlogits]: [&Tensor; 2],
        [logits, targets]: [&Tensor; 2],
        rows: usize,
        vocab: usize,
        smoothing: f32,
        ignore_index: Option<u32>,
        grad_mul: &Tensor,
    ) -> Result<[Dispatch; 3]> {
        let op = "cross_entropy";
        check_len(op, "grad_mul", grad_mul, 1)?;
        let ([r, v], row_groups) = row_params(gpu, op, &[("dlogits", dlogits)], rows, vocab)?;
        check_f32_or_f16(op, "logits", logits, rows * vocab)?;
        check_typed(op, "targets", targets, rows, DType::U32)?;
        check_len(op, "loss", loss, 1)?;
        check_loop_budget(gpu, op, rows.div_ceil(ROW_WG as usize) as u64 + 32, &format!("{rows} rows"))?;
        let n = u32_of(op, "rows * vocab", rows * vocab)?;
        let params = CeParams {
            rows: r,
            vocab: v,
            smoothing,
            ignore_index: ignore_index.unwrap_or(0),
            has_ignore: ignore_index.is_some() as u32,
            n,
            _pad: [0; 2],
        };
        let row_loss = gpu.zeros("cross_entropy.row_loss", rows)?;
        let scale = gpu.zeros("cross_entropy.scale", 1)?;
        let pipeline = self.half.for_input(gpu, logits, &self.fwd, "crossentropy_fwd", &[("WG", ROW_WG as f64)])?;
        let fwd =
            dispatch(gpu, "crossentropy_fwd", &pipeline, &[dlogits, &row_loss, logits, targets], &params, row_groups)?;
        let reduce = dispatch(
            gpu,
            "crossentropy_reduce",
            &self.reduce,
            &[loss, &scale, &row_loss, targets, grad_mul],
            &params,
            [1, 1, 1],
        )?;
        let groups = grid(gpu, op, (n as u64).div_ceil(SCALE_WG as u64))?;
        let scale = dispatch(gpu, "crossentropy_scale", &self.scale, &[dlogits, &scale], &params, groups)?;
        Ok([fwd, reduce, scale])
    }
}
