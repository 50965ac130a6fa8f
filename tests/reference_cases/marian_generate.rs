//! Marian generation against transformers' `generate` (tests/golden/marian-*/generate.json):
//! the cases' sources, tokenized as MarianTokenizer does, decoded greedy and with beam 4 (at
//! most 24 new tokens), give the same ids on every test backend. Sources where a greedy step
//! was decided by a margin under 1e-3 are left out: float rounding may decide them otherwise.

use crate::common;
use std::path::Path;
use wgformer::models::marian;
use wgformer::models::marian_generate::{generate, Generation};
use wgformer::models::transformer_decode::{Decoder, Search};
use wgformer::text::marian::MarianTokenizer;

#[test]
fn marian_generation_matches_transformers() {
    for name in ["marian-s0", "marian-v58k"] {
        generation_matches(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name));
    }
}

fn generation_matches(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = marian::config_from_json(&text, &dir.join("config.json")).unwrap();
    let model = dir.join("model.safetensors");
    let params = marian::params_from(&wgformer::util::io::read_safetensors(&model).unwrap(), &cfg, &model).unwrap();
    let tok = MarianTokenizer::load(dir).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("generate.json")).unwrap()).unwrap();
    let sources: Vec<Vec<u32>> =
        want["sources"].as_array().unwrap().iter().map(|s| tok.encode(s.as_str().unwrap())).collect();
    let src_max = sources.iter().map(Vec::len).max().unwrap();
    common::for_each_gpu(|gpu| {
        for (name, beams) in [("greedy", 1), ("beam4", 4)] {
            let g = Generation { num_beams: beams, max_length: 25, length_penalty: 1.0 };
            let search = Search { beam: beams, alpha: 0.0 };
            let decoder = Decoder::new(gpu, &cfg, &params, sources.len(), search, src_max, 24).unwrap();
            let got = pollster::block_on(generate(gpu, &decoder, &sources, &g)).unwrap();
            let margins = want["greedy_margin"].as_array().unwrap();
            let mut compared = 0;
            for (i, row) in want[name].as_array().unwrap().iter().enumerate() {
                if margins[i].as_f64().unwrap() < 1e-3 {
                    continue;
                }
                compared += 1;
                // transformers' rows: the start token, the tokens through eos, then padding.
                let row: Vec<u32> = row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                let end = row.iter().position(|&t| t == cfg.eos_id).map_or(row.len(), |e| e + 1);
                assert_eq!(got[i], row[1..end], "{name}, sentence {i}: {:?}", tok.decode(&got[i], true));
            }
            assert!(compared >= 4, "{}: {compared} sources compared", dir.display());
            eprintln!("{name}: {:?}", got.iter().map(|ids| tok.decode(ids, true)).collect::<Vec<_>>());
        }
    });
}

/// Sentences translated in batches (the later ones on decoders sharing the first's weights)
/// come out as each does alone.
#[test]
fn batched_marian_translations_equal_single_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0");
    let translator = wgformer::models::marian_translator::MarianTranslator::load(&dir).unwrap();
    let test = wgformer::text::corpus::read_split(&wgformer::text::corpus::data_dir("ding"), "test").unwrap();
    // Beam 4 takes 16 sentences a batch: 20 make two batches of different lengths.
    let sources: Vec<&str> = test.iter().take(20).map(|(s, _)| s.as_str()).collect();
    common::for_each_gpu(|gpu| {
        let together = translator.translate(gpu, &sources, Some(4)).unwrap().lines;
        for (i, s) in sources.iter().enumerate() {
            let alone = translator.translate(gpu, &[s], Some(4)).unwrap().lines;
            assert_eq!(together[i], alone[0], "sentence {i}: {s}");
        }
    });
}
