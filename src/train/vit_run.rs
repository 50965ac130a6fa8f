//! [`VitRun`]: a ViT training run an app drives a step or a round at a time.

use super::events::{Event, Observer, StepReport};
use super::storage::{read_required, read_text};
use super::vit::{fashion_preprocess, fits_fashion_mnist, EpochRecord, TrainerState, VitData, VitRecipe};
use super::{Advance, RunContext};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::autodiff::backward;
use crate::graph::{Precision, TensorId};
use crate::models::vit::{self, VitConfig, VitGraph};
use crate::models::vit_checkpoint::{self as ckpt, TrainingState};
use crate::models::Vit;
use crate::runtime::chart::{self, EvalAxis};
use crate::runtime::exec::HostData;
use crate::runtime::metrics::Metrics;
use crate::runtime::optim::{AdamConfig, Moments};
use crate::runtime::trainer::{TrainConfig, Trainer};
use std::path::Path;
use std::sync::Arc;

/// Images a batch of the evaluation's forward pass.
const EVAL_BATCH: usize = 500;

/// A ViT training run: start it with [`VitRun::start`] or [`VitRun::resume`], then call
/// [`VitRun::advance`] (a step) or [`VitRun::round`] (to the end of an epoch, which evaluates
/// and checkpoints) until [`VitRun::is_finished`], then [`VitRun::finish`].
pub struct VitRun {
    gpu: Arc<Gpu>,
    cfg: VitConfig,
    state: TrainerState,
    graph: VitGraph,
    trainer: Trainer,
    data: VitData,
    /// This rank's share of each global batch.
    shard: std::ops::Range<usize>,
    steps_per_epoch: usize,
    /// The model evaluation runs on (rank 0 only).
    eval: Option<Vit>,
    /// A batch-1 model for [`VitRun::classify`], made on first use.
    classifier: Option<Vit>,
    metrics: Metrics,
    ctx: RunContext,
    round: Option<Round>,
}

/// The epoch under way.
struct Round {
    order: Vec<usize>,
    next: usize,
    /// `next` when this process took the round up (0, or where a mid-epoch checkpoint left it).
    first: usize,
    start: f64,
    loss_sum: f64,
    smooth: Option<f32>,
}

/// Parameters and moments read from a checkpoint.
type Saved = (Vec<(TensorId, Vec<f32>)>, Moments);

impl VitRun {
    /// A new run of `recipe` on `data`, checkpointing to `ctx.storage`.
    pub fn start(
        gpu: Arc<Gpu>,
        recipe: &VitRecipe,
        data: VitData,
        ctx: RunContext,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        recipe.validate(data.train.len())?;
        let state = TrainerState::new(recipe);
        Self::build(gpu, recipe.model.clone(), state, data, ctx, None, obs)
    }

    /// Continues the run saved in `ctx.storage` (its recipe comes from the checkpoint);
    /// `precision` replaces the saved one when given.
    pub fn resume(
        gpu: Arc<Gpu>,
        precision: Option<Precision>,
        data: VitData,
        ctx: RunContext,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        let storage = ctx.storage.as_ref();
        let place = storage.place();
        let config_text = read_text(storage, "config.json")?;
        let model_type = crate::models::model_type(&config_text);
        if model_type.as_deref() != Some("vit") {
            return Err(Error::Format {
                path: format!("{place}/config.json"),
                msg: format!("model_type is {model_type:?}: not a ViT checkpoint"),
            });
        }
        let cfg = VitConfig::from_json(&config_text)?;
        let mut state: TrainerState = serde_json::from_str(&read_text(storage, "trainer_state.json")?)
            .map_err(|e| Error::Format { path: format!("{place}/trainer_state.json"), msg: e.to_string() })?;
        if let Some(p) = precision {
            state.precision = p;
        }
        obs.event(&Event::note(format!(
            "resuming {place} after epoch {} of {} (step {})",
            state.epochs_done, state.epochs, state.step
        )));
        Self::build(gpu, cfg, state, data, ctx, Some(()), obs)
    }

