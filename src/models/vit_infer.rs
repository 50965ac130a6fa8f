//! ViT inference: load a checkpoint directory, classify images.

use super::vit::{build, stored_shape, Preprocess, VitConfig};
use super::vit_checkpoint::{load_config, load_preprocess, parse_preprocess};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::TensorId;
use crate::runtime::exec::{Executor, HostData};
use std::path::Path;

/// A ViT ready to classify batches of up to `batch` images.
pub struct Vit {
    pub config: VitConfig,
    pub preprocess: Preprocess,
    exec: Executor,
    pixel_values: TensorId,
    labels: TensorId,
    logits: TensorId,
    batch: usize,
}

impl Vit {
    /// Loads config.json, model.safetensors and preprocessor_config.json from `dir` (a training
    /// checkpoint, a reference case, or a Hugging Face ViT).
    pub fn load(gpu: &Gpu, dir: &Path, batch: usize) -> Result<Self> {
        if dir.is_file() {
            // A zip of the directory (what the browser page downloads).
            let bytes = std::fs::read(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
            let place = dir.display().to_string();
            return Self::from_files(gpu, &crate::util::zip::read(&bytes, &place)?, &place, batch);
        }
        if !dir.is_dir() {
            return Err(Error::Format { path: dir.display().to_string(), msg: "is not a checkpoint directory".into() });
        }
        let cfg = load_config(dir)?;
        let pre = load_preprocess(dir, &cfg)?;
        let v = build(&cfg, batch.max(1), false)?;
        let params =
            crate::runtime::checkpoint::load_params(&dir.join("model.safetensors"), &v.graph, &stored_shape(&cfg))?;
        let vit = Self::with_params(gpu, cfg, pre, batch, &[])?;
        for (p, values) in &params {
            vit.exec.set(gpu, *p, HostData::F32(values))?;
        }
        Ok(vit)
    }

    /// [`Vit::load`] from a checkpoint's files (name, bytes) held in memory; `place` names
    /// them in errors.
    pub fn from_files(gpu: &Gpu, files: &[(String, Vec<u8>)], place: &str, batch: usize) -> Result<Self> {
        let file = |name: &str| {
            files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).ok_or_else(|| Error::Format {
                path: format!("{place}/{name}"),
                msg: "missing: not a ViT checkpoint".into(),
            })
        };
        let text = |name: &str| file(name).map(|b| String::from_utf8_lossy(b).into_owned());
        let config = text("config.json")?;
        let model_type = super::model_type(&config);
        if model_type.as_deref() != Some("vit") {
            let msg = format!("model_type is {model_type:?}: not a ViT checkpoint");
            return Err(Error::Format { path: format!("{place}/config.json"), msg });
        }
        let cfg = VitConfig::from_json(&config)?;
        let pre = match file("preprocessor_config.json") {
            Ok(b) => parse_preprocess(&String::from_utf8_lossy(b), &cfg, Path::new(place))?,
            Err(_) => Preprocess::default_for(cfg.num_channels),
        };
        let v = build(&cfg, batch.max(1), false)?;
        let path = format!("{place}/model.safetensors");
        let tensors = crate::util::io::parse_safetensors(file("model.safetensors")?, Path::new(&path))?;
        let params = crate::runtime::checkpoint::params_from(tensors, Path::new(&path), &v.graph, &stored_shape(&cfg))?;
        let vit = Self::with_params(gpu, cfg, pre, batch, &[])?;
        for (p, values) in &params {
            vit.exec.set(gpu, *p, HostData::F32(values))?;
        }
        Ok(vit)
    }

    /// A ViT with the given parameter values (in the order of the graph's parameters).
    pub fn with_params(
        gpu: &Gpu,
        cfg: VitConfig,
        pre: Preprocess,
        batch: usize,
        params: &[(TensorId, Vec<f32>)],
    ) -> Result<Self> {
        let batch = batch.max(1);
        let attention =
            crate::runtime::attention_choice::policy(gpu, |p| super::vit::build_with(&cfg, batch, false, p).map(drop))?;
        let v = super::vit::build_with(&cfg, batch, false, attention)?;
        let exec = Executor::keeping(gpu, v.graph, None, None, &[v.logits])?;
        for (p, values) in params {
            exec.set(gpu, *p, HostData::F32(values))?;
        }
        Ok(Vit {
            config: cfg,
            preprocess: pre,
            exec,
            pixel_values: v.pixel_values,
            labels: v.labels,
            logits: v.logits,
            batch,
        })
    }

