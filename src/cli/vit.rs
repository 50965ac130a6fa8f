//! `train vit`, `predict` and `eval`: the ViT on the bundled Fashion-MNIST.

use super::progress::Progress;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wgformer::data::mnist::{self, ImageSet, Split};
use wgformer::graph::autodiff::backward;
use wgformer::models::vit::{self, Preprocess, VitConfig};
use wgformer::models::vit_checkpoint::{self as ckpt, TrainingState};
use wgformer::models::Vit;
use wgformer::runtime::chart::{self, EvalAxis};
use wgformer::runtime::exec::HostData;
use wgformer::runtime::metrics::Metrics;
use wgformer::runtime::optim::{AdamConfig, Schedule};
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::{Error, Gpu, Result};

/// Options of `train vit`.
pub struct TrainArgs {
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    pub data: PathBuf,
    /// Train on the first N training images only (quick runs).
    pub train_images: Option<usize>,
    /// Evaluate on the first N test images only (quick runs).
    pub test_images: Option<usize>,
    /// Stop (with a checkpoint) after this many epochs in this invocation; --resume continues.
    pub stop_after: Option<usize>,
    /// The products' precision (f16: mixed precision with a loss scale).
    pub precision: wgformer::graph::Precision,
    /// A plain progress line every N steps when stderr is not a terminal (else about every 30 s).
    pub log_every: Option<u64>,
    /// The data-parallel job this process is a rank of (a job of one without MPI).
    pub dist: super::dist::Dist,
}

/// One epoch in trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EpochRecord {
    epoch: usize,
    train_loss: f32,
    test_accuracy: f32,
    seconds: f64,
    images_per_second: f64,
}

/// trainer_state.json: enough to continue exactly where a run stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainerState {
    epochs_done: usize,
    epochs: usize,
    step: u32,
    batch: usize,
    lr: f32,
    seed: u64,
    history: Vec<EpochRecord>,
}

const EVAL_BATCH: usize = 500;

fn fashion_preprocess() -> Preprocess {
    Preprocess { image_mean: vec![mnist::MEAN], image_std: vec![mnist::STD] }
}

