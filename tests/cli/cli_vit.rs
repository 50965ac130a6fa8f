//! The ViT commands end to end, through the binary: a short training run writes a complete
//! checkpoint; an interrupted run resumed with --resume ends bit-identical to an uninterrupted
//! one; predict classifies PNG and JPEG files; eval writes its CSV; bad input gives a clear
//! error and a non-zero exit.

use crate::common;
use common::cli::scratch;
use std::path::Path;

fn wgformer(args: &[&str]) -> (bool, String, String) {
    common::cli::wgformer(args, None)
}

fn train(out: &Path, extra: &[&str]) {
    let out = out.to_str().expect("utf-8 path");
    let mut args = vec![
        "train",
        "vit",
        "--out",
        out,
        "--epochs",
        "2",
        "--batch",
        "32",
        "--train-images",
        "128",
        "--test-images",
        "100",
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = wgformer(&args);
    assert!(ok, "training failed: {err}");
}

#[test]
fn train_resume_predict_eval() {
    let dir = scratch("vit");
    let (straight, split) = (dir.join("straight"), dir.join("split"));
    train(&straight, &[]);
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
        "training.svg",
        "metrics.jsonl",
    ] {
        assert!(straight.join(f).is_file(), "checkpoint lacks {f}");
    }
    // The same run, stopped after one epoch and resumed.
    train(&split, &["--stop-after", "1"]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(split.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], 1, "{state}");
    train(&split, &["--resume", split.to_str().unwrap()]);
    let a = std::fs::read(straight.join("model.safetensors")).unwrap();
    let b = std::fs::read(split.join("model.safetensors")).unwrap();
    assert!(a == b, "a resumed run must end where an uninterrupted one does");

    // Real image files: test images as a grey PNG, an RGB PNG and a JPEG.
    let test =
        wgformer::data::mnist::load(&wgformer::data::mnist::default_dir(), wgformer::data::mnist::Split::Test).unwrap();
    let grey = image::GrayImage::from_raw(28, 28, test.pixels[..784].to_vec()).unwrap();
    let png = dir.join("grey.png");
    grey.save(&png).unwrap();
    let rgb = image::DynamicImage::ImageLuma8(grey.clone())
        .resize_exact(56, 56, image::imageops::FilterType::Nearest)
        .to_rgb8();
    let (rgb_png, jpg) = (dir.join("rgb.png"), dir.join("photo.jpg"));
    rgb.save(&rgb_png).unwrap();
    rgb.save(&jpg).unwrap();
    let ckpt = straight.to_str().unwrap();
    let (ok, out, err) = wgformer(&[
        "predict",
        "--checkpoint",
        ckpt,
        png.to_str().unwrap(),
        rgb_png.to_str().unwrap(),
        jpg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.contains('%')).count(), 15, "top-5 for 3 images:\n{out}");
    assert!(
        out.contains("Ankle boot") || out.contains("Sneaker") || out.contains("Bag"),
        "class names are printed:\n{out}"
    );

    let csv = dir.join("predictions.csv");
    let (ok, out, err) = wgformer(&["eval", "--checkpoint", ckpt, "--out", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("test accuracy"), "{out}");
    let lines = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(lines.lines().count(), 10_001, "a header and one line per test image");
    assert!(lines.starts_with("index,predicted,label\n0,"));

    // Bad input: each a clear message naming the problem, and a failing exit status.
    let missing = dir.join("nope");
    let (ok, _, err) = wgformer(&["predict", "--checkpoint", missing.to_str().unwrap(), png.to_str().unwrap()]);
    assert!(!ok && err.contains("nope"), "{err}");
    let not_image = dir.join("notes.png");
    std::fs::write(&not_image, "not an image").unwrap();
    let (ok, _, err) = wgformer(&["predict", "--checkpoint", ckpt, not_image.to_str().unwrap()]);
    assert!(!ok && err.contains("notes.png"), "{err}");
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(straight.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"garbage").unwrap();
    let (ok, _, err) = wgformer(&["predict", "--checkpoint", broken.to_str().unwrap(), png.to_str().unwrap()]);
    assert!(!ok && err.contains("model.safetensors"), "{err}");
    let config = std::fs::read_to_string(straight.join("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 96", "\"hidden_size\": 64");
    std::fs::write(broken.join("config.json"), config).unwrap();
    std::fs::copy(straight.join("model.safetensors"), broken.join("model.safetensors")).unwrap();
    let (ok, _, err) = wgformer(&["predict", "--checkpoint", broken.to_str().unwrap(), png.to_str().unwrap()]);
    assert!(!ok && err.contains("shape"), "a config that does not match the weights: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_absurd_learning_rate_stops_training_naming_the_step() {
    let dir = scratch("vit-absurd-lr");
    let out = dir.join("run");
    let args = ["train", "vit", "--out", out.to_str().unwrap(), "--epochs", "1", "--batch", "32"];
    let (ok, _, err) =
        wgformer(&[&args[..], &["--train-images", "128", "--test-images", "100", "--lr", "1e30"]].concat());
    assert!(!ok, "training on with NaN: {err}");
    assert!(err.contains("at step") && err.contains("training stopped"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--precision f16` through the binary: mixed precision trains and checkpoints where the
/// adapter has f16 shaders (lavapipe), and is a clear error where it has none (llvmpipe's GL).
#[test]
fn mixed_precision_trains_where_there_is_f16_and_is_a_clear_error_elsewhere() {
    let dir = scratch("vit-f16");
    let out = dir.join("run");
    let quick = ["--epochs", "1", "--batch", "32", "--train-images", "128", "--test-images", "100"];
    let args = [&["train", "vit", "--out", out.to_str().unwrap(), "--precision", "f16"][..], &quick].concat();
    let (ok, _, err) = wgformer(&args);
    if err.contains("SHADER_F16") {
        eprintln!("skipped: the default adapter has no f16 shaders");
    } else {
        assert!(ok, "f16 training failed: {err}");
        let state = std::fs::read_to_string(out.join("trainer_state.json")).unwrap();
        assert!(state.contains("\"epochs_done\": 1") && state.contains("test_accuracy"), "{state}");
    }
    let gl = std::process::Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args([&["train", "vit", "--out", dir.join("gl").to_str().unwrap(), "--precision", "f16"][..], &quick].concat())
        .env("WGFORMER_BACKEND", "gl")
        .output()
        .expect("runs the binary");
    let err = String::from_utf8_lossy(&gl.stderr);
    if !err.contains("no adapter") {
        assert!(!gl.status.success() && err.contains("SHADER_F16") && !err.contains("panicked"), "{err}");
        assert!(!dir.join("gl").join("model.safetensors").exists(), "a refused run writes no checkpoint");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With stderr not a terminal (a pipe here), progress comes as plain lines: every
/// `--log-every` steps and at the end of each epoch, with the step, loss and times.
#[test]
fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let dir = scratch("vit-log-every");
    let out = dir.join("run");
    let args = ["train", "vit", "--epochs", "1", "--batch", "32", "--train-images", "256", "--test-images", "50"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--log-every", "3", "--out", out.to_str().expect("utf-8 path")]);
    let (ok, _, err) = wgformer(&args);
    assert!(ok, "training failed: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch 1/1 ")).collect();
    let steps: Vec<&str> = lines.iter().filter_map(|l| l.split(':').next()?.strip_prefix("epoch 1/1 ")).collect();
    assert_eq!(steps, ["3/8", "6/8", "8/8"], "{err}");
    assert!(lines.iter().all(|l| l.contains("loss ") && l.contains("s elapsed") && l.contains("s left")), "{err}");
    let (ok, _, err) = wgformer(&["train", "vit", "--log-every", "0"]);
    assert!(!ok && err.contains("--log-every"), "a zero interval is refused: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each model's training command takes its own options: the other's are refused, not ignored.
#[test]
fn a_flag_of_the_other_model_is_an_error() {
    for (args, flag) in [
        (["train", "vit", "--vocab", "9"], "--vocab"),
        (["train", "translate", "--train-images", "5"], "--train-images"),
        (["train", "resnet", "--epochs", "1"], "resnet"),
    ] {
        let (ok, _, err) = wgformer(&args);
        assert!(!ok && err.contains(flag), "{args:?} must be refused naming {flag}: {err}");
    }
}
