//! Setting up a translation run: the data encoded with its vocabulary, the plan, one training
//! graph per padded length on shared parameters, the evaluation graphs, the parameters
//! (initial or the checkpoint's) on every rank.

use super::exec::set_constants;
use super::plan::{self, Stream};
use super::run::{Start, TranslateRun};
use super::state::{snapshot_name, TrainerState};
use super::{TranslateData, TranslateRecipe, BUCKETS};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::autodiff::{backward, Gradients};
use crate::models::transformer::{self, TransformerConfig, TransformerGraph};
use crate::models::translation::{by_id, Vocabulary};
use crate::runtime::exec::{Executor, HostData};
use crate::runtime::optim::AdamConfig;
use crate::runtime::trainer::{TrainConfig, Trainer};
use crate::text::corpus::{self, Buckets};
use crate::train::{Event, Observer, RunContext};
use crate::util::rng::Rng;
use std::sync::Arc;

impl TranslateRun {
    /// The run of `(cfg, vocab, state)`, its parameters from `start`.
    pub(super) fn build(
        gpu: Arc<Gpu>,
        recipe: &TranslateRecipe,
        data: TranslateData,
        ctx: RunContext,
        (cfg, vocab, mut state): (TransformerConfig, Vocabulary, TrainerState),
        start_from: Start,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        let (from, out) = super::run::checkpoint_dir(&ctx)?;
        let (ranks, main) = (&ctx.ranks, ctx.ranks.is_main());
        let resumed = matches!(start_from, Start::Resumed);
        // A published model has positions for so many tokens; longer pairs are left out.
        let lens: Vec<usize> = BUCKETS.iter().copied().filter(|&l| l <= vocab.max_positions()).collect();
        let max_len = *lens.last().ok_or_else(|| {
            crate::error::Error::Config(format!("the model has positions for {} tokens only", vocab.max_positions()))
        })?;
        let pair = |s: &str, t: &str| vocab.encode_pair(s, t);
        let (train, dropped) = corpus::encode_with(&data.train, max_len, &pair);
        let (valid, valid_dropped) = corpus::encode_with(&data.valid, max_len, &pair);
        if dropped + valid_dropped > 0 {
            obs.event(&Event::note(format!(
                "left out as longer than {max_len} tokens: {dropped} of {} training pairs, {valid_dropped} of {} validation pairs",
                data.train.len(),
                data.valid.len()
            )));
        }
        let tokens = fitting_tokens(&gpu, &cfg, state.tokens.max(max_len), max_len, obs)?;
        let buckets = Buckets { lens, tokens, specials: vocab.specials(&cfg) };
        let run = serde_json::to_string(&state).unwrap_or_default();
        let tokenizer = match &vocab {
            Vocabulary::Bpe(bpe) => bpe.to_json(),
            Vocabulary::Marian(m) => format!("{:?}", m.files.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()),
        };
        let what = format!("{cfg:?} {run} {tokenizer} {:?} {} {}", recipe.precision, train.len(), valid.len());
        ranks.check_same("configuration", &what)?;
        let train_tokens: usize = train.iter().map(|e| e.tgt.len() + 1).sum();
        let (n_train, n_valid) = (train.len(), valid.len());
        let valid_batches = buckets.epoch(&valid, &mut Rng::new(0));
        let stream = Stream::new(buckets.clone(), train, state.seed);
        let per_pass = stream.per_pass() as u32;
        if state.round_steps == 0 {
            // A new run, or one written before budgets: rounds are passes over the data.
            state.round_steps = per_pass;
            state.total_steps = state.epochs as u32 * per_pass;
            if !resumed {
                state.warmup = plan::warmup_for(state.warmup, state.total_steps);
            }
        }
        if let (true, Some(e)) = (resumed, recipe.epochs) {
            // epochs on a resumed run: that many passes over the data in all.
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
        let start = ctx.clock.seconds();
        let (mut trainer, graphs, evals) = build_graphs(&gpu, &cfg, &buckets, recipe, config, &ctx, &vocab)?;
        let first = &graphs[0].graph;
        let init = std::path::Path::new(recipe.init.as_deref().unwrap_or(""));
        let params =
            starting_params(&gpu, &mut trainer, first, (&cfg, &vocab, &state), start_from, (&from, init), obs)?;
        let params = ranks.start_from_rank_zero(&gpu, &trainer, params)?;
        for (p, values) in &params {
            trainer.exec.set(&gpu, *p, HostData::F32(values))?;
        }
        let metrics = match resumed {
            true => crate::runtime::metrics::Metrics::resume(&from, state.step)?,
            false => Default::default(),
        };
        let n_params: usize = params.iter().map(|(_, v)| v.len()).sum();
        let on_ranks = match ranks.size() {
            1 => String::new(),
            n => format!("; {n} ranks, each with its share of every batch"),
        };
        obs.event(&Event::Started {
            description: format!(
                "Transformer: d_model {}, {} heads, {}+{} layers, FFN {}, vocabulary {}, {n_params} parameters; \
                 {n_train} training pairs ({train_tokens} target tokens, {per_pass} batches a pass), {n_valid} validation pairs; \
                 {} buckets prepared in {:.1} s ({} shader modules and {} pipelines compiled, {:.0} ms measuring kernel choices){on_ranks}",
                cfg.d_model,
                cfg.num_heads,
                cfg.encoder_layers,
                cfg.decoder_layers,
                cfg.d_ff,
                cfg.vocab_size,
                buckets.lens.len(),
                ctx.clock.seconds() - start,
                gpu.compile_counts().0,
                gpu.compile_counts().1,
                crate::kernels::tuning::spent_ms(&gpu)
            ),
        });
        if let (false, Some(m)) = (state.planned, state.budget_minutes) {
            obs.event(&Event::note(format!(
                "time budget: {m} minutes of training and validation; at most {} passes ({} steps); \
                 the steps that fit are planned after measuring the first {PROBE:.0} s",
                state.epochs,
                state.total_steps,
                PROBE = plan::PROBE_SECONDS.min(m * 3.0)
            )));
        }
        let _ = main;
        let spent_before: f64 = state.history.iter().map(|r| r.seconds).sum();
        let started_at = ctx.clock.seconds();
        Ok(TranslateRun {
            gpu,
            recipe: recipe.clone(),
            data,
            cfg,
            vocab,
            state,
            trainer,
            graphs,
            evals,
            stream,
            per_pass,
            valid_batches,
            metrics,
            ctx,
            out,
            snapshots_in: from,
            spent_before,
            started_at,
            out_of_time: false,
            eval_s: 0.0,
            done: false,
            current: None,
        })
    }
}

/// The parameters a run starts from (on a resumed run also Adam's moments and the step, set on
/// `trainer`): the checkpoint's in `from`, the trained model's from `init`, or initial ones.
fn starting_params(
    gpu: &Gpu,
    trainer: &mut Trainer,
    first: &crate::graph::Graph,
    (cfg, vocab, state): (&TransformerConfig, &Vocabulary, &TrainerState),
    start_from: Start,
    (from, init): (&std::path::Path, &std::path::Path),
    obs: &mut dyn Observer,
) -> Result<crate::runtime::checkpoint::Params> {
    Ok(match start_from {
        Start::Resumed => {
            let trained: Vec<_> =
                first.params().into_iter().filter(|&p| vocab.is_trained(&first.desc(p).name)).collect();
            for (p, m, v) in crate::runtime::checkpoint::load_moments_of(from, first, &trained)? {
                trainer.exec.set_optimizer_state(gpu, p, &m, &v)?;
            }
            trainer.step = state.step;
            // model.safetensors may hold an average; training goes on from the last round.
            let snapshot = from.join(snapshot_name(state.epochs_done));
            let path = if snapshot.is_file() { snapshot } else { from.join("model.safetensors") };
            obs.event(&Event::note(format!("continuing from {}", path.display())));
            vocab.read_params(&path, cfg, first)?
        }
        Start::From(named) => by_id(first, named, init)?,
        Start::Fresh => transformer::init_params(first, state.seed),
    })
}

/// `tokens` a step, or fewer where a step's logits (a row per target token, a column per
/// vocabulary entry) would not fit the adapter's largest storage binding (128 MiB on lavapipe
/// and WebGPU's default: 577 rows at OPUS-MT's 58,101 entries), with a note saying so.
fn fitting_tokens(
    gpu: &Gpu,
    cfg: &TransformerConfig,
    tokens: usize,
    max_len: usize,
    obs: &mut dyn Observer,
) -> Result<usize> {
    let row_bytes = cfg.vocab_size as u64 * 4;
    let fit = (gpu.limits.max_storage_buffer_binding_size / row_bytes.max(1)) as usize;
    if tokens <= fit {
        return Ok(tokens);
    }
    if fit < max_len {
        return Err(crate::error::Error::Config(format!(
            "a vocabulary of {} needs {} bytes of logits for one sentence of {max_len} tokens, over this adapter's \
             storage binding limit of {} bytes",
            cfg.vocab_size,
            row_bytes * max_len as u64,
            gpu.limits.max_storage_buffer_binding_size
        )));
    }
    obs.event(&Event::note(format!(
        "{tokens} tokens a step need {} MB of logits at a vocabulary of {}, over this adapter's {} MB storage binding: \
         training with {fit} tokens a step",
        row_bytes * tokens as u64 / 1_000_000,
        cfg.vocab_size,
        gpu.limits.max_storage_buffer_binding_size / 1_000_000
    )));
    Ok(fit)
}

/// The trainer with one training graph per padded length (all on the same parameters) and,
/// on rank 0, the evaluation graphs with their executors.
type Graphs = (Trainer, Vec<TransformerGraph>, Vec<(Executor, TransformerGraph)>);

fn build_graphs(
    gpu: &Gpu,
    cfg: &TransformerConfig,
    buckets: &Buckets,
    recipe: &TranslateRecipe,
    config: TrainConfig,
    ctx: &RunContext,
    vocab: &Vocabulary,
) -> Result<Graphs> {
    let ranks = &ctx.ranks;
    // A rank's graphs hold its share of each bucket's rows (Batch::shard).
    let rows = |i: usize| buckets.rows(i).div_ceil(ranks.size());
    // Attention's path is measured per shape class on the graphs about to be built.
    let attention = crate::runtime::attention_choice::policy_in(gpu, recipe.precision, |p| {
        for (i, &len) in buckets.lens.iter().enumerate() {
            transformer::build_with(cfg, rows(i), len, len, true, p.clone())?;
        }
        Ok(())
    })?;
    let training_graph = |i: usize| -> Result<(TransformerGraph, Gradients)> {
        let len = buckets.lens[i];
        let mut t = transformer::build_with(cfg, rows(i), len, len, true, attention.clone())?;
        t.graph.precision = recipe.precision;
        let mut grads = backward(&mut t.graph, t.loss)?;
        // Parameters the model keeps fixed (Marian's final logits bias) get no Adam update.
        grads.of.retain(|p, _| vocab.is_trained(&t.graph.desc(*p).name));
        Ok((t, grads))
    };
    let (t0, grads0) = training_graph(0)?;
    let mut trainer = Trainer::new(gpu, t0.graph.clone(), t0.loss, &grads0, &[], config)?;
    ranks.attach(&mut trainer);
    set_constants(gpu, &trainer.exec, &t0)?;
    let mut graphs = vec![t0];
    for i in 1..buckets.lens.len() {
        let (t, grads) = training_graph(i)?;
        let shape = trainer.add_shape(gpu, t.graph.clone(), t.loss, &grads)?;
        set_constants(gpu, &trainer.shapes[shape - 1], &t)?;
        graphs.push(t);
    }
    let mut evals = Vec::new();
    for (i, &len) in buckets.lens.iter().enumerate().filter(|_| ranks.is_main()) {
        let t = transformer::build_with(cfg, buckets.rows(i), len, len, false, attention.clone())?;
        let exec = Executor::sharing(gpu, t.graph.clone(), Some(t.loss), None, &[], &trainer.exec)?;
        set_constants(gpu, &exec, &t)?;
        evals.push((exec, t));
    }
    Ok((trainer, graphs, evals))
}
