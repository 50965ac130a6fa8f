//! A training loop an application drives step by step: an executor with Adam, a learning-rate
//! schedule, gradient clipping and the step counter (which also seeds dropout).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::autodiff::Gradients;
use crate::graph::{Graph, Precision, TensorId};
use crate::runtime::exec::{Executor, HostData, StepOptions};
use crate::runtime::loss_scale::LossScaler;
use crate::runtime::optim::{AdamConfig, Schedule};

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub adam: AdamConfig,
    pub schedule: Schedule,
    /// Clip gradients to this global norm.
    pub clip: Option<f32>,
    /// Seeds dropout (mixed with the step number).
    pub seed: u32,
}

/// An executor with an optimizer and a step counter.
pub struct Trainer {
    pub exec: Executor,
    pub config: TrainConfig,
    /// Steps taken so far.
    pub step: u32,
    /// Executors for other batch shapes of the same model, sharing `exec`'s parameters and
    /// Adam moments (see [`Trainer::add_shape`]).
    pub shapes: Vec<Executor>,
    /// The loss scale, where the graph's products run in f16 (mixed precision).
    pub scaler: Option<LossScaler>,
    /// The ranks training together (data parallel), when there are several.
    #[cfg(not(target_arch = "wasm32"))]
    pub group: Option<std::sync::Arc<dyn crate::dist::collective::Collective>>,
    /// A fault to inject before one step (tests of failure handling); `None` by default.
    pub faults: Option<crate::runtime::fault::FaultPlan>,
}

