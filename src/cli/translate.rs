//! `train translate`, `translate` and `eval` for the Transformer on the bundled German-English
//! pairs.

use super::progress::Progress;
use super::translate_exec::{set_constants, train_step, validation_loss};
use super::translate_plan as plan;
use super::translate_state::{
    kept_snapshots, linked, save_run, snapshot_name, EpochRecord, TrainerState, DEFAULT_AVERAGE,
};
use super::translation::bleu_of;
use std::path::PathBuf;
use std::time::Instant;
use wgformer::graph::autodiff::backward;
use wgformer::models::transformer::{self, TransformerConfig, TransformerGraph};
use wgformer::models::transformer_checkpoint as ckpt;
use wgformer::models::transformer_decode::Search;
use wgformer::runtime::exec::{Executor, HostData};
use wgformer::runtime::optim::AdamConfig;
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::text::bpe::Bpe;
use wgformer::text::corpus::{self, Buckets};
use wgformer::util::io::LinkFrom;
use wgformer::util::rng::Rng;
use wgformer::{Error, Result};

/// Padded lengths of the training batches (tokens, eos included).
pub(super) const BUCKETS: [usize; 9] = [10, 14, 18, 24, 32, 48, 64, 96, 128];

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
    /// The model: `tiny`, `small`, `base` (the paper's) or a config.json path; by default
    /// `tiny` on CPU adapters and `small` on GPUs.
    pub model: Option<String>,
    /// Overrides the model's dropout.
    pub dropout: Option<f32>,
    /// Stop when the next epoch would end past this many minutes of training.
    pub max_minutes: Option<f64>,
    /// The learning-rate schedule: `cosine` (to zero at the planned end) or `noam`.
    pub schedule: String,
    /// Average the weights of the last N epochs at the end (1: keep the last epoch's); with
    /// --resume, the saved run's choice unless given.
    pub average: Option<usize>,
    /// The products' precision in training (f16: mixed precision with a loss scale).
    pub precision: wgformer::graph::Precision,
    /// A plain progress line every N steps when stderr is not a terminal (else about every 30 s).
    pub log_every: Option<u64>,
    /// The data-parallel job this process is a rank of (a job of one without MPI).
    pub dist: super::dist::Dist,
}

