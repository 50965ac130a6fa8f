//! Build a graph, differentiate it, and drive training step by step from an app: a two-layer
//! MLP learning which of two points is further from the origin.
//! `cargo run --release --example train_mlp`

use wgformer::graph::autodiff::backward;
use wgformer::graph::{Dtype, Graph};
use wgformer::kernels::GeluKind;
use wgformer::runtime::exec::HostData;
use wgformer::runtime::optim::{AdamConfig, Schedule};
use wgformer::runtime::trainer::{TrainConfig, Trainer};
use wgformer::util::rng::Rng;
use wgformer::Gpu;

fn main() -> wgformer::Result<()> {
    let gpu = Gpu::from_env()?;
    let batch = 64;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, 4], Dtype::F32);
    let y = g.input("y", &[batch], Dtype::U32);
    let (w1, b1) = (g.param("fc1.weight", &[32, 4]), g.param("fc1.bias", &[32]));
    let (w2, b2) = (g.param("fc2.weight", &[2, 32]), g.param("fc2.bias", &[2]));
    let h = g.linear(x, w1, Some(b1))?;
    let h = g.gelu(h, GeluKind::Exact)?;
    let logits = g.linear(h, w2, Some(b2))?;
    let loss = g.cross_entropy(logits, y, 0.0, None)?;
    let grads = backward(&mut g, loss)?; // the backward is appended once, here

    let config =
        TrainConfig { adam: AdamConfig::default(), schedule: Schedule::Constant(1e-2), clip: Some(1.0), seed: 0 };
    let mut trainer = Trainer::new(&gpu, g, loss, &grads, &[], config)?;
    let mut rng = Rng::new(0);
    for (p, n) in [(w1, 128), (b1, 32), (w2, 64), (b2, 2)] {
        let init: Vec<f32> = (0..n).map(|_| rng.trunc_normal(0.3)).collect();
        trainer.exec.set(&gpu, p, HostData::F32(&init))?;
    }
    for step in 1..=300 {
        let xs: Vec<f32> = (0..batch * 4).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect();
        let ys: Vec<u32> =
            xs.chunks(4).map(|p| (p[2] * p[2] + p[3] * p[3] > p[0] * p[0] + p[1] * p[1]) as u32).collect();
        let l = trainer.step(&gpu, &[(x, HostData::F32(&xs)), (y, HostData::U32(&ys))])?; // one submit
        if step % 50 == 0 {
            println!("step {step}: loss {l:.4}");
        }
    }
    Ok(())
}
