//! The translation recipe: the Transformer of "Attention Is All You Need" on German-English
//! pairs, with a shared BPE vocabulary learned from the training pairs, a time budget measured
//! on the machine at hand, checkpoint averaging and the test BLEU at the end.
//! [`TranslateRecipe`]'s defaults are `wgformer train translate`'s; [`TranslateRun`] trains it.
//! Native only: its checkpoint is a directory (with the rounds' snapshots kept for averaging).

pub mod bleu;
mod exec;
mod finish;
pub mod plan;
mod round;
mod run;
mod setup;
pub mod state;

use crate::error::{Error, Result};
use crate::graph::Precision;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use run::TranslateRun;

/// Padded lengths of the training batches (tokens, eos included).
pub const BUCKETS: [usize; 9] = [10, 14, 18, 24, 32, 48, 64, 96, 128];

/// How to train the Transformer. `Default` is the CLI's `train translate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranslateRecipe {
    /// Passes over the data (None: as many as the time budget allows, up to 20). On a resumed
    /// run, the run goes on until this many.
    pub epochs: Option<usize>,
    /// Padded target tokens per step (rows x length).
    pub tokens: usize,
    /// Peak learning rate, reached after `warmup` steps.
    pub lr: f32,
    pub warmup: u32,
    pub seed: u64,
    /// Size of the shared BPE vocabulary.
    pub vocab: usize,
    /// The validation BLEU after each round translates the first N validation pairs.
    pub valid_pairs: usize,
    /// The test BLEU at the end translates the first N test pairs (None: all).
    pub test_pairs: Option<usize>,
    /// `tiny`, `small`, `base` or a config.json path; None: `tiny` on CPU adapters, `small` on
    /// GPUs.
    pub model: Option<String>,
    /// Overrides the model's dropout.
    pub dropout: Option<f32>,
    /// Minutes of training at most (None: 50 when `epochs` is None, else unbounded).
    pub max_minutes: Option<f64>,
    /// `cosine` (to zero at the planned end) or `noam`.
    pub schedule: String,
    /// Average the weights of the last N rounds at the end (1: off; None: 5, or a resumed run's
    /// own choice).
    pub average: Option<usize>,
    /// The products' precision (f16: mixed precision with a loss scale).
    pub precision: Precision,
    /// Fine-tune this model instead of starting from scratch: a Hugging Face Marian (OPUS-MT)
    /// directory, or one of our checkpoints. Its own vocabulary and config are kept (`vocab`
    /// and `model` do not apply), and checkpoints are written in its layout.
    pub init: Option<String>,
}

impl Default for TranslateRecipe {
    fn default() -> Self {
        TranslateRecipe {
            epochs: None,
            tokens: 1024,
            lr: 2e-3,
            warmup: 400,
            seed: 0,
            vocab: 4000,
            valid_pairs: 100,
            test_pairs: None,
            model: None,
            dropout: None,
            max_minutes: None,
            schedule: "cosine".into(),
            average: None,
            precision: Precision::F32,
            init: None,
        }
    }
}

impl TranslateRecipe {
    /// Defaults for fine-tuning the trained model in `init`: a small learning rate after a
    /// short warmup (a large one undoes what the model learned), 512 tokens a step (at
    /// OPUS-MT's vocabulary of 58,101, 512 rows of logits stay within a 128 MiB binding).
    pub fn fine_tuning(init: &str) -> Self {
        TranslateRecipe { lr: 5e-5, warmup: 100, tokens: 512, init: Some(init.into()), ..Default::default() }
    }

    /// A recipe from JSON text: the fields given replace the defaults.
    pub fn from_json(text: &str) -> Result<Self> {
        let recipe: Self = serde_json::from_str(text).map_err(|e| Error::Config(format!("translation recipe: {e}")))?;
        recipe.validate()?;
        Ok(recipe)
    }

    /// Checks what can be checked before the data is read; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::Config(format!("{field}: {msg}")));
        if let Some(m) = self.max_minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
            return bad("max_minutes", format!("must be a positive number of minutes, got {m}"));
        }
        if self.average == Some(0) {
            return bad("average", "0: average at least 1 round (1 keeps the last round's weights)".into());
        }
        if !matches!(self.schedule.as_str(), "cosine" | "noam") {
            return bad("schedule", format!("{:?}: cosine or noam", self.schedule));
        }
        if self.tokens == 0 {
            return bad("tokens", "must be at least 1".into());
        }
        if self.epochs == Some(0) {
            return bad("epochs", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} must be a positive number", self.lr));
        }
        if let (Some(_), Some(m)) = (&self.init, &self.model) {
            return bad("model", format!("{m:?} with init: a fine-tuned model keeps its own config"));
        }
        if let Some(dir) = self.init.as_deref().filter(|d| !Path::new(d).join("config.json").is_file()) {
            return bad("init", format!("{dir:?} is not a model directory (no config.json)"));
        }
        if let Some(m) = self.model.as_deref().filter(|m| !matches!(*m, "tiny" | "small" | "base")) {
            if !Path::new(m).is_file() {
                return bad("model", format!("{m:?}: tiny, small, base or the path of a config.json"));
            }
        }
        Ok(())
    }
}

/// The pairs a run trains, validates and tests on.
pub struct TranslateData {
    pub train: Vec<(String, String)>,
    pub valid: Vec<(String, String)>,
    pub test: Vec<(String, String)>,
}

impl TranslateData {
    /// train.tsv, valid.tsv and test.tsv of `dir`, training on the first `train` pairs when
    /// given.
    pub fn load(dir: &Path, train: Option<usize>) -> Result<Self> {
        use crate::text::corpus::read_split;
        let mut data = TranslateData {
            train: read_split(dir, "train")?,
            valid: read_split(dir, "valid")?,
            test: read_split(dir, "test")?,
        };
        if let Some(n) = train {
            data.train.truncate(n);
        }
        if data.train.is_empty() || data.valid.is_empty() {
            return Err(Error::Config("the training and validation sets must not be empty".into()));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_recipes_are_errors_naming_the_field() {
        let check = |r: TranslateRecipe, field: &str| {
            let e = r.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{e}");
        };
        check(TranslateRecipe { max_minutes: Some(0.0), ..Default::default() }, "max_minutes");
        check(TranslateRecipe { average: Some(0), ..Default::default() }, "average");
        check(TranslateRecipe { schedule: "linear".into(), ..Default::default() }, "schedule");
        check(TranslateRecipe { tokens: 0, ..Default::default() }, "tokens");
        check(TranslateRecipe { model: Some("huge".into()), ..Default::default() }, "model");
        check(TranslateRecipe { init: Some("/no/such/model".into()), ..Default::default() }, "init");
        let e = TranslateRecipe::from_json(r#"{"vocabulary": 10}"#).unwrap_err().to_string();
        assert!(e.contains("vocabulary"), "{e}");
        assert_eq!(TranslateRecipe::from_json(r#"{"vocab": 900}"#).unwrap().vocab, 900);
    }
}
