//! The fuzz targets' committed corpus (fuzz/corpus/TARGET/: seeds and every input a fuzzing
//! run found interesting) replayed on stable Rust, plus mutations of it: every parser of
//! outside data returns, error or not, without a panic. `WGFORMER_FUZZ_CASES` sets the
//! mutations per target (default 3000); cargo-fuzz runs the same targets coverage-guided
//! (fuzz/README.md).

use crate::common;
#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).expect("reads a corpus file")).collect()
}

/// One random edit: flip a bit, overwrite or insert a byte (often one that matters to a
/// parser), delete a run, cut the end, duplicate a run, or write a large decimal number.
fn mutate(data: &mut Vec<u8>, rng: &mut common::Rng) {
    let mut pick = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let at = pick(data.len() + 1);
    match pick(7) {
        0 if !data.is_empty() => {
            let i = at.min(data.len() - 1);
            data[i] ^= 1 << pick(8);
        }
        1 if !data.is_empty() => {
            let i = at.min(data.len() - 1);
            let special = b"\0\xff{}[]\":,\t\n0123456789-e.\\";
            data[i] = special[pick(special.len())];
        }
        2 => data.insert(at, pick(256) as u8),
        3 if at < data.len() => {
            let end = (at + pick(16) + 1).min(data.len());
            data.drain(at..end);
        }
        4 => data.truncate(at),
        5 if at < data.len() => {
            let end = (at + pick(64) + 1).min(data.len());
            let run = data[at..end].to_vec();
            data.splice(at..at, run);
        }
        _ => {
            let big = ["4294967295", "18446744073709551615", "100000000000", "-1", "1e308", "0"][pick(6)];
            data.splice(at..at, big.bytes());
        }
    }
}

#[test]
fn every_parser_survives_its_corpus_and_mutations_of_it() {
    let settings = wgformer::settings::TestSettings::from_env().expect("valid test settings");
    let cases = settings.fuzz_cases;
    // WGFORMER_FUZZ_LAST=DIR: each input is written to DIR/NAME.last before it runs.
    let last_dir = settings.fuzz_last;
    for (name, target) in harness::TARGETS {
        let last = last_dir.as_ref().map(|d| Path::new(d).join(format!("{name}.last")));
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} holds no inputs");
        for seed in &seeds {
            target(seed);
        }
        let mut rng = common::Rng::new(name.len() as u64);
        for i in 0..cases {
            let mut data = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                mutate(&mut data, &mut rng);
            }
            if let Some(path) = &last {
                // An abort (out of memory) ends the process: the input is on disk first.
                std::fs::write(path, &data).expect("saves the input");
            }
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let file = std::env::temp_dir().join(format!("wgformer-fuzz-{name}-{i}.bin"));
                std::fs::write(&file, &data).expect("saves the input");
                std::panic::resume_unwind(panic);
            }
        }
        eprintln!("{name}: {} corpus inputs and {cases} mutations", seeds.len());
    }
}