    /// Builds the graphs and the trainer, and sets the parameters (from the checkpoint when
    /// `resume`).
    fn build(
        gpu: Arc<Gpu>,
        cfg: VitConfig,
        state: TrainerState,
        data: VitData,
        ctx: RunContext,
        resume: Option<()>,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        let recipe = VitRecipe { batch: state.batch, epochs: state.epochs, lr: state.lr, ..VitRecipe::default() };
        recipe.validate(data.train.len()).and_then(|_| fits_fashion_mnist(&cfg))?;
        let ranks = &ctx.ranks;
        let shard = ranks.shard(state.batch)?;
        let fingerprint = ranks.fingerprint(&data.train.labels);
        let run = serde_json::to_string(&state).unwrap_or_default();
        ranks.check_same("configuration", &format!("{cfg:?} {run} {} {fingerprint}", data.train.len()))?;
        let steps_per_epoch = data.train.len() / state.batch;
        let total = (state.epochs * steps_per_epoch) as u32;
        let config = TrainConfig {
            adam: AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 },
            schedule: state.schedule(total),
            clip: Some(1.0),
            seed: state.seed as u32,
        };
        let (gpu_ref, local) = (gpu.as_ref(), shard.len());
        let attention = crate::runtime::attention_choice::policy_in(gpu_ref, state.precision, |p| {
            vit::build_with(&cfg, local, true, p).map(drop)
        })?;
        let mut graph = vit::build_with(&cfg, local, true, attention)?;
        graph.graph.precision = state.precision;
        let grads = backward(&mut graph.graph, graph.loss)?;
        let mut trainer = Trainer::new(gpu_ref, graph.graph.clone(), graph.loss, &grads, &[], config)?;
        ranks.attach(&mut trainer);
        let saved = match resume {
            Some(()) => Some(read_saved(ctx.storage.as_ref(), &cfg, &graph)?),
            None => None,
        };
        let params = match saved {
            Some((params, moments)) => {
                for (p, m, s) in moments {
                    trainer.exec.set_optimizer_state(gpu_ref, p, &m, &s)?;
                }
                trainer.step = state.step;
                params
            }
            None => vit::init_params(&graph.graph, state.seed),
        };
        // Every rank starts from rank 0's parameters and moments.
        let params = ranks.start_from_rank_zero(gpu_ref, &trainer, params)?;
        for (p, values) in &params {
            trainer.exec.set(gpu_ref, *p, HostData::F32(values))?;
        }
        let eval = match ranks.is_main() {
            true => Some(Vit::with_params(gpu_ref, cfg.clone(), fashion_preprocess(), EVAL_BATCH, &[])?),
            false => None,
        };
        let metrics = read_metrics(ctx.storage.as_ref(), resume.map(|_| state.step))?;
        let n_params: usize = params.iter().map(|(_, v)| v.len()).sum();
        let ranks_note = match ranks.size() {
            1 => String::new(),
            n => format!(" on {n} ranks of {} images", state.batch / n),
        };
        obs.event(&Event::Started {
            description: format!(
                "ViT on Fashion-MNIST: {} layers, width {}, patch {}, {n_params} parameters; {} epochs of {steps_per_epoch} steps of {}{ranks_note}",
                cfg.num_hidden_layers, cfg.hidden_size, cfg.patch_size, state.epochs, state.batch
            ),
        });
        // A checkpoint written mid-epoch continues that epoch where it stopped.
        let round = (state.in_epoch > 0).then(|| Round {
            order: data.train.epoch_order(state.seed, state.epochs_done),
            next: state.in_epoch.min(steps_per_epoch.saturating_sub(1)),
            first: state.in_epoch.min(steps_per_epoch.saturating_sub(1)),
            start: ctx.clock.seconds(),
            loss_sum: 0.0,
            smooth: None,
        });
        Ok(VitRun {
            gpu,
            cfg,
            state,
            graph,
            trainer,
            data,
            shard,
            steps_per_epoch,
            eval,
            classifier: None,
            metrics,
            ctx,
            round,
        })
    }

    /// Whether every epoch is done.
    pub fn is_finished(&self) -> bool {
        self.state.epochs_done >= self.state.epochs
    }

    /// Epochs done and planned.
    pub fn epochs(&self) -> (usize, usize) {
        (self.state.epochs_done, self.state.epochs)
    }

    /// Steps taken so far.
    pub fn step(&self) -> u32 {
        self.trainer.step
    }

    /// The device the run trains on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The model's configuration.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// The run's metrics so far (as in metrics.jsonl).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The checkpoint storage (a directory, or the files in memory).
    pub fn storage(&self) -> &dyn super::Storage {
        self.ctx.storage.as_ref()
    }

    /// One training step; at the end of an epoch also evaluates and writes a checkpoint.
    pub async fn advance(&mut self, obs: &mut dyn Observer) -> Result<Advance> {
        if self.is_finished() {
            return Ok(Advance::Finished);
        }
        let epoch = self.state.epochs_done;
        let round = match &mut self.round {
            Some(r) => r,
            None => {
                obs.event(&Event::RoundStarted {
                    round: epoch + 1,
                    rounds: self.state.epochs,
                    steps: self.steps_per_epoch as u64,
                    label: format!("epoch {}/{}", epoch + 1, self.state.epochs),
                });
                let order = self.data.train.epoch_order(self.state.seed, epoch);
                let start = self.ctx.clock.seconds();
                self.round.insert(Round { order, next: 0, first: 0, start, loss_sum: 0.0, smooth: None })
            }
        };
        let first = round.next * self.state.batch;
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        let indices = &round.order[first + self.shard.start..first + self.shard.end];
        self.data.train.batch(indices, &mut pixels, &mut labels);
        let (attempt, lr) = (self.trainer.step + 1, self.trainer.lr());
        let inputs = [(self.graph.pixel_values, HostData::F32(&pixels)), (self.graph.labels, HostData::U32(&labels))];
        let loss = self.trainer.step_async(&self.gpu, &inputs).await?;
        // A step skipped for an overflowing loss scale (f16) reports no usable loss.
        if loss.is_finite() {
            round.loss_sum += loss as f64;
            round.smooth = Some(round.smooth.map_or(loss, |s| 0.95 * s + 0.05 * loss));
        }
        round.next += 1;
        let elapsed = (self.ctx.clock.seconds() - round.start).max(1e-9);
        let per_second = ((round.next - round.first) * self.state.batch) as f64 / elapsed;
        self.metrics.step(attempt, loss, lr, per_second);
        obs.event(&Event::step(StepReport {
            step: attempt,
            loss,
            smoothed: round.smooth.unwrap_or(f32::NAN),
            lr,
            per_second,
            unit: "img",
            loss_scale: self.trainer.scaler.map(|s| (s.scale, s.skipped)),
            in_round: (round.next as u64, self.steps_per_epoch as u64),
            extra: super::comm_note(&self.trainer),
        }));
        if round.next < self.steps_per_epoch {
            return Ok(Advance::Step);
        }
        self.end_round(obs).await?;
        Ok(Advance::Round)
    }

    /// Steps to the end of the current epoch (evaluated and checkpointed).
    pub async fn round(&mut self, obs: &mut dyn Observer) -> Result<Advance> {
        loop {
            match self.advance(obs).await? {
                Advance::Step => continue,
                done => return Ok(done),
            }
        }
    }

    /// Ends an epoch: rank 0 evaluates on the test images and writes a checkpoint.
    async fn end_round(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let Some(round) = self.round.take() else { return Ok(()) };
        let seconds = self.ctx.clock.seconds() - round.start;
        self.state.epochs_done += 1;
        self.state.step = self.trainer.step;
        if !self.ctx.ranks.is_main() {
            return Ok(());
        }
        let accuracy = self.evaluate().await?;
        let record = EpochRecord {
            epoch: self.state.epochs_done,
            train_loss: (round.loss_sum / self.steps_per_epoch as f64) as f32,
            test_accuracy: accuracy,
            seconds,
            images_per_second: (self.steps_per_epoch * self.state.batch) as f64 / seconds.max(1e-9),
        };
        let values = [("train_loss", record.train_loss as f64), ("test_accuracy", accuracy as f64)];
        self.metrics.eval(self.trainer.step, record.epoch, &values);
        obs.event(&Event::Evaluated {
            round: record.epoch,
            step: self.trainer.step,
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            summary: format!(
                "epoch {}/{}: train loss {:.4}, test accuracy {:.2}%, {:.0} s, {:.0} images/s",
                record.epoch,
                self.state.epochs,
                record.train_loss,
                100.0 * accuracy,
                seconds,
                record.images_per_second
            ),
        });
        self.state.history.push(record);
        self.checkpoint(obs).await
    }

    /// Test-set accuracy of the model as it is now (rank 0; 0 elsewhere).
    pub async fn evaluate(&mut self) -> Result<f32> {
        let Some(eval) = &self.eval else { return Ok(0.0) };
        let params = self.named_params().await?;
        eval.set_named_params(&self.gpu, &params)?;
        let (accuracy, _) = accuracy_of(&self.gpu, eval, &self.data.test).await?;
        Ok(accuracy)
    }

    /// Class probabilities of `image` under the model as it is now.
    pub async fn classify(&mut self, image: &image::DynamicImage) -> Result<Vec<f32>> {
        let params = self.named_params().await?;
        let vit = match &mut self.classifier {
            Some(v) => v,
            None => {
                self.classifier.insert(Vit::with_params(&self.gpu, self.cfg.clone(), fashion_preprocess(), 1, &[])?)
            }
        };
        vit.set_named_params(&self.gpu, &params)?;
        vit.classify_async(&self.gpu, image).await
    }

    /// The class names, in the order of [`VitRun::classify`]'s probabilities.
    pub fn class_names(&self) -> Vec<String> {
        (0..self.cfg.labels()).map(|i| self.cfg.label_name(i)).collect()
    }

    /// The checkpoint's files as one zip archive (a Hugging Face ViT directory that
    /// `wgformer predict` and `eval` load, and [`VitRun::resume`] continues from): writes the
    /// checkpoint first, so that it holds the model as it is now.
    pub async fn checkpoint_zip(&mut self, obs: &mut dyn Observer) -> Result<Vec<u8>> {
        self.checkpoint(obs).await?;
        crate::util::zip::write(&self.ctx.storage.files()?)
    }

    /// The parameters by name, read from the GPU.
    pub async fn named_params(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let params = self.trainer.params_async(&self.gpu).await?;
        let g = &self.graph.graph;
        Ok(params.into_iter().map(|(p, values)| (g.desc(p).name.clone(), values)).collect())
    }

    /// Writes the checkpoint: the model in Hugging Face's layout, Adam's moments,
    /// trainer_state.json, metrics.jsonl and the chart.
    pub async fn checkpoint(&mut self, obs: &mut dyn Observer) -> Result<()> {
        self.state.step = self.trainer.step;
        self.state.in_epoch = self.round.as_ref().map_or(0, |r| r.next);
        let params = self.trainer.params_async(&self.gpu).await?;
        let moments = self.trainer.exec.optimizer_state_async(&self.gpu).await?;
        let axis = EvalAxis { key: "test_accuracy", label: "test accuracy (%)", scale: 100.0 };
        let training = TrainingState {
            moments: &moments,
            state_json: serde_json::to_string_pretty(&self.state).unwrap_or_default(),
            extra: chart::run_files(&self.metrics, "ViT on Fashion-MNIST", &axis)?,
            keep: vec![],
        };
        let files = ckpt::files(&self.cfg, &fashion_preprocess(), &self.graph.graph, &params, Some(training))?;
        self.ctx.storage.replace(files, vec![])?;
        obs.event(&Event::Checkpoint {
            step: self.trainer.step,
            round: self.state.epochs_done,
            place: self.ctx.storage.place(),
        });
        Ok(())
    }

    /// Reports how the run ended (rank 0).
    pub fn finish(&self, obs: &mut dyn Observer) {
        let Some(last) = self.state.history.last().filter(|_| self.ctx.ranks.is_main()) else { return };
        let total: f64 = self.state.history.iter().map(|r| r.seconds).sum();
        obs.event(&Event::Done {
            summary: format!(
                "done: test accuracy {:.2}% after {} epochs, {:.0} s of training; checkpoint in {}",
                100.0 * last.test_accuracy,
                self.state.epochs_done,
                total,
                self.ctx.storage.place()
            ),
        });
    }
}

