//! Data-parallel cases shared by tests/training/data_parallel.rs (ranks as threads) and
//! tests/mpi_data_parallel.rs (ranks as MPI processes): a small ViT and a small Transformer,
//! each as one global batch and as its shards, trained side by side. Dropout is on: a rank
//! draws the masks of its share of the whole batch.

use super::mixed::Case;
use super::Rng;
use wgformer::dist::collective::Collective;
use wgformer::graph::autodiff::backward;
use wgformer::graph::TensorId;
use wgformer::runtime::exec::{CommStats, HostData};
use wgformer::runtime::optim::{AdamConfig, Schedule};
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::Gpu;

/// Steps each equality test trains.
pub const STEPS: usize = 5;

/// One global batch, its shards (rank r trains `shards[r]`), and each shard's share of the
/// global loss.
pub struct Sharded {
    pub name: &'static str,
    pub whole: Case,
    pub shards: Vec<Case>,
    pub shares: Vec<f32>,
}

const VIT_JSON: &str = r#"{"image_size": 8, "patch_size": 4, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 2, "intermediate_size": 64, "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "layer_norm_eps": 1e-6, "num_labels": 3}"#;

/// A ViT batch of 4 per rank; every shard has the same share.
pub fn vit(ranks: usize) -> Sharded {
    use wgformer::models::vit::{build, init_params, VitConfig};
    let cfg = VitConfig::from_json(VIT_JSON).unwrap();
    let per = 4;
    let pixels = Rng::new(5).vec_f32(ranks * per * 3 * 8 * 8, 1.0);
    let labels: Vec<u32> = (0..ranks * per).map(|i| (i * 7 % 3) as u32).collect();
    let case = |batch: usize, first: usize| {
        let v = build(&cfg, batch, true).unwrap();
        let px = 3 * 8 * 8;
        Case {
            f32_inputs: vec![(v.pixel_values, pixels[first * px..(first + batch) * px].to_vec())],
            u32_inputs: vec![(v.labels, labels[first..first + batch].to_vec())],
            params: init_params(&v.graph, 0),
            graph: v.graph,
            loss: v.loss,
        }
    };
    Sharded {
        name: "vit",
        whole: case(ranks * per, 0),
        shards: (0..ranks).map(|r| case(per, r * per)).collect(),
        shares: vec![1.0 / ranks as f32; ranks],
    }
}

/// A Transformer batch of 2 pairs per rank whose targets end in padding of different
/// lengths, so that each shard's share is its count of target tokens over the batch's.
pub fn transformer(ranks: usize) -> Sharded {
    use wgformer::models::transformer::{build, init_params, TransformerConfig};
    let cfg = TransformerConfig { dropout: 0.1, ..TransformerConfig::tiny(40) };
    let (per, len) = (2, 6);
    let rows = ranks * per;
    let mut rng = Rng::new(8);
    let mut ids = |n: usize| (0..n).map(|_| 4 + (rng.next_u64() % 36) as u32).collect::<Vec<u32>>();
    let (src, tgt_in, mut tgt_out) = (ids(rows * len), ids(rows * len), ids(rows * len));
    // Row i keeps i % len + 1 targets; the rest are padding (ignored by the loss).
    for row in 0..rows {
        for t in (row % len + 1)..len {
            tgt_out[row * len + t] = cfg.pad_id;
        }
    }
    let tokens =
        |first: usize, n: usize| tgt_out[first * len..(first + n) * len].iter().filter(|&&t| t != cfg.pad_id).count();
    let case = |batch: usize, first: usize| {
        let t = build(&cfg, batch, len, len, true).unwrap();
        let part = |v: &[u32]| v[first * len..(first + batch) * len].to_vec();
        Case {
            u32_inputs: vec![
                (t.src, part(&src)),
                (t.tgt_in, part(&tgt_in)),
                (t.tgt_out, part(&tgt_out)),
                (t.src_lens, vec![len as u32; batch]),
            ],
            f32_inputs: t.constants(),
            params: init_params(&t.graph, 0),
            graph: t.graph,
            loss: t.loss,
        }
    };
    let total = tokens(0, rows) as f32;
    Sharded {
        name: "transformer",
        whole: case(rows, 0),
        shards: (0..ranks).map(|r| case(per, r * per)).collect(),
        shares: (0..ranks).map(|r| tokens(r * per, per) as f32 / total).collect(),
    }
}

impl Sharded {
    /// The same cases with products in `precision` (f16: mixed precision with a loss scale).
    pub fn in_precision(mut self, precision: wgformer::graph::Precision) -> Self {
        for case in std::iter::once(&mut self.whole).chain(self.shards.iter_mut()) {
            case.graph.precision = precision;
        }
        self
    }
}

fn trainer(gpu: &Gpu, case: &Case, params: &[(TensorId, Vec<f32>)]) -> Trainer {
    let mut graph = case.graph.clone();
    let grads = backward(&mut graph, case.loss).unwrap();
    let config =
        TrainConfig { adam: AdamConfig::default(), schedule: Schedule::Constant(1e-3), clip: Some(1.0), seed: 1 };
    let trainer = Trainer::new(gpu, graph, case.loss, &grads, &[], config).unwrap();
    for (p, v) in params {
        trainer.exec.set(gpu, *p, HostData::F32(v)).unwrap();
    }
    trainer
}

