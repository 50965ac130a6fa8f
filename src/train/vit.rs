//! The ViT recipe: a Vision Transformer classifying Fashion-MNIST (or any 28x28 grey set of
//! ten classes). [`VitRecipe`]'s defaults are `wgformer train vit`'s; [`VitRun`](super::VitRun) trains it.

use crate::data::mnist::{self, ImageSet};
use crate::error::{Error, Result};
use crate::graph::Precision;
use crate::models::vit::{Preprocess, VitConfig};
use serde::{Deserialize, Serialize};

/// How the learning rate moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrShape {
    /// Warmup over 5% of the steps, then a cosine down to 1% of the peak at the last step.
    #[default]
    Cosine,
    /// Warmup over `warmup` steps, then the peak for good (open-ended runs, as in a browser).
    Constant,
}

/// How to train the ViT. `Default` is the CLI's `train vit`; a JSON file of some of these
/// fields ([`VitRecipe::from_json`]) overrides the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitRecipe {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step (the global batch; data-parallel ranks train equal shares of it).
    pub batch: usize,
    /// The peak learning rate.
    pub lr: f32,
    pub schedule: LrShape,
    /// Warmup steps of [`LrShape::Constant`] (the cosine's is 5% of the run).
    pub warmup: u32,
    /// Seeds the initial weights, the shuffles and dropout.
    pub seed: u64,
    /// The products' precision (f16: mixed precision with a loss scale).
    pub precision: Precision,
    /// The model (Hugging Face's ViTConfig fields).
    pub model: VitConfig,
}

impl Default for VitRecipe {
    fn default() -> Self {
        VitRecipe {
            epochs: 10,
            batch: 128,
            lr: 2e-3,
            schedule: LrShape::Cosine,
            warmup: 100,
            seed: 0,
            precision: Precision::F32,
            model: VitConfig::fashion_mnist(),
        }
    }
}

impl VitRecipe {
    /// A recipe from JSON text: the fields given replace the defaults; an unknown field or a
    /// text that is not a recipe is an error naming what is wrong.
    pub fn from_json(text: &str) -> Result<Self> {
        let recipe: VitRecipe = serde_json::from_str(text).map_err(|e| Error::Config(format!("ViT recipe: {e}")))?;
        recipe.model.validate()?;
        Ok(recipe)
    }

    /// Checks the recipe against the images it will train on; the error names the field.
    pub fn validate(&self, train_images: usize) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::Config(format!("{field}: {msg}")));
        if self.batch == 0 || self.batch > train_images {
            return bad("batch", format!("{} must be between 1 and the {train_images} training images", self.batch));
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} must be a positive number", self.lr));
        }
        self.model.validate()?;
        fits_fashion_mnist(&self.model)
    }

    /// Steps in one epoch of `train_images`.
    pub fn steps_per_epoch(&self, train_images: usize) -> usize {
        train_images / self.batch.max(1)
    }
}

/// Fails unless `cfg` takes 28x28 grey images and has the ten classes.
pub(super) fn fits_fashion_mnist(cfg: &VitConfig) -> Result<()> {
    if cfg.image_size != 28 || cfg.num_channels != 1 || cfg.labels() != mnist::CLASSES.len() {
        return Err(Error::Config(format!(
            "model: takes {0}x{0} images of {1} channels in {2} classes; Fashion-MNIST needs 28x28 grey in 10",
            cfg.image_size,
            cfg.num_channels,
            cfg.labels()
        )));
    }
    Ok(())
}

/// The images a run trains and evaluates on.
pub struct VitData {
    pub train: ImageSet,
    pub test: ImageSet,
}

impl VitData {
    /// The Fashion-MNIST files in `dir`, cut to the first `train` and `test` images when given.
    pub fn load(dir: &std::path::Path, train: Option<usize>, test: Option<usize>) -> Result<Self> {
        let mut data =
            VitData { train: mnist::load(dir, mnist::Split::Train)?, test: mnist::load(dir, mnist::Split::Test)? };
        if let Some(n) = train {
            data.train.truncate(n);
        }
        if let Some(n) = test {
            data.test.truncate(n);
        }
        Ok(data)
    }
}

/// Fashion-MNIST's normalisation, saved with every checkpoint.
pub fn fashion_preprocess() -> Preprocess {
    Preprocess { image_mean: vec![mnist::MEAN], image_std: vec![mnist::STD] }
}

/// One epoch in trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    pub test_accuracy: f32,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// trainer_state.json: enough to continue exactly where a run stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    pub epochs_done: usize,
    pub epochs: usize,
    pub step: u32,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    pub history: Vec<EpochRecord>,
    /// Absent in checkpoints written before recipes: a cosine in f32.
    #[serde(default)]
    pub schedule: LrShape,
    #[serde(default)]
    pub warmup: u32,
    #[serde(default)]
    pub precision: Precision,
    /// Steps taken into epoch `epochs_done + 1` (a checkpoint written mid-epoch).
    #[serde(default)]
    pub in_epoch: usize,
}

impl TrainerState {
    /// A new run's state.
    pub fn new(recipe: &VitRecipe) -> Self {
        TrainerState {
            epochs_done: 0,
            epochs: recipe.epochs,
            step: 0,
            batch: recipe.batch,
            lr: recipe.lr,
            seed: recipe.seed,
            history: vec![],
            schedule: recipe.schedule,
            warmup: recipe.warmup,
            precision: recipe.precision,
            in_epoch: 0,
        }
    }

    /// The learning-rate schedule of a run of `total` steps.
    pub fn schedule(&self, total: u32) -> crate::runtime::optim::Schedule {
        use crate::runtime::optim::Schedule;
        match self.schedule {
            LrShape::Cosine => {
                Schedule::WarmupCosine { peak: self.lr, min_lr: self.lr * 0.01, warmup: (total / 20).max(1), total }
            }
            LrShape::Constant => Schedule::WarmupConstant { peak: self.lr, warmup: self.warmup },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_file_overrides_only_what_it_names() {
        let r = VitRecipe::from_json(r#"{"epochs": 3, "precision": "f16"}"#).unwrap();
        assert_eq!((r.epochs, r.batch, r.precision), (3, 128, Precision::F16));
    }

    #[test]
    fn bad_recipes_are_errors_naming_the_field() {
        let e = VitRecipe::from_json(r#"{"epoch": 3}"#).unwrap_err().to_string();
        assert!(e.contains("epoch"), "{e}");
        let e = VitRecipe::from_json("this is not json").unwrap_err().to_string();
        assert!(e.contains("ViT recipe"), "{e}");
        let r = VitRecipe { batch: 0, ..VitRecipe::default() };
        assert!(r.validate(100).unwrap_err().to_string().contains("batch: 0"));
        let r = VitRecipe { lr: f32::NAN, ..VitRecipe::default() };
        assert!(r.validate(1000).unwrap_err().to_string().contains("lr: NaN"));
        let mut r = VitRecipe::default();
        r.model.image_size = 35;
        assert!(r.validate(1000).unwrap_err().to_string().contains("model: takes 35x35"));
    }
}