pub fn train(args: &TrainArgs) -> Result<()> {
    // Under mpirun every rank trains its share of each batch; rank 0 decides when to stop,
    // validates, plans, prints and writes checkpoints, and the others adopt its state.
    let dist = &args.dist;
    let (main, ranks) = (dist.is_main(), dist.size());
    if let Some(m) = args.max_minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(Error::Config(format!("--max-minutes must be a positive number of minutes, got {m}")));
        }
    }
    if args.average == Some(0) {
        return Err(Error::Config("--average 0: average at least 1 epoch (1 keeps the last epoch's weights)".into()));
    }
    if !matches!(args.schedule.as_str(), "cosine" | "noam") {
        return Err(Error::Config(format!("--schedule {:?}: cosine or noam", args.schedule)));
    }
    let gpu = dist.gpu()?;
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
            if let Some(n) = args.average {
                s.average = n;
            }
            if let Some(m) = args.max_minutes {
                s.budget_minutes = Some(m);
            }
            if main {
                eprintln!("resuming {} after round {} of {} (step {})", dir.display(), s.epochs_done, s.epochs, s.step);
            }
            let (cfg, bpe) = ckpt::load_config(dir)?;
            (cfg, bpe, s)
        }
        None => {
            let start = Instant::now();
            let texts = train_pairs.iter().flat_map(|(s, t)| [s.as_str(), t.as_str()]);
            let bpe = Bpe::learn(texts, args.vocab, 2)?;
            if main {
                eprintln!("learned a shared BPE vocabulary of {} in {:.1} s", bpe.len(), start.elapsed().as_secs_f64());
            }
            // Measured on a 2-core CPU (50-minute budget): tiny reached small's final
            // validation loss in a quarter of the time.
            let size = args.model.as_deref().unwrap_or(if gpu.is_cpu() { "tiny" } else { "small" });
            let mut cfg = TransformerConfig::preset_or_file(size, bpe.len())?;
            if let Some(p) = args.dropout {
                cfg.dropout = p;
            }
            cfg.validate()?;
            // A run given no length trains for a time budget; --epochs alone trains that many passes.
            let budget = args.max_minutes.or(args.epochs.is_none().then_some(plan::DEFAULT_MINUTES));
            let s = TrainerState {
                epochs_done: 0,
                epochs: args.epochs.unwrap_or(plan::DEFAULT_PASSES),
                step: 0,
                tokens: args.tokens,
                lr: args.lr,
                warmup: args.warmup,
                seed: args.seed,
                history: vec![],
                average: args.average.unwrap_or(DEFAULT_AVERAGE),
                averaged: vec![],
                round_steps: 0,
                total_steps: 0,
                schedule: args.schedule.clone(),
                budget_minutes: budget,
                planned: budget.is_none(),
                probe_steps: 0,
            };
            (cfg, bpe, s)
        }
    };
    let max_len = BUCKETS[BUCKETS.len() - 1];
    let (train, dropped) = corpus::encode(&bpe, &train_pairs, max_len);
    let (valid, valid_dropped) = corpus::encode(&bpe, &valid_pairs, max_len);
    if dropped + valid_dropped > 0 && main {
        eprintln!(
            "left out as longer than {max_len} tokens: {dropped} of {} training pairs, {valid_dropped} of {} validation pairs",
            train_pairs.len(),
            valid_pairs.len()
        );
    }
    let buckets = Buckets { lens: BUCKETS.to_vec(), tokens: state.tokens.max(max_len) };
    let run = serde_json::to_string(&state).unwrap_or_default();
    let what = format!("{cfg:?} {run} {} {:?} {} {}", bpe.to_json(), args.precision, train.len(), valid.len());
    dist.check_same("configuration", &what)?;
    // A rank's graphs hold its share of each bucket's rows (Batch::shard).
    let rows = |i: usize| buckets.rows(i).div_ceil(ranks);
    let mut stream = plan::Stream::new(&buckets, &train, state.seed);
    let per_pass = stream.per_pass() as u32;
    if state.round_steps == 0 {
        // A new run, or one written before budgets: rounds are passes over the data.
        state.round_steps = per_pass;
        state.total_steps = state.epochs as u32 * per_pass;
        if args.resume.is_none() {
            state.warmup = plan::warmup_for(state.warmup, state.total_steps);
        }
    }
    if let (Some(_), Some(e)) = (&args.resume, args.epochs) {
        // --epochs on a resumed run: that many passes over the data in all.
        state.total_steps = (e as u32 * per_pass).max(state.step);
        state.epochs = plan::rounds(state.probe_steps, state.round_steps, state.total_steps);
        state.planned = true;
    }
    let config = TrainConfig {
        adam: AdamConfig { beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.0 },
        schedule: plan::schedule(&state.schedule, state.lr, state.warmup, state.total_steps, cfg.d_model),
        clip: Some(1.0),
        seed: state.seed as u32,
    };

    // One training and one evaluation graph per padded length, all on the same parameters.
    let start = Instant::now();
    // Attention's path is measured per shape class on the graphs about to be built.
    let attention = wgformer::runtime::attention_choice::policy_in(&gpu, args.precision, |p| {
        for (i, &len) in buckets.lens.iter().enumerate() {
            transformer::build_with(&cfg, rows(i), len, len, true, p.clone())?;
        }
        Ok(())
    })?;
    let training_graph = |i: usize| -> Result<(TransformerGraph, wgformer::graph::autodiff::Gradients)> {
        let len = buckets.lens[i];
        let mut t = transformer::build_with(&cfg, rows(i), len, len, true, attention.clone())?;
        t.graph.precision = args.precision;
        let grads = backward(&mut t.graph, t.loss)?;
        Ok((t, grads))
    };
    let (t0, grads0) = training_graph(0)?;
    let mut trainer = Trainer::new(&gpu, t0.graph.clone(), t0.loss, &grads0, &[], config)?;
    trainer.group = dist.group.clone();
    trainer.faults = dist.faults;
    set_constants(&gpu, &trainer.exec, &t0)?;
    let mut graphs = vec![t0];
    for i in 1..buckets.lens.len() {
        let (t, grads) = training_graph(i)?;
        let shape = trainer.add_shape(&gpu, t.graph.clone(), t.loss, &grads)?;
        set_constants(&gpu, &trainer.shapes[shape - 1], &t)?;
        graphs.push(t);
    }
    let mut evals = Vec::new();
    for (i, &len) in buckets.lens.iter().enumerate().filter(|_| main) {
        let t = transformer::build_with(&cfg, buckets.rows(i), len, len, false, attention.clone())?;
        let exec = Executor::sharing(&gpu, t.graph.clone(), Some(t.loss), None, &[], &trainer.exec)?;
        set_constants(&gpu, &exec, &t)?;
        evals.push((exec, t));
    }
    let first = &graphs[0].graph;
    let params = match &args.resume {
        Some(dir) => {
            for (p, m, v) in wgformer::runtime::checkpoint::load_moments(dir, first)? {
                trainer.exec.set_optimizer_state(&gpu, p, &m, &v)?;
            }
            trainer.step = state.step;
            // model.safetensors may hold an average; training goes on from the last round.
            let snapshot = dir.join(snapshot_name(state.epochs_done));
            let path = if snapshot.is_file() { snapshot } else { dir.join("model.safetensors") };
            eprintln!("continuing from {}", path.display());
            wgformer::runtime::checkpoint::load_params(&path, first, &ckpt::same_shape)?
        }
        None => transformer::init_params(first, state.seed),
    };
    let params = dist.start_from_rank_zero(&gpu, &trainer, params)?;
    for (p, values) in &params {
        trainer.exec.set(&gpu, *p, HostData::F32(values))?;
    }
    let mut metrics = wgformer::runtime::metrics::Metrics::of_run(args.resume.as_deref(), state.step)?;
    let n_params: usize = params.iter().map(|(_, v)| v.len()).sum();
    let train_tokens: usize = train.iter().map(|e| e.tgt.len() + 1).sum();
    let on_ranks = match ranks {
        1 => String::new(),
        n => format!("; {n} ranks, each with its share of every batch"),
    };
    let say = |line: String| {
        if main {
            eprintln!("{line}")
        }
    };
    say(format!(
        "Transformer: d_model {}, {} heads, {}+{} layers, FFN {}, vocabulary {}, {n_params} parameters; \
         {} training pairs ({train_tokens} target tokens, {per_pass} batches a pass), {} validation pairs; \
         {} buckets prepared in {:.1} s ({} shader modules and {} pipelines compiled, {:.0} ms measuring kernel choices){on_ranks}",
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
        gpu.compile_counts().1,
        wgformer::kernels::tuning::spent_ms(&gpu)
    ));
    if let (false, Some(m)) = (state.planned, state.budget_minutes) {
        say(format!(
            "time budget: {m} minutes of training and validation (--max-minutes); at most {} passes ({} steps); \
             the steps that fit are planned after measuring the first {PROBE:.0} s",
            state.epochs,
            state.total_steps,
            PROBE = plan::PROBE_SECONDS.min(m * 3.0)
        ));
    }
    let valid_batches = buckets.epoch(&valid, &mut Rng::new(0));
    let budget = state.budget_minutes.map(|m| m * 60.0);
    // Rounds' seconds include their validation: the budget bounds the whole training phase.
    let spent_before: f64 = state.history.iter().map(|r| r.seconds).sum();
    let process_start = Instant::now();
    let spent = || spent_before + process_start.elapsed().as_secs_f64();
    let stop_round = args.stop_after.map(|n| state.epochs_done + n);
    // Where the kept round snapshots are: the resumed run's directory until the first save.
    let mut snapshots_in = args.resume.clone().unwrap_or_else(|| args.out.clone());
    let mut out_of_time = false;
    // The last validation's seconds: a round stops early when the next would pass the budget.
    let mut eval_s = 0.0;
    while state.epochs_done < state.epochs && trainer.step < state.total_steps {
        if stop_round.is_some_and(|r| state.epochs_done >= r) {
            break;
        }
        let round = state.epochs_done;
        let probing = !state.planned;
        let end = if probing {
            state.total_steps
        } else {
            plan::round_end(round, state.probe_steps, state.round_steps, state.total_steps)
        };
        let unit = state.unit(per_pass);
        let prefix = match probing {
            true => format!("{unit} 1 (measuring)"),
            false => format!("{unit} {}/{}", round + 1, state.epochs),
        };
        let mut bar = Progress::new(u64::from(end - trainer.step), prefix, main, args.log_every);
        let start = Instant::now();
        let first_step = trainer.step;
        let (mut loss_sum, mut tokens, mut smooth) = (0.0f64, 0usize, None::<f32>);
        while trainer.step < end {
            // Rank 0's clock decides for every rank: 1 out of time, 2 measured enough.
            let measured = start.elapsed().as_secs_f64();
            let stop = match () {
                _ if budget.is_some_and(|b| spent() + eval_s >= b) => 1,
                _ if probing && plan::probed(trainer.step - first_step, measured, budget.unwrap_or(f64::INFINITY)) => 2,
                _ => 0,
            };
            match dist.decide(stop)? {
                1 => {
                    out_of_time = true;
                    break;
                }
                2 => break,
                _ => {}
            }
            let (i, b) = stream.at(trainer.step);
            let i = *i;
            let (attempt, lr) = (trainer.step + 1, trainer.lr());
            let loss = train_step(&gpu, &mut trainer, dist, i, &graphs[i], b)?;
            // A step skipped for an overflowing loss scale (f16) is retried at the lower scale.
            if !loss.is_finite() {
                metrics.step(attempt, loss, lr, 0.0);
                continue;
            }
            loss_sum += loss as f64 * b.tokens as f64;
            tokens += b.tokens;
            metrics.step(attempt, loss, lr, tokens as f64 / start.elapsed().as_secs_f64());
            let s = smooth.map_or(loss, |s| 0.98 * s + 0.02 * loss);
            smooth = Some(s);
            let tps = tokens as f64 / start.elapsed().as_secs_f64();
            let left = budget.map_or(String::new(), |b| format!(", budget {:.0} min left", (b - spent()) / 60.0));
            let scale = super::scale_note(&trainer) + &super::comm_note(&trainer);
            bar.step(format!("loss {s:.3} lr {:.2e} {tps:.0} tok/s{scale}{left}", trainer.lr()));
        }
        let train_seconds = start.elapsed().as_secs_f64();
        bar.finish();
        if trainer.step == first_step {
            break;
        }
        if !main {
            // Rank 0 validates, plans and saves; the others adopt the state it ends with.
            dist.adopt(&mut state)?;
            trainer.config.schedule =
                plan::schedule(&state.schedule, state.lr, state.warmup, state.total_steps, cfg.d_model);
            if out_of_time {
                break;
            }
            continue;
        }
        let eval_start = Instant::now();
        let valid_loss = validation_loss(&gpu, &evals, &valid_batches)?;
        let params = trainer.params(&gpu)?;
        let named: Vec<(String, Vec<f32>)> =
            params.iter().map(|(p, v)| (first.desc(*p).name.clone(), v.clone())).collect();
        let (valid_stats, _) = bleu_of(&gpu, &cfg, &bpe, &named, bleu_pairs, Search::GREEDY)?;
        let valid_bleu = valid_stats.score();
        let eval_seconds = eval_start.elapsed().as_secs_f64();
        eval_s = eval_seconds;
        if probing {
            // The first round measured both rates: plan the steps that fit in what is left.
            let steps = trainer.step - first_step;
            let probe = plan::Probe {
                steps: trainer.step,
                per_step: train_seconds / steps as f64,
                eval_s: eval_seconds,
                left_s: budget.map_or(f64::INFINITY, |b| b - spent()),
            };
            let fit = plan::fit(probe, state.total_steps, per_pass);
            state.total_steps = fit.total_steps;
            state.round_steps = fit.round_steps;
            state.probe_steps = trainer.step;
            state.epochs = plan::rounds(state.probe_steps, fit.round_steps, fit.total_steps);
            state.warmup = plan::warmup_for(args.warmup, fit.total_steps);
            state.planned = true;
            trainer.config.schedule =
                plan::schedule(&state.schedule, state.lr, state.warmup, state.total_steps, cfg.d_model);
            eprintln!(
                "planned {} steps ({:.2} passes over the data) in {} rounds: {:.2} s a step, {:.0} s a validation; warmup {}",
                fit.total_steps,
                fit.total_steps as f64 / per_pass as f64,
                state.epochs,
                probe.per_step,
                eval_seconds,
                state.warmup
            );
        } else if let Some(b) = budget {
            // A slower pace than planned (a busy machine, longer batches): fewer steps, so that
            // the schedule still ends where the run does.
            let rounds_left = state.epochs.saturating_sub(round + 1) as u32;
            let per_step = train_seconds / (trainer.step - first_step) as f64;
            let left = b - spent();
            if let Some(total) = plan::shrink(trainer.step, state.total_steps, per_step, eval_s, rounds_left, left) {
                state.total_steps = total;
                state.epochs = plan::rounds(state.probe_steps, state.round_steps, total).max(round + 1);
                trainer.config.schedule = plan::schedule(&state.schedule, state.lr, state.warmup, total, cfg.d_model);
                eprintln!("replanned: {total} steps in {} rounds at {per_step:.2} s a step", state.epochs);
            }
        }
        let record = EpochRecord {
            epoch: round + 1,
            train_loss: (loss_sum / tokens.max(1) as f64) as f32,
            valid_loss,
            valid_bleu: valid_bleu as f32,
            seconds: train_seconds + eval_seconds,
            tokens_per_second: tokens as f64 / train_seconds,
            step: trainer.step,
        };
        let unit = state.unit(per_pass);
        eprintln!(
            "{unit} {}/{}: step {}, train loss {:.3}, valid loss {:.3}, valid BLEU {:.2} (greedy, {} pairs), \
             {:.0} s + {:.0} s validating, {:.0} target tokens/s{}",
            record.epoch,
            state.epochs,
            trainer.step,
            record.train_loss,
            valid_loss,
            valid_bleu,
            bleu_pairs.len(),
            train_seconds,
            eval_seconds,
            record.tokens_per_second,
            budget.map_or(String::new(), |b| format!(", {:.1} of {:.0} min spent", spent() / 60.0, b / 60.0))
        );
        let values =
            [("train_loss", record.train_loss as f64), ("valid_loss", valid_loss as f64), ("valid_bleu", valid_bleu)];
        metrics.eval(trainer.step, round + 1, &values);
        state.history.push(record);
        state.epochs_done = round + 1;
        state.step = trainer.step;
        state.averaged.clear();
        if out_of_time {
            // The plan missed: this round is the last.
            state.epochs = state.epochs_done;
            state.total_steps = trainer.step;
        }
        let mut keep = linked(kept_snapshots(&snapshots_in, round, state.average - 1));
        if state.average > 1 {
            // This round's snapshot is a second name for the model file.
            keep.push((LinkFrom::Written("model.safetensors".into()), snapshot_name(round + 1)));
        }
        save_run(&gpu, &args.out, &cfg, &bpe, first, &params, &trainer, &state, &metrics, keep)?;
        snapshots_in = args.out.clone();
        dist.adopt(&mut state)?;
        if out_of_time {
            eprintln!("stopping: the time budget of {:.0} minutes is spent", state.budget_minutes.unwrap_or(0.0));
            break;
        }
    }
    if !main {
        return Ok(());
    }
    super::translate_finish::report_done(&state, per_pass, &args.out);
    // A budget spent before a round could take a step still ends the run with its test BLEU,
    // when this run's directory holds its checkpoint.
    let spent_out = out_of_time && snapshots_in == args.out;
    if state.epochs_done == state.epochs || trainer.step >= state.total_steps || spent_out {
        let unit = state.unit(per_pass);
        super::translate_finish::finish(
            &gpu,
            args,
            &cfg,
            &bpe,
            first,
            &mut trainer,
            &mut state,
            &evals,
            &valid_batches,
            &snapshots_in,
            unit,
        )?;
    }
    Ok(())
}