/// What a run gives: the loss of every step and the parameters after the last, by name.
pub struct Run {
    pub losses: Vec<f32>,
    pub params: Vec<(String, Vec<f32>)>,
    pub comm: CommStats,
    /// A hash of every parameter's bits after each step.
    pub fingerprints: Vec<u64>,
}

/// A hash of the bits of every parameter.
pub fn fingerprint(params: &[(String, Vec<f32>)]) -> u64 {
    let bits: Vec<u8> = params.iter().flat_map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes())).collect();
    wgformer::dist::collective::fingerprint(&bits)
}

fn named(t: &Trainer, gpu: &Gpu) -> Vec<(String, Vec<f32>)> {
    t.params(gpu).unwrap().into_iter().map(|(p, v)| (t.exec.graph().desc(p).name.clone(), v)).collect()
}

/// One process on the whole batch.
pub fn train_whole(gpu: &Gpu, s: &Sharded) -> Run {
    let mut t = trainer(gpu, &s.whole, &s.whole.params);
    let inputs = s.whole.inputs();
    let losses = (0..STEPS).map(|_| t.step(gpu, &inputs).unwrap()).collect();
    Run { losses, params: named(&t, gpu), comm: CommStats::default(), fingerprints: vec![] }
}

/// This rank's shard, its gradients summed over `group`; every rank starts from rank 0's
/// parameters.
pub fn train_rank(gpu: &Gpu, s: &Sharded, group: std::sync::Arc<dyn Collective>) -> Run {
    let rank = group.rank();
    let shard = &s.shards[rank];
    let mut values: Vec<Vec<f32>> = shard.params.iter().map(|(_, v)| v.clone()).collect();
    wgformer::dist::collective::broadcast_f32(group.as_ref(), &mut values).unwrap();
    let params: Vec<(TensorId, Vec<f32>)> = shard.params.iter().map(|(p, _)| *p).zip(values).collect();
    let mut t = trainer(gpu, shard, &params);
    t.group = Some(group);
    let inputs = shard.inputs();
    let (mut losses, mut fingerprints) = (Vec::new(), Vec::new());
    for _ in 0..STEPS {
        losses.push(t.step_share(gpu, 0, &inputs, s.shares[rank]).unwrap());
        fingerprints.push(fingerprint(&named(&t, gpu)));
    }
    Run { losses, params: named(&t, gpu), comm: t.exec.last_comm(), fingerprints }
}

/// The ranks' run matches the whole batch's: the same losses and parameters up to the
/// summation order. The gradients of a shard are partial sums of the whole batch's, so they
/// differ in the last bits (f32, ~1e-7 relative); Adam divides by the gradient's magnitude, so
/// an element whose gradient is near zero can move differently by up to a few learning rates
/// (1e-3 here) over the run (measured: 0.2% of the elements over 1e-5, worst 2e-4), while
/// the rest agree to ~1e-6.
///
/// In mixed precision (`f16`) every product's operands (and the products ReLU and GELU read)
/// are rounded to f16, so a last-bit difference in f32 can become one f16 step (1e-3 relative):
/// the losses then agree to 1e-4 and the parameters to a few learning rates, for many more of
/// the elements (measured, Transformer: losses within 5e-5 relative, 14% of the elements over
/// 1e-5, worst 1.3e-3; ViT: 0.3%, worst 4.4e-4).
pub fn assert_matches(name: &str, whole: &Run, ranks: &Run, f16: bool) {
    let (loss_tol, far_share) = if f16 { (1e-4, 0.25) } else { (1e-5, 0.01) };
    for (i, (a, b)) in whole.losses.iter().zip(&ranks.losses).enumerate() {
        assert!((a - b).abs() <= loss_tol * a.abs().max(1.0), "{name} step {i}: one process {a}, ranks {b}");
    }
    let (mut worst, mut far, mut total) = (0.0f32, 0usize, 0usize);
    for ((n1, a), (n2, b)) in whole.params.iter().zip(&ranks.params) {
        assert_eq!(n1, n2);
        for (x, y) in a.iter().zip(b) {
            let d = (x - y).abs();
            worst = worst.max(d);
            far += (d > 1e-5) as usize;
            total += 1;
        }
    }
    eprintln!(
        "{name}: losses {:?} vs {:?}; parameters: worst difference {worst:e}, {far} of {total} over 1e-5",
        whole.losses, ranks.losses
    );
    assert!(worst <= 5e-3, "{name}: a parameter differs by {worst}");
    assert!(far as f64 <= far_share * total as f64, "{name}: {far} of {total} parameters differ by more than 1e-5");
}

/// Every rank holds the same bits.
pub fn assert_identical(name: &str, runs: &[Run]) {
    for (r, run) in runs.iter().enumerate().skip(1) {
        for ((n, a), (_, b)) in runs[0].params.iter().zip(&run.params) {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name}: parameter {n} differs between rank 0 and rank {r}");
        }
        assert_eq!(runs[0].losses, run.losses, "{name}: ranks report different losses");
        assert_eq!(runs[0].fingerprints, run.fingerprints, "{name}: ranks' parameters differ after some step");
    }
}
