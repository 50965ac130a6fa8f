//! Adam on the GPU for an executor: moments per parameter, one update dispatch each, and the
//! global-norm clipping that runs before them; reading and restoring the moments.

use super::Executor;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Held, Tensor};
use crate::graph::autodiff::Gradients;
use crate::graph::{Graph, TensorId};
use crate::kernels::adam::AdamHyperParams;
use crate::kernels::clip::{partials_for, ClipParams};
use crate::kernels::{Dispatch, KernelSet};
use std::collections::HashMap;

/// Adam state: moments per parameter, the prepared updates, and the global-norm clipping
/// that runs before them when a step asks for it.
pub(super) struct Optimizer {
    /// This optimizer's step values (learning rate, bias corrections), read by every update.
    pub(super) hyper: AdamHyperParams,
    pub(super) updates: Vec<Dispatch>,
    pub(super) clip: Vec<Dispatch>,
    pub(super) clip_params: Held<wgpu::Buffer>,
    pub(super) partials: usize,
    /// [factor, norm]: Adam multiplies every gradient by the factor.
    pub(super) grad_scale: Tensor,
    /// (param, m, v): bound by the updates, read and written for checkpoints.
    pub(super) state: Vec<(TensorId, Tensor, Tensor)>,
    /// The gradient each update reads, in the order of `state` (data-parallel buckets).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) grads: Vec<TensorId>,
}

impl Executor {
    /// Adam's moments (param, m, v) for every updated parameter (blocking; for checkpoints).
    pub fn optimizer_state(&self, gpu: &Gpu) -> Result<crate::runtime::optim::Moments> {
        pollster::block_on(self.optimizer_state_async(gpu))
    }

    /// [`Executor::optimizer_state`] without blocking (browsers).
    pub async fn optimizer_state_async(&self, gpu: &Gpu) -> Result<crate::runtime::optim::Moments> {
        let Some(opt) = &self.optimizer else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(opt.state.len());
        for (p, m, v) in &opt.state {
            out.push((*p, gpu.read_async(m).await?, gpu.read_async(v).await?));
        }
        Ok(out)
    }

    /// Restores Adam's moments of `param` (from a checkpoint).
    pub fn set_optimizer_state(&self, gpu: &Gpu, param: TensorId, m: &[f32], v: &[f32]) -> Result<()> {
        let state = self.optimizer.as_ref().and_then(|o| o.state.iter().find(|(p, _, _)| *p == param));
        let Some((_, tm, tv)) = state else {
            return Err(Error::Input {
                name: self.graph.desc(param).name.clone(),
                msg: "has no optimizer state".into(),
            });
        };
        gpu.write(tm, m)?;
        gpu.write(tv, v)
    }

    /// The global gradient norm of the last step that clipped (blocking read; for logs).
    pub fn last_grad_norm(&self, gpu: &Gpu) -> Result<Option<f32>> {
        match &self.optimizer {
            Some(opt) => Ok(gpu.read(&opt.grad_scale)?.get(1).copied().filter(|v| v.is_finite())),
            None => Ok(None),
        }
    }
}

/// Moments and one Adam dispatch per parameter with a gradient, in parameter order, and the
/// clipping dispatches (sums of squares of every gradient, then the factor).
pub(super) fn prepare_adam(
    gpu: &Gpu,
    k: &KernelSet,
    g: &Graph,
    ts: &[Tensor],
    grads: &Gradients,
    shared: &HashMap<TensorId, (Tensor, Tensor)>,
) -> Result<Optimizer> {
    let with_grad: Vec<(TensorId, TensorId)> =
        g.params().into_iter().filter_map(|p| grads.get(p).map(|d| (p, d))).collect();
    let partials: usize = with_grad.iter().map(|(p, _)| partials_for(g.desc(*p).len())).sum();
    let partial = gpu.zeros("clip.partials", partials.max(1))?;
    let grad_scale = gpu.upload("adam.grad_scale", &[1.0, f32::NAN])?;
    let clip_params = gpu.hold(gpu.uniform(
        "clip.params",
        &ClipParams { partials: partials as u32, max_norm: 1.0, inv_loss_scale: 1.0, _pad: 0 },
    ));
    let hyper = k.adam.hyper_params(gpu);
    let (mut updates, mut clip, mut state, mut grad_ids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &(p, grad) in &with_grad {
        let n = g.desc(p).len();
        let name = &g.desc(p).name;
        let (m, v) = match shared.get(&p) {
            Some((m, v)) => (m.clone(), v.clone()),
            None => (gpu.zeros(&format!("{name}.adam_m"), n)?, gpu.zeros(&format!("{name}.adam_v"), n)?),
        };
        updates.push(k.adam.update(gpu, &hyper, &ts[p.0], &m, &v, &ts[grad.0], &grad_scale, n)?);
        state.push((p, m, v));
        grad_ids.push(grad);
    }
    // The sums of squares, several gradients a dispatch, their partials in the gradients' order.
    let mut offset = 0;
    for group in with_grad.chunks(crate::kernels::clip::SUMSQ_TENSORS) {
        let grads: Vec<(&Tensor, usize)> = group.iter().map(|&(p, d)| (&ts[d.0], g.desc(p).len())).collect();
        clip.push(k.clip.sumsq_many(gpu, &partial, &grads, offset)?);
        offset += grads.iter().map(|&(_, n)| partials_for(n)).sum::<usize>();
    }
    clip.push(k.clip.scale(gpu, &grad_scale, &partial, partials, &clip_params)?);
    Ok(Optimizer { hyper, updates, clip, clip_params, partials, grad_scale, state, grads: grad_ids })
}
