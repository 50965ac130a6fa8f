//! Fused label-smoothed cross-entropy and its gradient: `shaders/crossentropy.wgsl`.

use super::softmax::{row_params, ROW_WG};
use super::{check_f32_or_f16, check_len, check_loop_budget, check_typed, dispatch, u32_of, Dispatch, HalfForm};
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};

/// Mirrors `CeParams` in crossentropy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct CeParams {
    rows: u32,
    vocab: u32,
    smoothing: f32,
    ignore_index: u32,
    has_ignore: u32,
    _pad: [u32; 3],
}

/// The cross-entropy kernels.
pub struct CrossEntropy {
    fwd: wgpu::ComputePipeline,
    count: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    /// The gradient multiplier when none is given: 1.
    one: Tensor,
    /// The forms reading f16 logits or writing f16 dlogits (mixed precision).
    half: HalfForm,
}

impl CrossEntropy {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("crossentropy.wgsl", crate::shaders::CROSSENTROPY)?;
        let wg = [("WG", ROW_WG as f64)];
        Ok(CrossEntropy {
            fwd: gpu.pipeline(&module, "crossentropy_fwd", &wg)?,
            count: gpu.pipeline(&module, "crossentropy_count", &wg)?,
            reduce: gpu.pipeline(&module, "crossentropy_reduce", &wg)?,
            one: gpu.upload("cross_entropy.one", &[1.0])?,
            half: HalfForm::new(&super::f16_forms::CROSSENTROPY),
        })
    }

    /// The three dispatches computing `loss` (1) and `dlogits` (rows, vocab) from `logits` and
    /// u32 `targets` (rows); logits and dlogits are f32, or f16 in mixed precision. Targets must be below `vocab` or equal to `ignore_index`: the
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
        let ([r, v], row_groups) = row_params(gpu, op, &[], rows, vocab)?;
        check_f32_or_f16(op, "dlogits", dlogits, rows * vocab)?;
        check_f32_or_f16(op, "logits", logits, rows * vocab)?;
        check_typed(op, "targets", targets, rows, DType::U32)?;
        check_len(op, "loss", loss, 1)?;
        check_loop_budget(gpu, op, rows.div_ceil(ROW_WG as usize) as u64 + 32, &format!("{rows} rows"))?;
        // Indices into (R, V) are u32 in the kernel.
        u32_of(op, "rows * vocab", rows * vocab)?;
        let params = CeParams {
            rows: r,
            vocab: v,
            smoothing,
            ignore_index: ignore_index.unwrap_or(0),
            has_ignore: ignore_index.is_some() as u32,
            _pad: [0; 3],
        };
        let row_loss = gpu.zeros("cross_entropy.row_loss", rows)?;
        let scales = gpu.zeros("cross_entropy.scales", 2)?;
        let count =
            dispatch(gpu, "crossentropy_count", &self.count, &[&scales, targets, grad_mul], &params, [1, 1, 1])?;
        let wg = [("WG", ROW_WG as f64)];
        let pipeline = self.half.for_types(gpu, &[logits, dlogits], &self.fwd, "crossentropy_fwd", &wg)?;
        let fwd = dispatch(
            gpu,
            "crossentropy_fwd",
            &pipeline,
            &[dlogits, &row_loss, logits, targets, &scales],
            &params,
            row_groups,
        )?;
        let reduce =
            dispatch(gpu, "crossentropy_reduce", &self.reduce, &[loss, &row_loss, &scales], &params, [1, 1, 1])?;
        Ok([count, fwd, reduce])
    }
}
