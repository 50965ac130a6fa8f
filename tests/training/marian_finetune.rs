//! Fine-tuning a Marian model (tests/golden/marian-s0, made with transformers) through the
//! library: 200 steps on 64 pairs halve the training loss; the directory written is in
//! `save_pretrained`'s layout (the same tensor names, shapes and config keys as the committed
//! one), keeps final_logits_bias as it was (a buffer, never trained), and reloads with the
//! logits of the weights in memory.

use crate::common;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wgformer::train::translate::{TranslateData, TranslateRecipe, TranslateRun};
use wgformer::train::{block_on, RunContext};
use wgformer::util::io::read_safetensors;

fn case() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0")
}

/// The first 64 training, 8 validation and 8 test pairs of the bundled dictionary pairs.
fn data(dir: &Path) -> TranslateData {
    let ding = wgformer::text::corpus::data_dir("ding");
    for (split, n) in [("train", 64), ("valid", 8), ("test", 8)] {
        let text = std::fs::read_to_string(ding.join(format!("{split}.tsv"))).unwrap();
        let lines: Vec<&str> = text.lines().take(n).collect();
        std::fs::write(dir.join(format!("{split}.tsv")), lines.join("\n") + "\n").unwrap();
    }
    TranslateData::load(dir, None).unwrap()
}

/// (name, shape) of every tensor in a safetensors file.
fn names_and_shapes(path: &Path) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = read_safetensors(path).unwrap().into_iter().map(|t| (t.name, t.shape)).collect();
    v.sort();
    v
}

fn config_keys(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn logits(outputs: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<f32> {
    outputs.iter().find(|(n, _, _)| n == "logits").expect("logits").2.clone()
}

#[test]
fn a_marian_model_fine_tunes_and_saves_a_hugging_face_directory() {
    let scratch = common::cli::scratch("marian-finetune");
    let (data_dir, out) = (scratch.join("data"), scratch.join("out"));
    std::fs::create_dir_all(&data_dir).unwrap();
    let recipe = TranslateRecipe {
        epochs: Some(17), // 12 batches a pass: 204 steps.
        tokens: 256,
        lr: 5e-3,
        warmup: 20,
        dropout: Some(0.0),
        average: Some(1),
        valid_pairs: 4,
        test_pairs: Some(4),
        ..TranslateRecipe::fine_tuning(&case().display().to_string())
    };
    let gpu =
        Arc::new(wgformer::Gpu::with_options(&wgformer::GpuOptions::from_settings(common::env_settings())).unwrap());
    let mut quiet = wgformer::train::Quiet;
    let ctx = RunContext::in_dir(&out);
    let mut run = TranslateRun::start(gpu.clone(), &recipe, data(&data_dir), ctx, &mut quiet).unwrap();
    while !run.is_finished() {
        block_on(run.round(&mut quiet)).unwrap();
    }
    run.finish(&mut quiet).unwrap();
    assert!(run.step() >= 200, "{} steps", run.step());
    let losses = run.metrics().losses();
    let mean = |v: &[(u32, f32)]| v.iter().map(|(_, l)| l).sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[losses.len() - 10..]));
    assert!(last <= 0.5 * first, "training loss {first:.3} -> {last:.3}: not halved");

    // save_pretrained's layout: the committed directory's tensors, shapes and config keys.
    assert_eq!(names_and_shapes(&out.join("model.safetensors")), names_and_shapes(&case().join("model.safetensors")));
    assert_eq!(config_keys(&out), config_keys(&case()));
    let bias = |dir: &Path| {
        let t = read_safetensors(&dir.join("model.safetensors")).unwrap();
        t.into_iter().find(|t| t.name == "final_logits_bias").unwrap().f32(dir).unwrap().to_vec()
    };
    assert_eq!(bias(&out), bias(&case()), "final_logits_bias is a buffer: never trained");

    // Reloaded, the directory gives the logits of the weights in memory.
    let in_memory = wgformer::verify::marian::verify_with(&gpu, &case(), run.config(), run.params().unwrap()).unwrap();
    std::fs::copy(case().join("inputs.safetensors"), out.join("inputs.safetensors")).unwrap();
    let reloaded = wgformer::verify::marian::verify(&gpu, &out).unwrap();
    let (a, b) = (logits(&in_memory), logits(&reloaded));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "reloaded logits differ by {worst}");
    let before = logits(&wgformer::verify::marian::verify(&gpu, &case()).unwrap());
    assert!(a.iter().zip(&before).any(|(x, y)| (x - y).abs() > 1e-2), "training changed the model");
    let _ = std::fs::remove_dir_all(&scratch);
}
