//! Translator throughput: sentences per second over a test set, greedy and beam search, with the
//! whole list in one call (batched on the GPU) and with one sentence per call.
//!
//! `cargo run --release --example translate_throughput -- CHECKPOINT_DIR [TEST.tsv] [N]`
//! (default data/de-en-docs/test.tsv; one sentence per call is timed on the first N sentences,
//! default 100, since it is slow).

use std::time::Instant;
use wgformer::models::transformer_decode::Search;
use wgformer::models::translator::Translator;

fn main() -> wgformer::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: translate_throughput CHECKPOINT_DIR [TEST.tsv] [N]");
        std::process::exit(2);
    };
    let test = args.get(1).map_or("data/de-en-docs/test.tsv", String::as_str);
    let single: usize = match args.get(2).map(|n| n.parse()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("N must be a number of sentences");
            std::process::exit(2);
        }
    };
    let pairs = wgformer::text::corpus::read_tsv(std::path::Path::new(test))?;
    let sources: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
    let gpu = wgformer::Gpu::from_env()?;
    let translator = Translator::load(std::path::Path::new(dir))?;
    println!("adapter: {}", gpu.describe());
    println!("| search | calls | sentences | seconds | sentences/s |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, search) in [("greedy", Search::GREEDY), ("beam 4", Search::PAPER)] {
        let start = Instant::now();
        translator.translate(&gpu, &sources, search)?;
        row(name, "one for all", sources.len(), start.elapsed().as_secs_f64());
        let few = &sources[..single.min(sources.len())];
        let start = Instant::now();
        for s in few {
            translator.translate(&gpu, &[s], search)?;
        }
        row(name, "one per sentence", few.len(), start.elapsed().as_secs_f64());
    }
    Ok(())
}

fn row(search: &str, calls: &str, n: usize, seconds: f64) {
    println!("| {search} | {calls} | {n} | {seconds:.1} | {:.1} |", n as f64 / seconds.max(1e-9));
}
