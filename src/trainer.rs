//! A training loop an application drives step by step: an executor with Adam, a learning-rate
//! schedule, gradient clipping and the step counter (which also seeds dropout).

use crate::autodiff::Gradients;
use crate::error::Result;
use crate::exec::{Executor, HostData, StepOptions};
use crate::gpu::Gpu;
use crate::graph::{Graph, TensorId};
use crate::optim::{AdamConfig, Schedule};

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
        Ok(Trainer { exec: Executor::keeping(gpu, graph, Some(loss), Some(grads), keep)?, config, step: 0 })
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f32 {
        self.config.schedule.lr(self.step + 1)
    }

    /// One step on `inputs`: forward, backward, clipping, Adam; returns the loss.
    pub fn step(&mut self, gpu: &Gpu, inputs: &[(TensorId, HostData)]) -> Result<f32> {
        let step = self.step + 1;
        let opts = StepOptions {
            adam: Some(self.config.adam.at(step, self.config.schedule.lr(step))),
            seed: self.config.seed.wrapping_mul(0x9E37_79B9) ^ step,
            clip: self.config.clip,
        };
        let loss = self.exec.step(gpu, inputs, &opts)?;
        self.step = step;
        Ok(loss)
    }

    /// Current parameter values (blocking).
    pub fn params(&self, gpu: &Gpu) -> Result<Vec<(TensorId, Vec<f32>)>> {
        self.exec.graph().params().into_iter().map(|p| Ok((p, self.exec.read(gpu, p)?))).collect()
    }
}
