//! The end of `train translate`: the mean of the last rounds' weights where it validates
//! better, then the test BLEU, greedy and beam.

use super::translate::TrainArgs;
use super::translate_exec::validation_loss;
use super::translate_state::{kept_snapshots, linked, save_run, TrainerState};
use super::translation::test_bleu;
use std::path::{Path, PathBuf};
use wgformer::models::transformer::{TransformerConfig, TransformerGraph};
use wgformer::models::transformer_checkpoint as ckpt;
use wgformer::models::transformer_decode::Search;
use wgformer::runtime::exec::{Executor, HostData};
use wgformer::runtime::trainer::Trainer;
use wgformer::text::bpe::Bpe;
use wgformer::text::corpus::{self, Batch};
use wgformer::{Gpu, Result};

/// The end of a run: the mean of the last rounds' weights when it validates better, then the
/// test BLEU, greedy and beam.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    gpu: &Gpu,
    args: &TrainArgs,
    cfg: &TransformerConfig,
    bpe: &Bpe,
    first: &wgformer::graph::Graph,
    trainer: &mut Trainer,
    state: &mut TrainerState,
    evals: &[(Executor, TransformerGraph)],
    valid_batches: &[(usize, Batch)],
    snapshots_in: &Path,
    unit: &str,
) -> Result<()> {
    let kept = kept_snapshots(snapshots_in, state.epochs_done, state.average);
    if kept.len() > 1 {
        let paths: Vec<PathBuf> = kept.iter().map(|(p, _)| p.clone()).collect();
        let mean = wgformer::runtime::checkpoint::average_params(&paths, first, &ckpt::same_shape)?;
        for (p, v) in &mean {
            trainer.exec.set(gpu, *p, HostData::F32(v))?;
        }
        let loss = validation_loss(gpu, evals, valid_batches)?;
        let last = state.history.last().map_or(f32::INFINITY, |r| r.valid_loss);
        let (from, to) = (state.epochs_done + 1 - kept.len(), state.epochs_done);
        let better = loss < last;
        eprintln!(
            "the mean of {unit}s {from}-{to}: valid loss {loss:.3} against {last:.3} for {unit} {to} alone; {}",
            if better { "the checkpoint keeps the mean".to_string() } else { format!("keeping {unit} {to}'s weights") }
        );
        if better {
            state.averaged = (from..=to).collect();
            // The averaged model keeps the run's metrics as the last checkpoint wrote them.
            let metrics = wgformer::runtime::metrics::Metrics::resume(&args.out, u32::MAX)?;
            save_run(gpu, &args.out, cfg, bpe, first, &mean, trainer, state, &metrics, linked(kept))?;
        }
    }
    let mut test = corpus::read_split(&args.data, "test")?;
    test.truncate(args.test_pairs.unwrap_or(usize::MAX));
    let ck = ckpt::load(&args.out)?;
    for (name, search) in [("greedy", Search::GREEDY), ("beam 4", Search::PAPER)] {
        eprintln!("{}", test_bleu(gpu, &ck, &test, name, search)?.0);
    }
    Ok(())
}

/// The line that ends a run's training phase.
pub(super) fn report_done(state: &TrainerState, per_pass: u32, out: &Path) {
    let total: f64 = state.history.iter().map(|r| r.seconds).sum();
    if let Some(last) = state.history.last() {
        eprintln!(
            "done: {} rounds, {} steps ({:.2} passes), {:.0} s of training, {:.0} target tokens/s; valid BLEU {:.2}; checkpoint in {}",
            state.epochs_done,
            state.step,
            state.step as f64 / per_pass as f64,
            total,
            last.tokens_per_second,
            last.valid_bleu,
            out.display()
        );
    }
}
