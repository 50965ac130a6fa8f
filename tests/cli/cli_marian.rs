//! A Hugging Face Marian directory through the binary (tests/golden/marian-s0, a MarianMTModel
//! made with transformers): `translate` gives transformers' beam-4 and greedy translations,
//! `eval` scores it, pytorch_model.bin alone serves as well, and a directory missing its
//! tokenizer is a clear error.

use crate::common;
use common::cli::{scratch, wgformer};
use std::path::Path;

fn case() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0").display().to_string()
}

#[test]
fn a_marian_directory_translates_and_evaluates() {
    let dir = case();
    let text = "Guten Morgen, wie geht es dir heute?\nDas ist keine Zeit.\n";
    let (ok, out, err) = wgformer(&["translate", "--checkpoint", &dir], Some(text));
    assert!(ok, "{err}");
    // transformers' generate, beam 4 then greedy (generate.json).
    assert_eq!(out.lines().collect::<Vec<_>>(), ["Good morning, how are you today?", "I have no time."]);
    let (ok, out, err) = wgformer(&["translate", "--checkpoint", &dir, "--greedy"], Some(text));
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["That is a house.", "I have"]);
    let (ok, out, err) = wgformer(&["eval", "--checkpoint", &dir, "--data", "ding", "--test-images", "16"], None);
    assert!(ok && out.contains("test BLEU (greedy)"), "{out}{err}");
}

#[test]
fn pytorch_model_bin_alone_gives_the_same_translations() {
    let copy = scratch("marian-bin");
    for f in ["config.json", "generation_config.json", "pytorch_model.bin", "vocab.json", "source.spm", "target.spm"] {
        std::fs::copy(Path::new(&case()).join(f), copy.join(f)).unwrap();
    }
    let text = "Guten Morgen, wie geht es dir heute?\nDas ist keine Zeit.\n";
    let (ok, out, err) = wgformer(&["translate", "--checkpoint", copy.to_str().unwrap()], Some(text));
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["Good morning, how are you today?", "I have no time."]);
    let _ = std::fs::remove_dir_all(&copy);
}

#[test]
fn a_marian_directory_without_its_tokenizer_is_a_clear_error() {
    let copy = scratch("marian-no-spm");
    for f in ["config.json", "generation_config.json", "model.safetensors", "vocab.json", "target.spm"] {
        std::fs::copy(Path::new(&case()).join(f), copy.join(f)).unwrap();
    }
    let (ok, _, err) = wgformer(&["translate", "--checkpoint", copy.to_str().unwrap(), "Hallo"], None);
    assert!(!ok && err.contains("source.spm"), "{err}");
    let _ = std::fs::remove_dir_all(&copy);
}

/// A copy of the case with `edit` applied, given to `train translate --init`: an error naming
/// `want`, and no output directory.
fn fine_tuning_refuses(name: &str, edit: &dyn Fn(&Path), want: &str) {
    let copy = scratch(&format!("marian-bad-{name}"));
    for f in ["config.json", "generation_config.json", "model.safetensors", "vocab.json", "source.spm", "target.spm"] {
        std::fs::copy(Path::new(&case()).join(f), copy.join(f)).unwrap();
    }
    edit(&copy);
    let out = copy.join("out");
    let args = ["train", "translate", "--init", copy.to_str().unwrap(), "--data", "ding", "--train-pairs", "16"];
    let (ok, _, err) = wgformer(&[&args[..], &["--epochs", "1", "--out", out.to_str().unwrap()]].concat(), None);
    assert!(!ok && err.contains(want), "{name}: {err}");
    assert!(!out.exists(), "{name}: an output directory was written");
    let _ = std::fs::remove_dir_all(&copy);
}

#[test]
fn fine_tuning_a_damaged_marian_directory_is_a_clear_error_and_writes_nothing() {
    let config = |dir: &Path, from: &str, to: &str| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(text.contains(from));
        std::fs::write(dir.join("config.json"), text.replace(from, to)).unwrap();
    };
    fine_tuning_refuses("no-spm", &|d| std::fs::remove_file(d.join("source.spm")).unwrap(), "source.spm");
    fine_tuning_refuses("vocab", &|d| config(d, "672", "700"), "tgt_embed.weight");
    fine_tuning_refuses("bart", &|d| config(d, "\"model_type\": \"marian\"", "\"model_type\": \"bart\""), "model_type");
    fine_tuning_refuses(
        "truncated",
        &|d| {
            let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
            std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
        },
        "model.safetensors",
    );
    let evil = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch/evil.bin");
    fine_tuning_refuses(
        "pickle",
        &|d| {
            std::fs::remove_file(d.join("model.safetensors")).unwrap();
            std::fs::copy(&evil, d.join("pytorch_model.bin")).unwrap();
        },
        "pytorch_model.bin",
    );
}
