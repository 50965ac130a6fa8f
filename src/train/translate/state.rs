//! What a translation run keeps on disk: trainer_state.json (its plan and history), the
//! rounds' weight snapshots kept for averaging, and the checkpoint writer.

use crate::graph::TensorId;
use crate::models::transformer::TransformerConfig;
use crate::models::translation::Vocabulary;
use crate::runtime::chart::{self, EvalAxis};
use crate::runtime::checkpoint::TrainingState;
use crate::runtime::metrics::Metrics;
use crate::runtime::trainer::Trainer;
use crate::util::io::LinkFrom;
use crate::{Gpu, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One epoch in trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    pub valid_loss: f32,
    pub valid_bleu: f32,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// Steps taken by the end of this round.
    #[serde(default)]
    pub step: u32,
}

/// trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    pub epochs_done: usize,
    pub epochs: usize,
    pub step: u32,
    pub tokens: usize,
    pub lr: f32,
    pub warmup: u32,
    pub seed: u64,
    pub history: Vec<EpochRecord>,
    /// Epoch snapshots kept for averaging at the end (1: none).
    #[serde(default = "default_average")]
    pub average: usize,
    /// The epochs whose mean model.safetensors holds; empty: the last epoch's weights.
    #[serde(default)]
    pub averaged: Vec<usize>,
    /// Steps per round (validation and checkpoint); 0 in runs written before time budgets: a
    /// pass over the data. `epochs` and `epochs_done` count rounds.
    #[serde(default)]
    pub round_steps: u32,
    /// Steps of the whole run; 0 in runs written before time budgets: `epochs` passes.
    #[serde(default)]
    pub total_steps: u32,
    /// The learning-rate schedule, `cosine` or `noam` (runs written before budgets: noam).
    #[serde(default = "noam")]
    pub schedule: String,
    /// Minutes of training the run may take in all, if bounded.
    #[serde(default)]
    pub budget_minutes: Option<f64>,
    /// Whether `total_steps` is final; a budgeted run plans it once its rate is measured.
    #[serde(default = "yes")]
    pub planned: bool,
    /// Steps of the measured first round of a budgeted run (0: none; rounds are passes).
    #[serde(default)]
    pub probe_steps: u32,
}

impl TrainerState {
    /// What a round is called: `epoch` when rounds are passes over the data.
    pub fn unit(&self, per_pass: u32) -> &'static str {
        if self.probe_steps == 0 && self.round_steps == per_pass {
            "epoch"
        } else {
            "round"
        }
    }
}

fn noam() -> String {
    "noam".into()
}

fn yes() -> bool {
    true
}

/// Epochs averaged at the end of a run unless told otherwise.
pub const DEFAULT_AVERAGE: usize = 5;

fn default_average() -> usize {
    DEFAULT_AVERAGE
}

/// The name of epoch `epoch`'s weights in a run's directory (kept for averaging).
pub fn snapshot_name(epoch: usize) -> String {
    format!("epoch-{epoch:03}.safetensors")
}

/// The snapshots of the last `n` epochs up to `last` that `dir` holds, as (path, name).
pub fn kept_snapshots(dir: &Path, last: usize, n: usize) -> Vec<(PathBuf, String)> {
    (last + 1 - n.min(last)..=last)
        .filter(|&e| e > 0)
        .map(snapshot_name)
        .map(|name| (dir.join(&name), name))
        .filter(|(path, _)| path.is_file())
        .collect()
}

/// Snapshots to link into the next checkpoint from where they are now.
pub fn linked(snapshots: Vec<(PathBuf, String)>) -> Vec<(LinkFrom, String)> {
    snapshots.into_iter().map(|(path, name)| (LinkFrom::File(path), name)).collect()
}

/// Writes the run's checkpoint: `params` as the model, the optimizer state, trainer_state.json,
/// the metrics, the plot, and the `keep` files linked in.
#[allow(clippy::too_many_arguments)]
pub fn save_run(
    gpu: &Gpu,
    out: &Path,
    cfg: &TransformerConfig,
    vocab: &Vocabulary,
    graph: &crate::graph::Graph,
    params: &[(TensorId, Vec<f32>)],
    trainer: &Trainer,
    state: &TrainerState,
    metrics: &Metrics,
    keep: Vec<(LinkFrom, String)>,
) -> Result<()> {
    let axis = EvalAxis { key: "valid_bleu", label: "validation BLEU (greedy)", scale: 1.0 };
    let extra = chart::run_files(metrics, "Transformer, German to English", &axis)?;
    let moments = trainer.exec.optimizer_state(gpu)?;
    let training = TrainingState {
        moments: &moments,
        state_json: serde_json::to_string_pretty(state).unwrap_or_default(),
        extra,
        keep,
    };
    vocab.save(out, cfg, graph, params, Some(training))
}