/// The parameters and Adam moments of the checkpoint in `storage`.
fn read_saved(storage: &dyn super::Storage, cfg: &VitConfig, graph: &VitGraph) -> Result<Saved> {
    let place = storage.place();
    let path = format!("{place}/model.safetensors");
    let tensors = crate::util::io::parse_safetensors(&read_required(storage, "model.safetensors")?, Path::new(&path))?;
    let params =
        crate::runtime::checkpoint::params_from(tensors, Path::new(&path), &graph.graph, &vit::stored_shape(cfg))?;
    let path = format!("{place}/optimizer.safetensors");
    let bytes = read_required(storage, "optimizer.safetensors")?;
    let tensors = crate::util::io::parse_safetensors(&bytes, Path::new(&path))?;
    let moments = crate::runtime::checkpoint::moments_from(tensors, Path::new(&path), &graph.graph)?;
    Ok((params, moments))
}

/// The metrics a resumed run continues (those up to its step), or none for a new run.
pub(super) fn read_metrics(storage: &dyn super::Storage, resumed_at: Option<u32>) -> Result<Metrics> {
    let Some(step) = resumed_at else { return Ok(Metrics::default()) };
    let Some(bytes) = storage.read(crate::runtime::metrics::FILE)? else { return Ok(Metrics::default()) };
    let path = format!("{}/{}", storage.place(), crate::runtime::metrics::FILE);
    let mut m = Metrics::parse(&String::from_utf8_lossy(&bytes), Path::new(&path))?;
    m.records.retain(|r| r.step() <= step);
    Ok(m)
}

/// Accuracy of `vit` on `set`, and each image's predicted class.
pub async fn accuracy_of(gpu: &Gpu, vit: &Vit, set: &crate::data::mnist::ImageSet) -> Result<(f32, Vec<usize>)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    let mut predicted = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(vit.batch()) {
        set.batch(chunk, &mut pixels, &mut labels);
        for row in vit.logits_async(gpu, &pixels).await? {
            predicted.push((0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0));
        }
    }
    let correct = predicted.iter().zip(&set.labels).filter(|(p, l)| **p == **l as usize).count();
    Ok((correct as f32 / set.len().max(1) as f32, predicted))
}
