//! Marian decoding speed: sentences per second for a Hugging Face Marian directory (such as the
//! opus-mt-de-en-shaped one benches/marian_reference.py writes), greedy and beam 4, one
//! sentence and 32 at a time, with the directory's generation settings otherwise.
//!
//! `cargo run --release --example marian_throughput -- MARIAN_DIR`

use std::time::Instant;
use wgformer::models::marian_translator::MarianTranslator;

fn main() -> wgformer::Result<()> {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: marian_throughput MARIAN_DIR");
        std::process::exit(2);
    };
    let test = wgformer::text::corpus::data_dir("ding").join("test.tsv");
    let pairs = wgformer::text::corpus::read_tsv(&test)?;
    let sources: Vec<&str> = pairs.iter().take(32).map(|(s, _)| s.as_str()).collect();
    let gpu = wgformer::Gpu::from_env()?;
    let translator = MarianTranslator::load(std::path::Path::new(&dir))?;
    println!("adapter: {}", gpu.describe());
    // Compiles the pipelines outside the timings.
    translator.translate(&gpu, &sources[..1], Some(4))?;
    println!("| search | sentences a call | sentences | seconds | sentences/s |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, beams) in [("greedy", 1), ("beam 4", 4)] {
        for per_call in [1, 32] {
            let n = if per_call == 1 { 4 } else { 32 };
            let start = Instant::now();
            for chunk in sources[..n].chunks(per_call) {
                translator.translate(&gpu, chunk, Some(beams))?;
            }
            let secs = start.elapsed().as_secs_f64();
            println!("| {name} | {per_call} | {n} | {secs:.1} | {:.2} |", n as f64 / secs);
        }
    }
    Ok(())
}
