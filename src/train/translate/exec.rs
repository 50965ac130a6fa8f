//! Running the Transformer's graphs on batches for a translation run: a batch's inputs, the
//! constant inputs, and the validation loss.

use crate::graph::TensorId;
use crate::models::transformer::TransformerGraph;
use crate::runtime::exec::{Executor, HostData, StepOptions};
use crate::runtime::trainer::Trainer;
use crate::text::corpus::Batch;
use crate::train::Ranks;
use crate::{Gpu, Result};

/// A batch as a training or evaluation step takes it.
pub fn feed<'a>(t: &TransformerGraph, b: &'a Batch) -> [(TensorId, HostData<'a>); 4] {
    [
        (t.src, HostData::U32(&b.src)),
        (t.src_lens, HostData::U32(&b.src_lens)),
        (t.tgt_in, HostData::U32(&b.tgt_in)),
        (t.tgt_out, HostData::U32(&b.tgt_out)),
    ]
}

/// One training step on batch `b` (of graph `t`, shape `i`): under mpirun this rank's share
/// of its rows, weighted by its share of the target tokens. Returns the batch's loss.
pub fn train_step(
    gpu: &Gpu,
    trainer: &mut Trainer,
    ranks: &Ranks,
    i: usize,
    t: &TransformerGraph,
    b: &Batch,
) -> Result<f32> {
    match ranks.size() {
        1 => trainer.step_shape(gpu, i, &feed(t, b)),
        n => {
            let mine = b.shard(ranks.rank(), n);
            let share = mine.tokens as f32 / b.tokens.max(1) as f32;
            trainer.step_share(gpu, i, &feed(t, &mine), share)
        }
    }
}

/// Sets the inputs of `t` that never change (the positional encodings).
pub fn set_constants(gpu: &Gpu, exec: &Executor, t: &TransformerGraph) -> Result<()> {
    for (id, values) in t.constants() {
        exec.set(gpu, id, HostData::F32(&values))?;
    }
    Ok(())
}

/// Mean loss per target token over `batches`, with the evaluation executors.
pub fn validation_loss(gpu: &Gpu, evals: &[(Executor, TransformerGraph)], batches: &[(usize, Batch)]) -> Result<f32> {
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for (i, b) in batches {
        let (exec, t) = &evals[*i];
        let loss = exec.step(gpu, &feed(t, b), &StepOptions::default())?;
        sum += loss as f64 * b.tokens as f64;
        tokens += b.tokens;
    }
    Ok((sum / tokens.max(1) as f64) as f32)
}
