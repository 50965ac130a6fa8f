//! kill -9 at random moments: `train vit` and `train translate` (tiny settings) are killed again
//! and again, including during checkpoint writes; after every kill the checkpoint directory is
//! a complete checkpoint (the previous or the new one) or none yet, `--resume` goes on from it,
//! and the run that finally ends holds weights bit-identical to an uninterrupted run's.

use crate::common;
use common::cli::scratch;
use common::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary to its end; panics with its stderr if it fails.
fn run(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgformer")).args(args).output().expect("runs the binary");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the binary and kills it (SIGKILL on Unix) after `delay`; false if it ended first
/// (successfully: a failure panics).
fn run_killed_after(args: &[String], delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs the binary");
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Some(status) = child.try_wait().expect("polls the child") {
            assert!(status.success(), "{args:?} failed on its own: {status}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kills the child");
    child.wait().expect("reaps the child");
    true
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().expect("a name").to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// The checkpoint a resume would read (DIR, or DIR.old left between the two renames of a
/// replacement), checked complete; `None` before the first checkpoint. Returns its epochs done.
fn complete_checkpoint(dir: &Path, files: &[&str]) -> Option<u64> {
    let ck = [dir.to_path_buf(), sibling(dir, ".old")].into_iter().find(|d| d.is_dir())?;
    for f in files {
        assert!(ck.join(f).is_file(), "{} lacks {f} after a kill", ck.display());
    }
    let state = std::fs::read_to_string(ck.join("trainer_state.json")).expect("reads the state");
    let state: serde_json::Value = serde_json::from_str(&state).expect("trainer_state.json parses");
    for f in files.iter().filter(|f| f.ends_with(".safetensors")) {
        let bytes = std::fs::read(ck.join(f)).expect("reads the weights");
        safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{f} is damaged after a kill: {e}"));
    }
    state["epochs_done"].as_u64()
}

/// Kills `train` `kills` times at random moments within an uninterrupted run's duration, then
/// lets it finish, and compares the weights with the uninterrupted run's.
fn survives_kills(name: &str, train: &[&str], files: &[&str], kills: usize, seed: u64) {
    let dir = scratch(name);
    let with_out = |out: &Path, resume: bool| -> Vec<String> {
        let mut args: Vec<String> = train.iter().map(|s| s.to_string()).collect();
        args.extend(["--out".to_string(), out.display().to_string()]);
        if resume {
            args.extend(["--resume".to_string(), out.display().to_string()]);
        }
        args
    };
    let straight = dir.join("straight");
    let start = Instant::now();
    run(&with_out(&straight, false));
    let duration = start.elapsed();
    let want = std::fs::read(straight.join("model.safetensors")).expect("reads the weights");

    let killed = dir.join("killed");
    let mut rng = Rng::new(seed);
    let (mut done, mut kills_done, mut finished) = (0, 0, 0);
    // Until `kills` kills landed: a run that ends before its kill (a fast machine, a short
    // remainder) is checked, then the sequence starts over from nothing.
    while kills_done < kills {
        assert!(finished <= 4 * kills, "{name}: {finished} runs ended before their kill");
        let resume = complete_checkpoint(&killed, files).is_some();
        // uniform() is in [-1, 1): a delay between 5% and 75% of the uninterrupted run.
        let delay = duration.mul_f64(0.4 + 0.35 * rng.uniform());
        if run_killed_after(&with_out(&killed, resume), delay) {
            kills_done += 1;
            if let Some(epochs) = complete_checkpoint(&killed, files) {
                assert!(epochs >= done, "the checkpoint went back from epoch {done} to {epochs}");
                done = epochs;
            }
            eprintln!("{name}: killed after {delay:?}; checkpoint after epoch {done}");
        } else {
            assert_same_weights(name, &killed, &want, kills_done);
            finished += 1;
            for d in [killed.clone(), sibling(&killed, ".old"), sibling(&killed, ".tmp")] {
                let _ = std::fs::remove_dir_all(d);
            }
            done = 0;
        }
    }
    run(&with_out(&killed, complete_checkpoint(&killed, files).is_some()));
    assert_same_weights(name, &killed, &want, kills_done);
    // The metrics went on across every resume: each step once, with the uninterrupted losses.
    let losses = |d: &Path| {
        let text = std::fs::read_to_string(d.join("metrics.jsonl")).expect("metrics.jsonl");
        wgformer::runtime::metrics::Metrics::parse(&text, d).expect("metrics parse").losses()
    };
    assert_eq!(losses(&killed), losses(&straight), "{name}: the killed run's metrics");
    eprintln!("{name}: {kills_done} kills; {} runs ended with the uninterrupted run's weights", finished + 1);
}

fn assert_same_weights(name: &str, dir: &Path, want: &[u8], kills: usize) {
    let got = std::fs::read(dir.join("model.safetensors")).expect("reads the weights");
    assert!(got == want, "{name}: a run killed {kills} times in all ended with other weights");
}

#[test]
fn train_vit_survives_kill_9_and_resumes_bit_identical() {
    let train = ["train", "vit", "--epochs", "3", "--batch", "32", "--train-images", "64", "--test-images", "50"];
    let files = ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "metrics.jsonl"];
    survives_kills("crash-vit", &train, &files, 8, 11);
}

#[test]
fn train_translate_survives_kill_9_and_resumes_bit_identical() {
    let train = [
        "train",
        "translate",
        "--epochs",
        "3",
        "--size",
        "tiny",
        "--vocab",
        "300",
        "--train-pairs",
        "200",
        "--valid-pairs",
        "8",
        "--test-pairs",
        "8",
        "--batch",
        "512",
        "--warmup",
        "10",
        "--average",
        "2",
    ];
    let files = [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "metrics.jsonl",
    ];
    survives_kills("crash-translate", &train, &files, 6, 12);
}

/// Runs `train vit --inject-fault FAULT` into `out`: it must fail within a
/// minute (no hang) and without a panic; returns its stderr.
fn train_with_fault(out: &Path, fault: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgformer"))
        .args(["train", "vit", "--epochs", "3", "--batch", "32", "--train-images", "64", "--test-images", "50"])
        .arg("--out")
        .arg(out)
        .args(["--inject-fault", fault])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs the binary");
    let start = Instant::now();
    while child.try_wait().expect("polls the child").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kills the child");
            panic!("{fault}: the run hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("reads stderr");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{fault}: the run went on: {err}");
    assert!(!err.contains("panicked"), "{fault}: {err}");
    err
}

#[test]
fn device_loss_and_out_of_memory_midway_stop_with_the_last_checkpoint_intact() {
    let dir = scratch("faults");
    let files = ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"];
    // 64 images in batches of 32: step 4 is the second step of epoch 2.
    for (fault, says) in [("device-lost:4", "device was lost"), ("oom:4", "Out of Memory")] {
        let out = dir.join(fault.replace(':', "-"));
        let err = train_with_fault(&out, fault);
        assert!(err.contains(says), "{fault}: {err}");
        assert_eq!(complete_checkpoint(&out, &files), Some(1), "{fault}: epoch 1's checkpoint must be intact");
        // And the run resumes from it.
        let resume = [
            "train",
            "vit",
            "--epochs",
            "3",
            "--batch",
            "32",
            "--train-images",
            "64",
            "--test-images",
            "50",
            "--out",
            out.to_str().unwrap(),
            "--resume",
            out.to_str().unwrap(),
        ];
        run(&resume.map(String::from));
        assert_eq!(complete_checkpoint(&out, &files), Some(3), "{fault}: the resumed run ends");
    }
}
