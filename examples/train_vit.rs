//! Train the ViT on Fashion-MNIST through the library: a recipe, a run checkpointing to a
//! directory, and an observer of our own (a line every 10 steps and one per evaluation).
//! `cargo run --release --example train_vit -- [OUT_DIR] [TRAIN_IMAGES] [EPOCHS]`

use std::sync::Arc;
use wgformer::train::{block_on, Event, RunContext, VitData, VitRecipe, VitRun};
use wgformer::{Error, Gpu, Result};

/// The `i`-th argument as a number, or `default`.
fn arg(i: usize, default: usize) -> Result<usize> {
    match std::env::args().nth(i) {
        None => Ok(default),
        Some(a) => a.parse().map_err(|_| Error::Config(format!("argument {i}: {a:?} is not a number"))),
    }
}

/// What this app shows of a run.
fn show(event: &Event) {
    match event {
        Event::Started { description } => println!("{description}"),
        Event::Step { report: s } if s.step % 10 == 0 => {
            println!("step {:4}  loss {:.3}  lr {:.1e}  {:.0} images/s", s.step, s.smoothed, s.lr, s.per_second)
        }
        Event::Evaluated { summary, .. } => println!("{summary}"),
        Event::Checkpoint { place, step, .. } => println!("checkpoint at step {step} in {place}"),
        Event::Done { summary } => println!("{summary}"),
        _ => {}
    }
}

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "runs/example-vit".into());
    let (images, epochs) = (arg(2, 2000)?, arg(3, 2)?);
    let gpu = Arc::new(Gpu::from_env()?);
    println!("adapter: {}", gpu.describe());
    let data = VitData::load(&wgformer::data::mnist::default_dir(), Some(images), Some(500))?;
    let recipe = VitRecipe { epochs, batch: 64, ..VitRecipe::default() };
    let mut observer = show;
    let mut run = VitRun::start(gpu, &recipe, data, RunContext::in_dir(&out), &mut observer)?;
    while !run.is_finished() {
        block_on(run.round(&mut observer))?;
    }
    run.finish(&mut observer);
    Ok(())
}
