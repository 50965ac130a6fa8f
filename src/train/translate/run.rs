//! [`TranslateRun`]: a translation training run an app drives a round at a time.

use super::plan::{self, Stream};
use super::state::{TrainerState, DEFAULT_AVERAGE};
use super::{TranslateData, TranslateRecipe};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::transformer::{TransformerConfig, TransformerGraph};
use crate::models::translation::{self, Vocabulary};
use crate::runtime::exec::Executor;
use crate::runtime::metrics::Metrics;
use crate::runtime::trainer::Trainer;
use crate::text::bpe::Bpe;
use crate::text::corpus::Batch;
use crate::train::{Event, Observer, RunContext};
use std::path::PathBuf;
use std::sync::Arc;

/// A translation run: [`TranslateRun::start`] or [`TranslateRun::resume`], then
/// [`TranslateRun::advance`] (a step) or [`TranslateRun::round`] until
/// [`TranslateRun::is_finished`], then [`TranslateRun::finish`] (averaging and the test BLEU).
pub struct TranslateRun {
    pub(super) gpu: Arc<Gpu>,
    pub(super) recipe: TranslateRecipe,
    pub(super) data: TranslateData,
    pub(super) cfg: TransformerConfig,
    /// The model's tokenizer and directory layout.
    pub(super) vocab: Vocabulary,
    pub(super) state: TrainerState,
    pub(super) trainer: Trainer,
    /// One training graph per padded length; the evaluation graphs (rank 0) with their executors.
    pub(super) graphs: Vec<TransformerGraph>,
    pub(super) evals: Vec<(Executor, TransformerGraph)>,
    pub(super) stream: Stream,
    pub(super) per_pass: u32,
    pub(super) valid_batches: Vec<(usize, Batch)>,
    pub(super) metrics: Metrics,
    pub(super) ctx: RunContext,
    /// Where checkpoints go, and where the kept round snapshots are now (the resumed run's
    /// directory until the first save).
    pub(super) out: PathBuf,
    pub(super) snapshots_in: PathBuf,
    /// Seconds of training before this process, and the clock's reading when it began.
    pub(super) spent_before: f64,
    pub(super) started_at: f64,
    pub(super) out_of_time: bool,
    /// The last validation's seconds: a round stops early when the next would pass the budget.
    pub(super) eval_s: f64,
    pub(super) done: bool,
    /// The round under way, between calls of `advance`.
    pub(super) current: Option<Round>,
}

impl TranslateRun {
    /// A new run of `recipe` on `data`, checkpointing to the directory of `ctx.storage`.
    pub fn start(
        gpu: Arc<Gpu>,
        recipe: &TranslateRecipe,
        data: TranslateData,
        ctx: RunContext,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        recipe.validate()?;
        let (mut cfg, vocab, init) = match recipe.init.as_deref() {
            Some(dir) => {
                let (cfg, vocab, params) = translation::load(std::path::Path::new(dir))?;
                obs.event(&Event::note(format!("fine-tuning the {} model in {dir}", vocab.kind())));
                (cfg, vocab, Start::From(params))
            }
            None => {
                let start = ctx.clock.seconds();
                let texts = data.train.iter().flat_map(|(s, t)| [s.as_str(), t.as_str()]);
                let bpe = Bpe::learn(texts, recipe.vocab, 2)?;
                obs.event(&Event::note(format!(
                    "learned a shared BPE vocabulary of {} in {:.1} s",
                    bpe.len(),
                    ctx.clock.seconds() - start
                )));
                // Measured on a 2-core CPU (50-minute budget): tiny reached small's final
                // validation loss in a quarter of the time.
                let size = recipe.model.as_deref().unwrap_or(if gpu.is_cpu() { "tiny" } else { "small" });
                (TransformerConfig::preset_or_file(size, bpe.len())?, Vocabulary::Bpe(bpe), Start::Fresh)
            }
        };
        if let Some(p) = recipe.dropout {
            cfg.dropout = p;
        }
        cfg.validate()?;
        // A run given no length trains for a time budget; epochs alone trains that many passes.
        let budget = recipe.max_minutes.or(recipe.epochs.is_none().then_some(plan::DEFAULT_MINUTES));
        let state = TrainerState {
            epochs_done: 0,
            epochs: recipe.epochs.unwrap_or(plan::DEFAULT_PASSES),
            step: 0,
            tokens: recipe.tokens,
            lr: recipe.lr,
            warmup: recipe.warmup,
            seed: recipe.seed,
            history: vec![],
            average: recipe.average.unwrap_or(DEFAULT_AVERAGE),
            averaged: vec![],
            round_steps: 0,
            total_steps: 0,
            schedule: recipe.schedule.clone(),
            budget_minutes: budget,
            planned: budget.is_none(),
            probe_steps: 0,
        };
        Self::build(gpu, recipe, data, ctx, (cfg, vocab, state), init, obs)
    }