    /// Replaces the weights by name (for example a training graph's parameters, whose ids differ
    /// from this graph's).
    pub fn set_named_params(&self, gpu: &Gpu, params: &[(String, Vec<f32>)]) -> Result<()> {
        for (name, values) in params {
            let t = self
                .exec
                .graph()
                .find(name)
                .ok_or_else(|| Error::Input { name: name.clone(), msg: "is not a parameter of this ViT".into() })?;
            self.exec.set(gpu, t, HostData::F32(values))?;
        }
        Ok(())
    }

    /// Images per forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Logits of up to `batch` normalised images (n, C, H, W), one row of classes per image.
    pub fn logits(&self, gpu: &Gpu, pixels: &[f32]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.logits_async(gpu, pixels))
    }

    /// [`Vit::logits`] without blocking (browsers).
    pub async fn logits_async(&self, gpu: &Gpu, pixels: &[f32]) -> Result<Vec<Vec<f32>>> {
        let per_image = self.config.num_channels * self.config.image_size * self.config.image_size;
        let n = pixels.len() / per_image;
        if n == 0 || n > self.batch || !pixels.len().is_multiple_of(per_image) {
            return Err(Error::Input {
                name: "pixel_values".into(),
                msg: format!("{} values are not 1..={} images of {per_image}", pixels.len(), self.batch),
            });
        }
        let mut padded = pixels.to_vec();
        padded.resize(self.batch * per_image, 0.0);
        let labels = vec![0u32; self.batch];
        let feed = [(self.pixel_values, HostData::F32(&padded)), (self.labels, HostData::U32(&labels))];
        self.exec.step_async(gpu, &feed, &Default::default()).await?;
        let logits = self.exec.read_async(gpu, self.logits).await?;
        let classes = self.config.labels();
        Ok(logits.chunks(classes).take(n).map(|r| r.to_vec()).collect())
    }

    /// Normalised pixels (C, H, W) of an image: converted to the model's channels (grey or RGB)
    /// and resized to its input size.
    pub fn pixels(&self, image: &image::DynamicImage) -> Result<Vec<f32>> {
        image_pixels(image, &self.config, &self.preprocess)
    }

    /// Class probabilities of one image.
    pub fn classify(&self, gpu: &Gpu, image: &image::DynamicImage) -> Result<Vec<f32>> {
        pollster::block_on(self.classify_async(gpu, image))
    }

    /// [`Vit::classify`] without blocking (browsers).
    pub async fn classify_async(&self, gpu: &Gpu, image: &image::DynamicImage) -> Result<Vec<f32>> {
        let logits = self.logits_async(gpu, &self.pixels(image)?).await?;
        Ok(softmax(&logits[0]))
    }
}

/// Probabilities from logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The largest image side `predict` decodes, and the most memory a decode may take: a small
/// file that claims a huge image is refused instead of filling memory.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// Decodes a PNG or JPEG read from `path` (named in errors), within [`MAX_IMAGE_SIDE`] and
/// [`MAX_IMAGE_BYTES`].
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<image::DynamicImage> {
    let bad = |e: &dyn std::fmt::Display| Error::Format {
        path: path.display().to_string(),
        msg: format!("not a readable image: {e}"),
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(&e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| bad(&e))
}

/// Normalised pixels (C, H, W) of an image for a ViT of `cfg`: converted to its channels (grey
/// or RGB) and resized to its input size.
pub fn image_pixels(image: &image::DynamicImage, cfg: &VitConfig, pre: &Preprocess) -> Result<Vec<f32>> {
    let size = cfg.image_size as u32;
    let resized = image.resize_exact(size, size, image::imageops::FilterType::Triangle);
    let (mean, std) = (&pre.image_mean, &pre.image_std);
    let plane = (size * size) as usize;
    let mut out = vec![0.0f32; cfg.num_channels * plane];
    match cfg.num_channels {
        1 => {
            for (i, p) in resized.to_luma8().pixels().enumerate() {
                out[i] = (p.0[0] as f32 / 255.0 - mean[0]) / std[0];
            }
        }
        3 => {
            for (i, p) in resized.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = (p.0[c] as f32 / 255.0 - mean[c]) / std[c];
                }
            }
        }
        c => return Err(Error::Config(format!("images with {c} channels are not supported (1 or 3)"))),
    }
    Ok(out)
}
