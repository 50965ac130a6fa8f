//! `train translate`, `translate` and `eval` for the Transformer on the bundled German-English
//! pairs.

use super::plot::training_png;
use super::translation::{bleu_of, test_bleu};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wgformer::engine::autodiff::backward;
use wgformer::engine::checkpoint::TrainingState;
use wgformer::engine::exec::{Executor, HostData, StepOptions};
use wgformer::engine::optim::{AdamConfig, Schedule};
use wgformer::engine::trainer::{TrainConfig, Trainer};
use wgformer::graph::TensorId;
use wgformer::models::transformer::{self, TransformerConfig, TransformerGraph};
use wgformer::models::transformer_checkpoint as ckpt;
use wgformer::models::transformer_decode::Search;
use wgformer::text::bpe::Bpe;
use wgformer::text::corpus::{self, Batch, Buckets};
use wgformer::util::io::LinkFrom;
use wgformer::util::rng::Rng;
use wgformer::{Error, Gpu, Result};

/// Padded lengths of the training batches (tokens, eos included).
pub(super) const BUCKETS: [usize; 7] = [10, 14, 18, 24, 32, 48, 64];

/// Options of `train translate`.
pub struct TrainArgs {
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    /// Epochs in all (12 for a new run); with --resume, extends or shortens the saved run.
    pub epochs: Option<usize>,
    /// Padded tokens per batch (rows x length).
    pub tokens: usize,
    /// Peak learning rate, reached after `warmup` steps (the paper's schedule, rescaled).
    pub lr: f32,
    pub warmup: u32,
    pub seed: u64,
    pub data: PathBuf,
    pub vocab: usize,
    /// Train on the first N pairs only (a quick run).
    pub train_pairs: Option<usize>,
    /// The BLEU after each epoch translates the first N validation pairs (the loss uses all).
    pub valid_pairs: usize,
    pub stop_after: Option<usize>,
    /// The test BLEU at the end translates the first N test pairs.
    pub test_pairs: Option<usize>,
    /// The model: `tiny`, `small` (the default), `base` (the paper's) or a config.json path.
    pub model: String,
    /// Overrides the model's dropout.
    pub dropout: Option<f32>,
    /// Stop when the next epoch would end past this many minutes of training.
    pub max_minutes: Option<f64>,
    /// Average the weights of the last N epochs at the end (1: keep the last epoch's); with
    /// --resume, the saved run's choice unless given.
    pub average: Option<usize>,
}

/// One epoch in trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EpochRecord {
    epoch: usize,
    train_loss: f32,
    valid_loss: f32,
    valid_bleu: f32,
    seconds: f64,
    tokens_per_second: f64,
}

/// trainer_state.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainerState {
    epochs_done: usize,
    epochs: usize,
    step: u32,
    tokens: usize,
    lr: f32,
    warmup: u32,
    seed: u64,
    history: Vec<EpochRecord>,
    /// Epoch snapshots kept for averaging at the end (1: none).
    #[serde(default = "default_average")]
    average: usize,
    /// The epochs whose mean model.safetensors holds; empty: the last epoch's weights.
    #[serde(default)]
    averaged: Vec<usize>,
}

/// Epochs averaged at the end of a run unless told otherwise.
const DEFAULT_AVERAGE: usize = 5;

fn default_average() -> usize {
    DEFAULT_AVERAGE
}

