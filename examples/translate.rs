//! Translates sentences with a checkpoint of `wgformer train translate`, as an application
//! would: `cargo run --release --example translate -- runs/translate "Guten Morgen." ...`

use wgformer::models::transformer_decode::Search;
use wgformer::models::translator::Translator;

fn main() -> wgformer::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: translate CHECKPOINT_DIR SENTENCE...");
        std::process::exit(2);
    };
    let sentences: Vec<String> = args.collect();
    let sources: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let gpu = wgformer::Gpu::from_env()?;
    let translator = Translator::load(std::path::Path::new(&dir))?;
    // One batch on the GPU for the whole list; beam search as in the paper.
    let out = translator.translate(&gpu, &sources, Search::PAPER)?;
    for (source, line) in sources.iter().zip(&out.lines) {
        println!("{source}\n  -> {line}");
    }
    Ok(())
}