    /// Continues the run saved in `ctx.storage`'s directory; `recipe`'s `average`,
    /// `max_minutes` and `epochs` (when given) change it, the rest comes from the checkpoint.
    pub fn resume(
        gpu: Arc<Gpu>,
        recipe: &TranslateRecipe,
        data: TranslateData,
        ctx: RunContext,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        recipe.validate()?;
        let dir = checkpoint_dir(&ctx)?.0;
        crate::util::io::recover_dir(&dir)?;
        let path = dir.join("trainer_state.json");
        let text =
            std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let mut state: TrainerState = serde_json::from_str(&text)
            .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })?;
        if let Some(n) = recipe.average {
            state.average = n;
        }
        if let Some(m) = recipe.max_minutes {
            state.budget_minutes = Some(m);
        }
        obs.event(&Event::note(format!(
            "resuming {} after round {} of {} (step {})",
            dir.display(),
            state.epochs_done,
            state.epochs,
            state.step
        )));
        let (cfg, vocab) = translation::load_config(&dir)?;
        Self::build(gpu, recipe, data, ctx, (cfg, vocab, state), Start::Resumed, obs)
    }

    /// Whether the run has taken all its rounds (or its time).
    pub fn is_finished(&self) -> bool {
        self.done || self.state.epochs_done >= self.state.epochs || self.trainer.step >= self.state.total_steps
    }

    /// Rounds done and planned.
    pub fn rounds(&self) -> (usize, usize) {
        (self.state.epochs_done, self.state.epochs)
    }

    /// Steps taken so far.
    pub fn step(&self) -> u32 {
        self.trainer.step
    }

    /// The model's configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The parameters as they are now, by graph name (read back from the device).
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let g = &self.graphs[0].graph;
        let params = self.trainer.params(&self.gpu)?;
        Ok(params.into_iter().map(|(p, v)| (g.desc(p).name.clone(), v)).collect())
    }

    /// The run's metrics so far (as in metrics.jsonl).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Seconds of training so far, this run's earlier processes included.
    pub(super) fn spent(&self) -> f64 {
        self.spent_before + self.ctx.clock.seconds() - self.started_at
    }
}

/// Where a run's parameters start.
pub(super) enum Start {
    /// Initialised from the seed.
    Fresh,
    /// A trained model's (by graph name).
    From(Vec<(String, Vec<f32>)>),
    /// The checkpoint's, with Adam's moments.
    Resumed,
}

/// (the directory to read a resumed run from, the directory to write) of a run's storage.
pub(super) fn checkpoint_dir(ctx: &RunContext) -> Result<(PathBuf, PathBuf)> {
    let s = ctx.storage.as_ref();
    match (s.dir(), s.write_dir()) {
        (Some(from), Some(out)) => Ok((from.to_path_buf(), out.to_path_buf())),
        _ => Err(Error::Config(format!("a translation run keeps its checkpoint in a directory, not in {}", s.place()))),
    }
}

/// The round under way: where it ends and what its steps measured so far.
pub(super) struct Round {
    pub(super) probing: bool,
    pub(super) end: u32,
    pub(super) steps: u64,
    pub(super) start: f64,
    pub(super) first_step: u32,
    pub(super) loss_sum: f64,
    pub(super) tokens: usize,
    pub(super) smooth: Option<f32>,
    /// Whether the round stopped before `end` (out of time, or measured enough).
    pub(super) stopped: bool,
}