fn feed<'a>(t: &TransformerGraph, b: &'a Batch) -> [(TensorId, HostData<'a>); 4] {
    [
        (t.src, HostData::U32(&b.src)),
        (t.src_lens, HostData::U32(&b.src_lens)),
        (t.tgt_in, HostData::U32(&b.tgt_in)),
        (t.tgt_out, HostData::U32(&b.tgt_out)),
    ]
}

fn set_constants(gpu: &Gpu, exec: &Executor, t: &TransformerGraph) -> Result<()> {
    for (id, values) in t.constants() {
        exec.set(gpu, id, HostData::F32(&values))?;
    }
    Ok(())
}

/// Mean loss per target token over `batches`, with the evaluation executors.
fn validation_loss(gpu: &Gpu, evals: &[(Executor, TransformerGraph)], batches: &[(usize, Batch)]) -> Result<f32> {
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for (i, b) in batches {
        let (exec, t) = &evals[*i];
        let loss = exec.step(gpu, &feed(t, b), &StepOptions::default())?;
        sum += loss as f64 * b.tokens as f64;
        tokens += b.tokens;
    }
    Ok((sum / tokens.max(1) as f64) as f32)
}

pub fn train(args: &TrainArgs) -> Result<()> {
    if let Some(m) = args.max_minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(Error::Config(format!("--max-minutes must be a positive number of minutes, got {m}")));
        }
    }
    if args.average == Some(0) {
        return Err(Error::Config("--average 0: average at least 1 epoch (1 keeps the last epoch's weights)".into()));
    }
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", gpu.describe());
    let mut train_pairs = corpus::read_split(&args.data, "train")?;
    if let Some(n) = args.train_pairs {
        train_pairs.truncate(n);
    }
    let valid_pairs = corpus::read_split(&args.data, "valid")?;
    let bleu_pairs = &valid_pairs[..args.valid_pairs.min(valid_pairs.len())];
    if train_pairs.is_empty() || valid_pairs.is_empty() {
        return Err(Error::Config("the training and validation sets must not be empty".into()));
    }
    let (cfg, bpe, mut state) = match &args.resume {
        Some(dir) => {
            let mut s = super::read_trainer_state::<TrainerState>(dir)?;
            if let Some(e) = args.epochs {
                s.epochs = e;
            }
            if let Some(n) = args.average {
                s.average = n;
            }
            eprintln!("resuming {} after epoch {} of {} (step {})", dir.display(), s.epochs_done, s.epochs, s.step);
            let (cfg, bpe) = ckpt::load_config(dir)?;
            (cfg, bpe, s)
        }
        None => {
            let start = Instant::now();
            let texts = train_pairs.iter().flat_map(|(s, t)| [s.as_str(), t.as_str()]);
            let bpe = Bpe::learn(texts, args.vocab, 2)?;
            eprintln!("learned a shared BPE vocabulary of {} in {:.1} s", bpe.len(), start.elapsed().as_secs_f64());
            let mut cfg = TransformerConfig::preset_or_file(&args.model, bpe.len())?;
            if let Some(p) = args.dropout {
                cfg.dropout = p;
            }
            cfg.validate()?;
            let s = TrainerState {
                epochs_done: 0,
                epochs: args.epochs.unwrap_or(12),
                step: 0,
                tokens: args.tokens,
                lr: args.lr,
                warmup: args.warmup,
                seed: args.seed,
                history: vec![],
                average: args.average.unwrap_or(DEFAULT_AVERAGE),
                averaged: vec![],
            };
            (cfg, bpe, s)
        }
    };
    let max_len = BUCKETS[BUCKETS.len() - 1];
    let (train, dropped) = corpus::encode(&bpe, &train_pairs, max_len);
    let (valid, _) = corpus::encode(&bpe, &valid_pairs, max_len);
    if dropped > 0 {
        eprintln!("{dropped} training pairs are longer than {max_len} tokens and are left out");
    }
    let buckets = Buckets { lens: BUCKETS.to_vec(), tokens: state.tokens.max(max_len) };
    // The paper's schedule, scaled so that it peaks at `lr` after `warmup` steps.
    let warmup = state.warmup.max(1);
    let scale = state.lr * (cfg.d_model as f32).sqrt() * (warmup as f32).sqrt();
    let config = TrainConfig {
        adam: AdamConfig { beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.0 },
        schedule: Schedule::Noam { d_model: cfg.d_model, warmup, scale },
        clip: Some(1.0),
        seed: state.seed as u32,
    };

    // One training and one evaluation graph per padded length, all on the same parameters.
    let start = Instant::now();
    let attention = wgformer::kernels::attention::policy(&gpu)?;
    let training_graph = |i: usize| -> Result<(TransformerGraph, wgformer::engine::autodiff::Gradients)> {
        let len = buckets.lens[i];
        let mut t = transformer::build_with(&cfg, buckets.rows(i), len, len, true, attention)?;
        let grads = backward(&mut t.graph, t.loss)?;
        Ok((t, grads))
    };
    let (t0, grads0) = training_graph(0)?;
    let mut trainer = Trainer::new(&gpu, t0.graph.clone(), t0.loss, &grads0, &[], config)?;
    set_constants(&gpu, &trainer.exec, &t0)?;
    let mut graphs = vec![t0];
    for i in 1..buckets.lens.len() {
        let (t, grads) = training_graph(i)?;
        let shape = trainer.add_shape(&gpu, t.graph.clone(), t.loss, &grads)?;
        set_constants(&gpu, &trainer.shapes[shape - 1], &t)?;
        graphs.push(t);
    }
    let mut evals = Vec::new();
    for (i, &len) in buckets.lens.iter().enumerate() {
        let t = transformer::build_with(&cfg, buckets.rows(i), len, len, false, attention)?;
        let exec = Executor::sharing(&gpu, t.graph.clone(), Some(t.loss), None, &[], &trainer.exec)?;
        set_constants(&gpu, &exec, &t)?;
        evals.push((exec, t));
    }
    let first = &graphs[0].graph;
    let params = match &args.resume {
        Some(dir) => {
            for (p, m, v) in wgformer::engine::checkpoint::load_moments(dir, first)? {
                trainer.exec.set_optimizer_state(&gpu, p, &m, &v)?;
            }
            trainer.step = state.step;
            // model.safetensors may hold an average; training goes on from the last epoch.
            let snapshot = dir.join(snapshot_name(state.epochs_done));
            let path = if snapshot.is_file() { snapshot } else { dir.join("model.safetensors") };
            eprintln!("continuing from {}", path.display());
            wgformer::engine::checkpoint::load_params(&path, first, &ckpt::same_shape)?
        }
        None => transformer::init_params(first, state.seed),
    };
    for (p, values) in &params {
        trainer.exec.set(&gpu, *p, HostData::F32(values))?;
    }
    let n_params: usize = params.iter().map(|(_, v)| v.len()).sum();
    let train_tokens: usize = train.iter().map(|e| e.tgt.len() + 1).sum();
    eprintln!(
        "Transformer: d_model {}, {} heads, {}+{} layers, FFN {}, vocabulary {}, {n_params} parameters; \
         {} training pairs ({train_tokens} target tokens), {} validation pairs; {} buckets prepared in {:.1} s \
         ({} shader modules and {} pipelines compiled)",
        cfg.d_model,
        cfg.num_heads,
        cfg.encoder_layers,
        cfg.decoder_layers,
        cfg.d_ff,
        cfg.vocab_size,
        train.len(),
        valid.len(),
        buckets.lens.len(),
        start.elapsed().as_secs_f64(),
        gpu.compile_counts().0,
        gpu.compile_counts().1
    );
    let valid_batches = buckets.epoch(&valid, &mut Rng::new(0));
    let last_epoch = match args.stop_after {
        Some(n) => (state.epochs_done + n).min(state.epochs),
        None => state.epochs,
    };
    let budget = args.max_minutes.map(|m| m * 60.0);
    // Where the kept epoch snapshots are: the resumed run's directory until the first save.
    let mut snapshots_in = args.resume.clone().unwrap_or_else(|| args.out.clone());
    let mut out_of_time = false;
    for epoch in state.epochs_done..last_epoch {
        if let (Some(budget), Some(last)) = (budget, state.history.last()) {
            let spent: f64 = state.history.iter().map(|r| r.seconds).sum();
            if spent + last.seconds > budget {
                eprintln!("stopping: another epoch would pass --max-minutes ({spent:.0} s of training so far)");
                out_of_time = true;
                break;
            }
        }
        let batches = buckets.epoch(&train, &mut Rng::new(state.seed.wrapping_mul(1000) + epoch as u64));
        let bar = ProgressBar::new(batches.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, state.epochs));
        let start = Instant::now();
        let (mut loss_sum, mut tokens, mut smooth) = (0.0f64, 0usize, None::<f32>);
        for (i, b) in &batches {
            let loss = trainer.step_shape(&gpu, *i, &feed(&graphs[*i], b))?;
            loss_sum += loss as f64 * b.tokens as f64;
            tokens += b.tokens;
            let s = smooth.map_or(loss, |s| 0.98 * s + 0.02 * loss);
            smooth = Some(s);
            let tps = tokens as f64 / start.elapsed().as_secs_f64();
            bar.set_message(format!("loss {s:.3} lr {:.2e} {tps:.0} tok/s", trainer.lr()));
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let valid_loss = validation_loss(&gpu, &evals, &valid_batches)?;
        let params = trainer.params(&gpu)?;
        let named: Vec<(String, Vec<f32>)> =
            params.iter().map(|(p, v)| (first.desc(*p).name.clone(), v.clone())).collect();
        let eval_start = Instant::now();
        let (valid_stats, _) = bleu_of(&gpu, &cfg, &bpe, &named, bleu_pairs, Search::GREEDY)?;
        let valid_bleu = valid_stats.score();
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: (loss_sum / tokens.max(1) as f64) as f32,
            valid_loss,
            valid_bleu: valid_bleu as f32,
            seconds,
            tokens_per_second: tokens as f64 / seconds,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.3}, valid loss {:.3}, valid BLEU {:.2} (greedy, {} pairs, {:.0} s), {:.0} s, {:.0} target tokens/s",
            record.epoch,
            state.epochs,
            record.train_loss,
            valid_loss,
            valid_bleu,
            bleu_pairs.len(),
            eval_start.elapsed().as_secs_f64(),
            seconds,
            record.tokens_per_second
        );
        state.history.push(record);
        state.epochs_done = epoch + 1;
        state.step = trainer.step;
        state.averaged.clear();
        let mut keep = linked(kept_snapshots(&snapshots_in, epoch, state.average - 1));
        if state.average > 1 {
            // This epoch's snapshot is a second name for the model file.
            keep.push((LinkFrom::Written("model.safetensors".into()), snapshot_name(epoch + 1)));
        }
        save_run(&gpu, &args.out, &cfg, &bpe, first, &params, &trainer, &state, keep)?;
        snapshots_in = args.out.clone();
    }
    let total: f64 = state.history.iter().map(|r| r.seconds).sum();
    if let Some(last) = state.history.last() {
        eprintln!(
            "done: {} epochs, {:.0} s of training, {:.0} target tokens/s; valid BLEU {:.2}; checkpoint in {}",
            state.epochs_done,
            total,
            last.tokens_per_second,
            last.valid_bleu,
            args.out.display()
        );
    }
    if state.epochs_done == state.epochs || out_of_time {
        let kept = kept_snapshots(&snapshots_in, state.epochs_done, state.average);
        if kept.len() > 1 {
            let paths: Vec<PathBuf> = kept.iter().map(|(p, _)| p.clone()).collect();
            let mean = wgformer::engine::checkpoint::average_params(&paths, first, &ckpt::same_shape)?;
            for (p, v) in &mean {
                trainer.exec.set(&gpu, *p, HostData::F32(v))?;
            }
            let loss = validation_loss(&gpu, &evals, &valid_batches)?;
            let last = state.history.last().map_or(f32::INFINITY, |r| r.valid_loss);
            let (from, to) = (state.epochs_done + 1 - kept.len(), state.epochs_done);
            let better = loss < last;
            eprintln!(
                "the mean of epochs {from}-{to}: valid loss {loss:.3} against {last:.3} for epoch {to} alone; {}",
                if better {
                    "the checkpoint keeps the mean".to_string()
                } else {
                    format!("keeping epoch {to}'s weights")
                }
            );
            if better {
                state.averaged = (from..=to).collect();
                save_run(&gpu, &args.out, &cfg, &bpe, first, &mean, &trainer, &state, linked(kept))?;
            }
        }
        let mut test = corpus::read_split(&args.data, "test")?;
        test.truncate(args.test_pairs.unwrap_or(usize::MAX));
        let ck = ckpt::load(&args.out)?;
        for (name, search) in [("greedy", Search::GREEDY), ("beam 4", Search::PAPER)] {
            eprintln!("{}", test_bleu(&gpu, &ck, &test, name, search)?.0);
        }
    }
    Ok(())
}

