//! Training through the library (`wgformer::train`): a ViT run driven step by step with its
//! checkpoint in memory reproduces the losses the CLI recorded before training moved into the
//! library; stopped after an epoch and resumed from the bytes it saved, it continues with the
//! same losses; bad checkpoints and recipes are errors that name what is wrong, never panics.

use crate::common;
use common::reference_losses::{assert_matches, reference};
use std::sync::Arc;
use wgformer::data::mnist;
use wgformer::train::{block_on, Advance, Event, MemoryStorage, RunContext, VitData, VitRecipe, VitRun};
use wgformer::Gpu;

/// The recorded run's recipe and data (`train vit --train-images 512 --epochs 2 --batch 32
/// --test-images 100`).
fn recorded_vit() -> (VitRecipe, VitData) {
    let want = reference("vit.json");
    let args = "train vit --train-images 512 --epochs 2 --batch 32 --test-images 100";
    assert_eq!(want.args.join(" "), args, "the recorded command this test mirrors");
    let recipe = VitRecipe { epochs: 2, batch: 32, ..VitRecipe::default() };
    let data = VitData::load(&mnist::default_dir(), Some(512), Some(100)).expect("bundled Fashion-MNIST");
    (recipe, data)
}

fn gpu() -> Arc<Gpu> {
    Arc::new(Gpu::with_options(&wgformer::GpuOptions::from_settings(common::env_settings())).expect("an adapter"))
}

fn memory() -> RunContext {
    RunContext::new(MemoryStorage::default(), wgformer::train::SystemClock::new())
}

#[test]
fn a_vit_run_in_memory_reproduces_the_recorded_losses_and_resumes_from_its_bytes() {
    let gpu = gpu();
    let adapter = (gpu.info.name.clone(), gpu.info.driver_info.clone());
    let (recipe, data) = recorded_vit();
    let mut events = Vec::new();
    let mut observe = |e: &Event| events.push(e.clone());
    let mut run = VitRun::start(gpu.clone(), &recipe, data, memory(), &mut observe).unwrap();
    let mut steps = 0;
    while block_on(run.advance(&mut observe)).unwrap() != Advance::Finished {
        steps += 1;
    }
    run.finish(&mut observe);
    assert_eq!(steps, 32, "2 epochs of 16 steps");
    let whole = run.metrics().losses();
    assert_matches("library vit", &whole, &reference("vit.json"), &adapter);
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::Step { .. })), 32);
    assert_eq!(count(|e| matches!(e, Event::Evaluated { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::Checkpoint { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::Done { .. })), 1);

    // An epoch and a quarter, then a new run from the checkpoint's zip alone (the browser
    // page's download), continuing mid-epoch.
    let (recipe, data) = recorded_vit();
    let mut quiet = wgformer::train::Quiet;
    let mut first = VitRun::start(gpu.clone(), &recipe, data, memory(), &mut quiet).unwrap();
    for _ in 0..20 {
        block_on(first.advance(&mut quiet)).unwrap();
    }
    let zip = block_on(first.checkpoint_zip(&mut quiet)).unwrap();
    drop(first);
    let (_, data) = recorded_vit();
    let files = wgformer::util::zip::read(&zip, "download.zip").unwrap();
    let ctx = RunContext::new(MemoryStorage::with_files(files), wgformer::train::SystemClock::new());
    let mut resumed = VitRun::resume(gpu, None, data, ctx, &mut quiet).unwrap();
    assert_eq!((resumed.epochs(), resumed.step()), ((1, 2), 20));
    while block_on(resumed.advance(&mut quiet)).unwrap() != Advance::Finished {}
    assert!(resumed.is_finished());
    assert_eq!(resumed.metrics().losses(), whole, "the resumed run's losses, each step once");
}

#[test]
fn bad_checkpoints_and_recipes_are_errors_naming_what_is_wrong() {
    let gpu = gpu();
    let mut quiet = wgformer::train::Quiet;
    let data = || VitData::load(&mnist::default_dir(), Some(64), Some(10)).unwrap();
    let resume = |files: Vec<(&str, &[u8])>| {
        let files = files.into_iter().map(|(n, b)| (n.to_string(), b.to_vec()));
        let ctx = RunContext::new(MemoryStorage::with_files(files), wgformer::train::SystemClock::new());
        let mut quiet = wgformer::train::Quiet;
        VitRun::resume(gpu.clone(), None, data(), ctx, &mut quiet).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(resume(vec![]).contains("config.json"));
    let translation = br#"{"model_type": "transformer", "d_model": 64}"#;
    assert!(resume(vec![("config.json", translation)]).contains("not a ViT"));

    // A real checkpoint, then each of its weight files cut short.
    let recipe = VitRecipe { epochs: 1, batch: 32, ..VitRecipe::default() };
    let mut run = VitRun::start(gpu.clone(), &recipe, data(), memory(), &mut quiet).unwrap();
    block_on(run.round(&mut quiet)).unwrap();
    let saved = run.storage().files().unwrap();
    for name in ["model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
        let cut: Vec<(&str, &[u8])> =
            saved.iter().map(|(n, b)| (n.as_str(), if n == name { &b[..b.len() / 2] } else { &b[..] })).collect();
        let e = resume(cut);
        assert!(e.contains(name), "a truncated {name}: {e}");
    }
    let bad = VitRecipe { batch: 0, ..VitRecipe::default() };
    let e = VitRun::start(gpu.clone(), &bad, data(), memory(), &mut quiet).err().unwrap().to_string();
    assert!(e.contains("batch: 0"), "{e}");
}

#[test]
fn a_translation_run_through_the_library_reproduces_the_recorded_losses() {
    use wgformer::train::translate::{TranslateData, TranslateRecipe, TranslateRun};
    let want = reference("translate.json");
    let args = "train translate --data ding --train-pairs 256 --epochs 2 --size tiny --vocab 300 \
                --valid-pairs 8 --test-pairs 8 --batch 128 --warmup 10";
    assert_eq!(want.args.join(" "), args.split_whitespace().collect::<Vec<_>>().join(" "));
    let recipe = TranslateRecipe {
        epochs: Some(2),
        model: Some("tiny".into()),
        vocab: 300,
        valid_pairs: 8,
        test_pairs: Some(8),
        tokens: 128,
        warmup: 10,
        ..TranslateRecipe::default()
    };
    let data = TranslateData::load(&wgformer::text::corpus::data_dir("ding"), Some(256)).unwrap();
    let gpu = gpu();
    let adapter = (gpu.info.name.clone(), gpu.info.driver_info.clone());
    let dir = common::cli::scratch("library-translate");
    let mut quiet = wgformer::train::Quiet;
    let mut run = TranslateRun::start(gpu, &recipe, data, RunContext::in_dir(&dir), &mut quiet).unwrap();
    let mut rounds = 0;
    loop {
        match block_on(run.advance(&mut quiet)).unwrap() {
            Advance::Step => {}
            Advance::Round => rounds += 1,
            Advance::Finished => break,
        }
    }
    assert_eq!((run.rounds(), rounds), ((2, 2), 2));
    assert_matches("library translate", &run.metrics().losses(), &want, &adapter);
    let _ = std::fs::remove_dir_all(&dir);
}