/// Accuracy of `vit` on `set`, and each image's predicted class.
fn evaluate(gpu: &Gpu, vit: &Vit, set: &ImageSet) -> Result<(f32, Vec<usize>)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    let mut predicted = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(vit.batch()) {
        set.batch(chunk, &mut pixels, &mut labels);
        for row in vit.logits(gpu, &pixels)? {
            predicted.push((0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0));
        }
    }
    let correct = predicted.iter().zip(&set.labels).filter(|(p, l)| **p == **l as usize).count();
    Ok((correct as f32 / set.len().max(1) as f32, predicted))
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let dist = &args.dist;
    let gpu = dist.gpu()?;
    let mut train_set = mnist::load(&args.data, Split::Train)?;
    if let Some(n) = args.train_images {
        train_set.truncate(n);
    }
    let mut test_set = mnist::load(&args.data, Split::Test)?;
    if let Some(n) = args.test_images {
        test_set.truncate(n);
    }
    let (cfg, mut state) = match &args.resume {
        Some(dir) => {
            let s = super::read_trainer_state::<TrainerState>(dir)?;
            eprintln!("resuming {} after epoch {} of {} (step {})", dir.display(), s.epochs_done, s.epochs, s.step);
            (ckpt::load_config(dir)?, s)
        }
        None => {
            let s = TrainerState {
                epochs_done: 0,
                epochs: args.epochs,
                step: 0,
                batch: args.batch,
                lr: args.lr,
                seed: args.seed,
                history: vec![],
            };
            (VitConfig::fashion_mnist(), s)
        }
    };
    if state.batch == 0 || state.batch > train_set.len() {
        return Err(Error::Config(format!("--batch {} must be between 1 and {}", state.batch, train_set.len())));
    }
    if cfg.image_size != train_set.rows || cfg.num_channels != 1 || cfg.labels() != mnist::CLASSES.len() {
        return Err(Error::Config(
            "the checkpoint's config does not fit 28x28 grey Fashion-MNIST with 10 classes".into(),
        ));
    }
    // `state.batch` is the global batch; each rank trains its share of it.
    let shard = dist.shard(state.batch)?;
    let local_batch = shard.len();
    dist.check_same(
        "configuration",
        &format!(
            "{cfg:?} {} {} {} {} {} {} {:?} {} {}",
            state.batch,
            state.lr,
            state.seed,
            state.epochs,
            state.epochs_done,
            state.step,
            args.precision,
            train_set.len(),
            wgformer::dist::collective::fingerprint(&train_set.labels)
        ),
    )?;
    let steps_per_epoch = train_set.len() / state.batch;
    let total = (state.epochs * steps_per_epoch) as u32;
    let config = TrainConfig {
        adam: AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 },
        schedule: Schedule::WarmupCosine {
            peak: state.lr,
            min_lr: state.lr * 0.01,
            warmup: (total / 20).max(1),
            total,
        },
        clip: Some(1.0),
        seed: state.seed as u32,
    };
    let attention = wgformer::runtime::attention_choice::policy_in(&gpu, args.precision, |p| {
        vit::build_with(&cfg, local_batch, true, p).map(drop)
    })?;
    let mut v = vit::build_with(&cfg, local_batch, true, attention)?;
    v.graph.precision = args.precision;
    let grads = backward(&mut v.graph, v.loss)?;
    let mut trainer = Trainer::new(&gpu, v.graph.clone(), v.loss, &grads, &[], config)?;
    trainer.group = dist.group.clone();
    trainer.faults = dist.faults;
    let params = match &args.resume {
        Some(dir) => {
            let params = wgformer::runtime::checkpoint::load_params(
                &dir.join("model.safetensors"),
                &v.graph,
                &vit::stored_shape(&cfg),
            )?;
            for (p, m, s) in ckpt::load_moments(dir, &v.graph)? {
                trainer.exec.set_optimizer_state(&gpu, p, &m, &s)?;
            }
            trainer.step = state.step;
            params
        }
        None => vit::init_params(&v.graph, state.seed),
    };
    // Every rank starts from rank 0's parameters and moments.
    let params = dist.start_from_rank_zero(&gpu, &trainer, params)?;
    for (p, values) in &params {
        trainer.exec.set(&gpu, *p, HostData::F32(values))?;
    }
    // Only rank 0 evaluates, prints and writes checkpoints.
    let eval_vit = match dist.is_main() {
        true => Some(Vit::with_params(&gpu, cfg.clone(), fashion_preprocess(), EVAL_BATCH, &[])?),
        false => None,
    };
    let n_params: usize = params.iter().map(|(_, v)| v.len()).sum();
    if dist.is_main() {
        eprintln!(
            "ViT on Fashion-MNIST: {} layers, width {}, patch {}, {n_params} parameters; {} epochs of {steps_per_epoch} steps of {}{}",
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.patch_size,
            state.epochs,
            state.batch,
            ranks_note(dist, state.batch)
        );
    }
    let mut metrics = Metrics::of_run(args.resume.as_deref(), state.step)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    let last_epoch = match args.stop_after {
        Some(n) => (state.epochs_done + n).min(state.epochs),
        None => state.epochs,
    };
    for epoch in state.epochs_done..last_epoch {
        let order = train_set.epoch_order(state.seed, epoch);
        let prefix = format!("epoch {}/{}", epoch + 1, state.epochs);
        let mut bar = Progress::new(steps_per_epoch as u64, prefix, dist.is_main(), args.log_every);
        let start = Instant::now();
        let (mut loss_sum, mut smooth) = (0.0f64, None::<f32>);
        for b in 0..steps_per_epoch {
            let first = b * state.batch;
            train_set.batch(&order[first + shard.start..first + shard.end], &mut pixels, &mut labels);
            let (attempt, lr) = (trainer.step + 1, trainer.lr());
            let loss =
                trainer.step(&gpu, &[(v.pixel_values, HostData::F32(&pixels)), (v.labels, HostData::U32(&labels))])?;
            // A step skipped for an overflowing loss scale (f16) reports no usable loss.
            if loss.is_finite() {
                loss_sum += loss as f64;
                smooth = Some(smooth.map_or(loss, |s| 0.95 * s + 0.05 * loss));
            }
            let s = smooth.unwrap_or(f32::NAN);
            let ips = ((b + 1) * state.batch) as f64 / start.elapsed().as_secs_f64();
            metrics.step(attempt, loss, lr, ips);
            bar.step(format!(
                "loss {s:.4} lr {:.2e} {ips:.0} img/s{}{}",
                trainer.lr(),
                super::scale_note(&trainer),
                super::comm_note(&trainer)
            ));
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish();
        state.epochs_done = epoch + 1;
        state.step = trainer.step;
        let Some(eval_vit) = &eval_vit else { continue };
        let params = trainer.params(&gpu)?;
        let named: Vec<(String, Vec<f32>)> =
            params.iter().map(|(p, values)| (v.graph.desc(*p).name.clone(), values.clone())).collect();
        eval_vit.set_named_params(&gpu, &named)?;
        let (accuracy, _) = evaluate(&gpu, eval_vit, &test_set)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: (loss_sum / steps_per_epoch as f64) as f32,
            test_accuracy: accuracy,
            seconds,
            images_per_second: (steps_per_epoch * state.batch) as f64 / seconds,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4}, test accuracy {:.2}%, {:.0} s, {:.0} images/s",
            record.epoch,
            state.epochs,
            record.train_loss,
            100.0 * accuracy,
            seconds,
            record.images_per_second
        );
        let values = [("train_loss", record.train_loss as f64), ("test_accuracy", accuracy as f64)];
        metrics.eval(trainer.step, record.epoch, &values);
        state.history.push(record);
        let axis = EvalAxis { key: "test_accuracy", label: "test accuracy (%)", scale: 100.0 };
        let moments = trainer.exec.optimizer_state(&gpu)?;
        let training = TrainingState {
            moments: &moments,
            state_json: serde_json::to_string_pretty(&state).unwrap_or_default(),
            extra: chart::run_files(&metrics, "ViT on Fashion-MNIST", &axis)?,
            keep: vec![],
        };
        ckpt::save(&args.out, &cfg, &fashion_preprocess(), &v.graph, &params, Some(training))?;
    }
    if let Some(last) = state.history.last().filter(|_| dist.is_main()) {
        let total: f64 = state.history.iter().map(|r| r.seconds).sum();
        eprintln!(
            "done: test accuracy {:.2}% after {} epochs, {:.0} s of training; checkpoint in {}",
            100.0 * last.test_accuracy,
            state.epochs_done,
            total,
            args.out.display()
        );
    }
    Ok(())
}