/// The name of epoch `epoch`'s weights in a run's directory (kept for averaging).
fn snapshot_name(epoch: usize) -> String {
    format!("epoch-{epoch:03}.safetensors")
}

/// The snapshots of the last `n` epochs up to `last` that `dir` holds, as (path, name).
fn kept_snapshots(dir: &Path, last: usize, n: usize) -> Vec<(PathBuf, String)> {
    (last + 1 - n.min(last)..=last)
        .filter(|&e| e > 0)
        .map(snapshot_name)
        .map(|name| (dir.join(&name), name))
        .filter(|(path, _)| path.is_file())
        .collect()
}

/// Snapshots to link into the next checkpoint from where they are now.
fn linked(snapshots: Vec<(PathBuf, String)>) -> Vec<(LinkFrom, String)> {
    snapshots.into_iter().map(|(path, name)| (LinkFrom::File(path), name)).collect()
}

/// Writes the run's checkpoint: `params` as the model, the optimizer state, trainer_state.json,
/// the plot, and the `keep` files linked in.
#[allow(clippy::too_many_arguments)]
fn save_run(
    gpu: &Gpu,
    out: &Path,
    cfg: &TransformerConfig,
    bpe: &Bpe,
    graph: &wgformer::graph::Graph,
    params: &[(TensorId, Vec<f32>)],
    trainer: &Trainer,
    state: &TrainerState,
    keep: Vec<(LinkFrom, String)>,
) -> Result<()> {
    let losses: Vec<f32> = state.history.iter().map(|r| r.train_loss).collect();
    let bleus: Vec<f32> = state.history.iter().map(|r| r.valid_bleu).collect();
    let max_bleu = bleus.iter().copied().fold(10.0, f32::max);
    let extra = vec![("training.png", training_png(&losses, &bleus, max_bleu))];
    let moments = trainer.exec.optimizer_state(gpu)?;
    let training = TrainingState {
        moments: &moments,
        state_json: serde_json::to_string_pretty(state).unwrap_or_default(),
        extra,
        keep,
    };
    ckpt::save(out, cfg, bpe, graph, params, Some(training))
}
