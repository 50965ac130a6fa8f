//! The options of `train vit` and `train translate`: a subcommand each, so that one model's flag
//! given to the other is an error, with the options both share in one place.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use wgformer::graph::Precision;
use wgformer::Result;

/// Which model `train` trains.
#[derive(Subcommand)]
pub enum TrainCommand {
    /// The Vision Transformer on Fashion-MNIST.
    Vit(VitOptions),
    /// The Transformer on German-English pairs (the main job).
    Translate(TranslateOptions),
}

/// Options every training command takes.
#[derive(Args)]
pub struct Common {
    /// The checkpoint directory, replaced atomically after every epoch (default runs/vit or
    /// runs/translate).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Peak learning rate (default 2e-3; 5e-5 for `train translate --init`).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Seeds the weights, the shuffles and dropout (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many epochs (with a checkpoint); --resume continues the run.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// When stderr is not a terminal: a progress line every N steps (default: about every
    /// 30 s).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: Option<u64>,
    /// f32, or f16: mixed precision (products of f16 operands accumulated in f32, on matrix
    /// units where the GPU has them; parameters, Adam and every other op in f32; a dynamic
    /// loss scale). Needs an adapter with f16 shaders.
    #[arg(long, default_value = "f32")]
    pub precision: String,
}

/// `train vit`.
#[derive(Args)]
pub struct VitOptions {
    #[command(flatten)]
    pub common: Common,
    /// Epochs (default 10).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step (default 128).
    #[arg(long)]
    pub batch: Option<usize>,
    /// The Fashion-MNIST directory (default: the bundled one).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on the first N training images only (a quick run).
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Evaluate on the first N test images only (a quick run).
    #[arg(long)]
    pub test_images: Option<usize>,
    /// A recipe file (JSON: epochs, batch, lr, schedule, warmup, seed, precision, model); the
    /// options given on the command line replace its values.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
}

/// `train translate`.
#[derive(Args)]
pub struct TranslateOptions {
    #[command(flatten)]
    pub common: Common,
    /// Passes over the data (default: as many as --max-minutes allow, up to 20; with --resume,
    /// the run goes on until this many).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Padded target tokens per step (default 1024; 512 with --init).
    #[arg(long)]
    pub batch: Option<usize>,
    /// The pairs: `docs` (documentation and game text, 78.6k pairs; the default), `ding`
    /// (dictionary example sentences), or a directory with train.tsv, valid.tsv and test.tsv.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on the first N pairs only (a quick run).
    #[arg(long)]
    pub train_pairs: Option<usize>,
    /// The validation BLEU after each round uses the first N pairs (the validation loss uses
    /// all).
    #[arg(long, default_value_t = 100)]
    pub valid_pairs: usize,
    /// The test BLEU at the end translates the first N test pairs (default all).
    #[arg(long)]
    pub test_pairs: Option<usize>,
    /// Size of the shared BPE vocabulary (default 4000).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Warmup steps of the learning-rate schedule (default 400; 100 with --init).
    #[arg(long)]
    pub warmup: Option<u32>,
    /// Fine-tune a trained model: a Hugging Face Marian (OPUS-MT) directory or one of our
    /// checkpoints. Its vocabulary and config are kept, checkpoints are written in its layout,
    /// and the defaults suit a trained model (--lr 5e-5, --warmup 100, --batch 512).
    #[arg(long, conflicts_with_all = ["size", "vocab", "resume"])]
    pub init: Option<PathBuf>,
    /// `small` (d 128, 3+3 layers), `tiny` (d 64, 1+1), `base` (the paper's), or a config.json
    /// path (its vocab_size is replaced by the learned vocabulary's). Default: `tiny` on
    /// software adapters (it learns more in the time budget there), `small` on GPUs.
    #[arg(long)]
    pub size: Option<String>,
    /// Dropout probability (default: the size's, 0.1).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Minutes of training at most: plans the steps that fit from the measured rate (default
    /// 50 when --epochs is not given), stops when they are spent, then averages and tests.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// The learning-rate schedule, `cosine` (warmup, then down to zero at the planned end) or
    /// `noam` (the paper's inverse square root).
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// At the end, average the weights of the last N rounds and keep the mean when its
    /// validation loss is lower (the paper averages its last checkpoints; 1: off; default 5).
    #[arg(long)]
    pub average: Option<usize>,
}

impl VitOptions {
    /// The recipe's arguments, with today's defaults.
    pub fn into_args(self, dist: super::dist::Dist) -> Result<super::vit::TrainArgs> {
        let c = self.common;
        let defaults = match &self.recipe {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| wgformer::Error::Io { path: path.display().to_string(), source })?;
                wgformer::train::VitRecipe::from_json(&text)
                    .map_err(|e| wgformer::Error::Format { path: path.display().to_string(), msg: e.to_string() })?
            }
            None => wgformer::train::VitRecipe::default(),
        };
        let precision = match c.precision.as_str() {
            "f32" if self.recipe.is_some() => defaults.precision,
            p => Precision::parse(p)?,
        };
        Ok(super::vit::TrainArgs {
            out: c.out.unwrap_or_else(|| "runs/vit".into()),
            resume: c.resume,
            recipe: wgformer::train::VitRecipe {
                epochs: self.epochs.unwrap_or(defaults.epochs),
                batch: self.batch.unwrap_or(defaults.batch),
                lr: c.lr.unwrap_or(defaults.lr),
                seed: c.seed.unwrap_or(defaults.seed),
                precision,
                ..defaults.clone()
            },
            data: self.data.unwrap_or_else(wgformer::data::mnist::default_dir),
            train_images: self.train_images,
            test_images: self.test_images,
            stop_after: c.stop_after,
            log_every: c.log_every,
            dist,
        })
    }
}

impl TranslateOptions {
    /// The recipe's arguments, with today's defaults.
    pub fn into_args(self, dist: super::dist::Dist) -> Result<super::translate::TrainArgs> {
        use wgformer::train::translate::TranslateRecipe;
        let c = self.common;
        let defaults = match &self.init {
            Some(dir) => TranslateRecipe::fine_tuning(&dir.to_string_lossy()),
            None => TranslateRecipe::default(),
        };
        Ok(super::translate::TrainArgs {
            out: c.out.unwrap_or_else(|| "runs/translate".into()),
            resume: c.resume,
            recipe: TranslateRecipe {
                epochs: self.epochs,
                tokens: self.batch.unwrap_or(defaults.tokens),
                lr: c.lr.unwrap_or(defaults.lr),
                warmup: self.warmup.unwrap_or(defaults.warmup),
                seed: c.seed.unwrap_or(defaults.seed),
                vocab: self.vocab.unwrap_or(defaults.vocab),
                valid_pairs: self.valid_pairs,
                test_pairs: self.test_pairs,
                model: self.size,
                dropout: self.dropout,
                max_minutes: self.max_minutes,
                schedule: self.schedule,
                average: self.average,
                precision: Precision::parse(&c.precision)?,
                init: defaults.init,
            },
            data: translation_data(self.data),
            train_pairs: self.train_pairs,
            stop_after: c.stop_after,
            log_every: c.log_every,
            dist,
        })
    }
}

/// The translation data a `--data` names: a bundled set or a directory.
pub fn translation_data(data: Option<PathBuf>) -> PathBuf {
    match data {
        Some(d) => wgformer::text::corpus::data_dir(&d.to_string_lossy()),
        None => wgformer::text::corpus::default_dir(),
    }
}