/// " on N ranks of B/N images" in the run's first line when data parallel.
fn ranks_note(dist: &super::dist::Dist, batch: usize) -> String {
    match dist.size() {
        1 => String::new(),
        n => format!(" on {n} ranks of {} images", batch / n),
    }
}

/// Top-5 classes of each image file.
pub fn predict(checkpoint: &Path, images: &[PathBuf]) -> Result<()> {
    if images.is_empty() {
        return Err(Error::Config("give at least one image file".into()));
    }
    let gpu = Gpu::from_env()?;
    let vit = Vit::load(&gpu, checkpoint, 1)?;
    for path in images {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let img = wgformer::models::vit_infer::decode_image(&bytes, path)?;
        let probs = vit.classify(&gpu, &img)?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        println!("{}", path.display());
        for &c in order.iter().take(5) {
            println!("  {:6.2}%  {}", 100.0 * probs[c], vit.config.label_name(c));
        }
    }
    Ok(())
}

/// Test-set accuracy; with `out`, a CSV of index,predicted,label.
pub fn eval(checkpoint: &Path, out: Option<&Path>, data: &Path) -> Result<()> {
    let gpu = Gpu::from_env()?;
    let vit = Vit::load(&gpu, checkpoint, EVAL_BATCH)?;
    let (size, channels) = (vit.config.image_size, vit.config.num_channels);
    if size != 28 || channels != 1 {
        return Err(Error::Config(format!(
            "{}: eval runs on Fashion-MNIST (28x28 grey); this model takes {size}x{size} images of {channels} channels",
            checkpoint.display()
        )));
    }
    let test = mnist::load(data, Split::Test)?;
    let (accuracy, predicted) = evaluate(&gpu, &vit, &test)?;
    println!("test accuracy: {:.2}% ({} images)", 100.0 * accuracy, test.len());
    if let Some(out) = out {
        let mut csv = String::from("index,predicted,label\n");
        for (i, (p, l)) in predicted.iter().zip(&test.labels).enumerate() {
            csv += &format!("{i},{p},{l}\n");
        }
        wgformer::util::io::write_atomic(out, csv.as_bytes())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
