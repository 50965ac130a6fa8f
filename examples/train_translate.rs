//! Train the Transformer on German-English pairs through the library: a recipe (a tiny model,
//! a few passes over the bundled dictionary pairs), a run checkpointing to a directory, and an
//! observer of our own. Ends with the test BLEU and a translation from the checkpoint.
//! `cargo run --release --example train_translate -- [OUT_DIR] [TRAIN_PAIRS] [EPOCHS]`

use std::sync::Arc;
use wgformer::models::transformer_decode::Search;
use wgformer::models::translator::Translator;
use wgformer::train::translate::{TranslateData, TranslateRecipe, TranslateRun};
use wgformer::train::{block_on, Event, RunContext};
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
        Event::Step { report: s } if s.step % 20 == 0 => {
            println!("step {:4}  loss {:.3}  {:.0} tokens/s", s.step, s.smoothed, s.per_second)
        }
        Event::Evaluated { summary, .. } | Event::Done { summary } => println!("{summary}"),
        Event::Note { text } => println!("{text}"),
        _ => {}
    }
}

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "runs/example-translate".into());
    let (pairs, epochs) = (arg(2, 2000)?, arg(3, 5)?);
    let gpu = Arc::new(Gpu::from_env()?);
    println!("adapter: {}", gpu.describe());
    let data = TranslateData::load(&wgformer::text::corpus::data_dir("ding"), Some(pairs))?;
    let recipe = TranslateRecipe {
        epochs: Some(epochs),
        model: Some("tiny".into()),
        vocab: 2000,
        tokens: 512,
        lr: 5e-3,
        valid_pairs: 20,
        test_pairs: Some(20),
        ..TranslateRecipe::default()
    };
    let mut observer = show;
    let mut run = TranslateRun::start(gpu.clone(), &recipe, data, RunContext::in_dir(&out), &mut observer)?;
    while !run.is_finished() {
        block_on(run.round(&mut observer))?;
    }
    run.finish(&mut observer)?;
    let translator = Translator::load(std::path::Path::new(&out))?;
    let lines = translator.translate(&gpu, &["Das Haus ist groß."], Search::PAPER)?.lines;
    println!("Das Haus ist groß. -> {}", lines.join(""));
    Ok(())
}
