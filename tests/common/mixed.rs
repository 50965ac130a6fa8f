//! Mixed-precision training cases shared by tests/mixed_precision*.rs: a small ViT and a
//! small Transformer on a fixed batch, trained in f32 and f16 side by side.

use super::Rng;
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Graph, Precision, TensorId};
use wgformer::runtime::exec::HostData;
use wgformer::runtime::optim::{AdamConfig, Schedule};
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::Gpu;

/// A model's graph and one fixed batch.
pub struct Case {
    pub graph: Graph,
    pub loss: TensorId,
    pub f32_inputs: Vec<(TensorId, Vec<f32>)>,
    pub u32_inputs: Vec<(TensorId, Vec<u32>)>,
    pub params: Vec<(TensorId, Vec<f32>)>,
}

pub fn vit_case() -> Case {
    use wgformer::models::vit::{build, init_params, VitConfig};
    let text = r#"{"image_size": 8, "patch_size": 4, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "layer_norm_eps": 1e-6, "num_labels": 3}"#;
    let batch = 6;
    let v = build(&VitConfig::from_json(text).unwrap(), batch, true).unwrap();
    let params = init_params(&v.graph, 0);
    Case {
        f32_inputs: vec![(v.pixel_values, Rng::new(5).vec_f32(batch * 3 * 8 * 8, 1.0))],
        u32_inputs: vec![(v.labels, vec![0, 1, 2, 0, 1, 2])],
        graph: v.graph,
        loss: v.loss,
        params,
    }
}

pub fn transformer_case() -> Case {
    use wgformer::models::transformer::{build, init_params, TransformerConfig};
    let cfg = TransformerConfig { dropout: 0.0, ..TransformerConfig::tiny(40) };
    let (batch, len) = (4, 6);
    let t = build(&cfg, batch, len, len, true).unwrap();
    let mut rng = Rng::new(8);
    let mut ids = |n: usize| (0..n).map(|_| 4 + (rng.next_u64() % 36) as u32).collect::<Vec<u32>>();
    let n = batch * len;
    let u32_inputs =
        vec![(t.src, ids(n)), (t.tgt_in, ids(n)), (t.tgt_out, ids(n)), (t.src_lens, vec![len as u32; batch])];
    let params = init_params(&t.graph, 0);
    Case { f32_inputs: t.constants(), u32_inputs, loss: t.loss, params, graph: t.graph }
}

/// Losses of `steps` Adam steps on the case's batch with products in `precision`.
pub fn train(gpu: &Gpu, case: &Case, precision: Precision, steps: usize) -> (Vec<f32>, Trainer) {
    let mut graph = case.graph.clone();
    graph.precision = precision;
    let grads = backward(&mut graph, case.loss).unwrap();
    let config =
        TrainConfig { adam: AdamConfig::default(), schedule: Schedule::Constant(1e-3), clip: Some(1.0), seed: 1 };
    let mut trainer = Trainer::new(gpu, graph, case.loss, &grads, &[], config).unwrap();
    for (p, v) in &case.params {
        trainer.exec.set(gpu, *p, HostData::F32(v)).unwrap();
    }
    let inputs = case.inputs();
    let losses = (0..steps).map(|_| trainer.step(gpu, &inputs).unwrap()).collect();
    (losses, trainer)
}

/// f16 products round each operand to 11 significant bits: over a run the losses drift from
/// f32's by a small fraction of the loss, and both runs learn.
pub fn tracks_f32(gpu: &Gpu, name: &str, case: &Case, steps: usize) {
    let (l32, _) = train(gpu, case, Precision::F32, steps);
    let (l16, trainer) = train(gpu, case, Precision::F16, steps);
    let scaler = trainer.scaler.expect("an f16 graph trains with a loss scale");
    assert_eq!(scaler.skipped, 0, "{name}: no overflow at the initial scale");
    assert_eq!(trainer.step as usize, steps);
    for (i, (a, b)) in l32.iter().zip(&l16).enumerate() {
        assert!((a - b).abs() <= 0.02 * a.abs().max(0.1), "{name} step {i}: f32 loss {a}, f16 {b}");
    }
    let (first, last) = (l16[0], l16[steps - 1]);
    assert!(last < 0.5 * first, "{name}: the f16 run learns ({first} -> {last})");
    eprintln!("{name}: {steps} steps, f32 {} -> {}, f16 {first} -> {last}", l32[0], l32[steps - 1]);
}

impl Case {
    /// The batch, as a step takes it.
    pub fn inputs(&self) -> Vec<(TensorId, HostData<'_>)> {
        let mut inputs: Vec<(TensorId, HostData)> =
            self.f32_inputs.iter().map(|(t, v)| (*t, HostData::F32(v))).collect();
        inputs.extend(self.u32_inputs.iter().map(|(t, v)| (*t, HostData::U32(v))));
        inputs
    }
}