impl Trainer {
    /// Plans `graph` (whose backward `grads` already holds) for training; `keep` are outputs to
    /// read after a step (logits, say).
    pub fn new(
        gpu: &Gpu,
        graph: Graph,
        loss: TensorId,
        grads: &Gradients,
        keep: &[TensorId],
        config: TrainConfig,
    ) -> Result<Self> {
        let scaler = (graph.precision == Precision::F16).then(LossScaler::default);
        Ok(Trainer {
            exec: Executor::keeping(gpu, graph, Some(loss), Some(grads), keep)?,
            config,
            step: 0,
            shapes: vec![],
            scaler,
            #[cfg(not(target_arch = "wasm32"))]
            group: None,
            faults: None,
        })
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f32 {
        self.config.schedule.lr(self.step + 1)
    }

    /// One step on `inputs`: forward, backward, clipping, Adam; returns the loss. A NaN or inf
    /// loss or gradient norm is [`Error::NonFinite`](crate::Error::NonFinite) naming the step
    /// (with clipping on, that step's update was skipped on the GPU). In mixed precision an
    /// overflow skips the step instead (the step counter stays, the loss scale halves and
    /// [`LossScaler::skipped`] counts it), and its loss, possibly not finite, is returned.
    pub fn step(&mut self, gpu: &Gpu, inputs: &[(TensorId, HostData)]) -> Result<f32> {
        self.step_shape(gpu, 0, inputs)
    }

    /// Adds another batch shape of the same model (its graph and backward), training the same
    /// parameters; returns its index for [`Trainer::step_shape`] (the first shape is 0).
    pub fn add_shape(&mut self, gpu: &Gpu, graph: Graph, loss: TensorId, grads: &Gradients) -> Result<usize> {
        self.shapes.push(Executor::sharing(gpu, graph, Some(loss), Some(grads), &[], &self.exec)?);
        Ok(self.shapes.len())
    }

    /// The executor of shape `i` (0: the first).
    pub fn executor(&self, i: usize) -> Option<&Executor> {
        if i == 0 {
            Some(&self.exec)
        } else {
            self.shapes.get(i - 1)
        }
    }

    /// [`Trainer::step`] on the executor of shape `i`. In a data-parallel group every rank's
    /// share of the global batch is taken to be the same (1 / ranks); see
    /// [`Trainer::step_share`].
    pub fn step_shape(&mut self, gpu: &Gpu, i: usize, inputs: &[(TensorId, HostData)]) -> Result<f32> {
        self.step_share(gpu, i, inputs, 1.0 / self.ranks() as f32)
    }

    /// Ranks training together (1 without a group).
    pub fn ranks(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(g) = &self.group {
            return g.size();
        }
        1
    }

    /// [`Trainer::step_shape`] where this rank's inputs are `share` of the global batch's
    /// loss (its target tokens over the global batch's, for a loss that is a mean over
    /// tokens); the gradients are summed over the group and the global loss is returned.
    /// Without a group `share` must be 1.
    pub fn step_share(&mut self, gpu: &Gpu, i: usize, inputs: &[(TensorId, HostData)], share: f32) -> Result<f32> {
        pollster::block_on(self.step_share_async(gpu, i, inputs, share))
    }

    /// [`Trainer::step`] without blocking (browsers; natively it waits for the GPU the same).
    pub async fn step_async(&mut self, gpu: &Gpu, inputs: &[(TensorId, HostData<'_>)]) -> Result<f32> {
        let share = 1.0 / self.ranks() as f32;
        self.step_share_async(gpu, 0, inputs, share).await
    }

    /// [`Trainer::step_share`] without blocking.
    pub async fn step_share_async(
        &mut self,
        gpu: &Gpu,
        i: usize,
        inputs: &[(TensorId, HostData<'_>)],
        share: f32,
    ) -> Result<f32> {
        let step = self.step + 1;
        let opts = StepOptions {
            adam: Some(self.config.adam.at(step, self.config.schedule.lr(step))),
            seed: self.config.seed.wrapping_mul(0x9E37_79B9) ^ step,
            clip: self.config.clip,
            loss_scale: self.scaler.map(|s| s.scale),
            loss_weight: (share != 1.0).then_some(share),
        };
        let exec = self.executor(i).ok_or_else(|| {
            crate::error::Error::Config(format!("no batch shape {i} (have {})", self.shapes.len() + 1))
        })?;
        #[cfg(not(target_arch = "wasm32"))]
        let rank = self.group.as_ref().map_or(0, |g| g.rank());
        #[cfg(target_arch = "wasm32")]
        let rank = 0;
        if let Some(plan) = &self.faults {
            plan.inject(gpu, step, rank)?;
        }
        #[cfg(not(target_arch = "wasm32"))]
        let loss = match &self.group {
            Some(group) => exec.step_data_parallel(gpu, inputs, &opts, group.as_ref())?,
            None => exec.step_async(gpu, inputs, &opts).await?,
        };
        #[cfg(target_arch = "wasm32")]
        let loss = exec.step_async(gpu, inputs, &opts).await?;
        let norm = exec.last_step_norm();
        if let Some(scaler) = &mut self.scaler {
            let norm = norm.unwrap_or(f32::NAN);
            if scaler.update(step, norm.is_finite() && loss.is_finite(), norm)? {
                self.step = step;
            }
            return Ok(loss);
        }
        // Stop instead of training on NaN: with clipping, the GPU already skipped this update.
        if !loss.is_finite() {
            return Err(crate::error::Error::NonFinite { step, what: "loss", value: loss });
        }
        if let Some(norm) = norm.filter(|n| !n.is_finite()) {
            return Err(crate::error::Error::NonFinite { step, what: "gradient norm", value: norm });
        }
        self.step = step;
        Ok(loss)
    }

    /// Current parameter values (blocking).
    pub fn params(&self, gpu: &Gpu) -> Result<Vec<(TensorId, Vec<f32>)>> {
        pollster::block_on(self.params_async(gpu))
    }

    /// [`Trainer::params`] without blocking.
    pub async fn params_async(&self, gpu: &Gpu) -> Result<Vec<(TensorId, Vec<f32>)>> {
        let mut out = Vec::new();
        for p in self.exec.graph().params() {
            out.push((p, self.exec.read_async(gpu, p).await?));
        }
        Ok(out)
    }
}
