//! The translation commands end to end, through the binary: a short run of the tiny model
//! writes a complete checkpoint (tokenizer included) and resumes; translate reads an argument or
//! stdin lines (empty lines stay empty); eval prints BLEU; a checkpoint whose tokenizer does not
//! match its model is refused with a clear message.

use crate::common;
use common::cli::{scratch, wgformer};

/// A run small enough for 2 CPU cores: the tiny model on 300 pairs.
const QUICK: [&str; 14] = [
    "--size",
    "tiny",
    "--vocab",
    "300",
    "--train-pairs",
    "300",
    "--valid-pairs",
    "8",
    "--test-pairs",
    "8",
    "--batch",
    "512",
    "--warmup",
    "10",
];

#[test]
fn train_resume_translate_eval() {
    let dir = scratch("translate");
    let out = dir.join("run");
    let out_s = out.to_str().expect("utf-8 path");
    let mut args = vec!["train", "translate", "--out", out_s, "--epochs", "2", "--stop-after", "1"];
    args.extend_from_slice(&QUICK);
    let (ok, _, err) = wgformer(&args, None);
    assert!(ok, "training failed: {err}");
    assert_eq!(rounds(&out), [1], "one evaluated round, with its validation BLEU");
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "training.svg",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).is_file(), "checkpoint lacks {f}");
    }
    let mut args = vec!["train", "translate", "--out", out_s, "--resume", out_s];
    args.extend_from_slice(&QUICK);
    let (ok, _, err) = wgformer(&args, None);
    assert!(ok, "resume failed: {err}");
    assert_eq!(rounds(&out), [1, 2], "the resumed run goes on with round 2 and its metrics");
    assert!(err.contains("test BLEU (beam 4)"), "{err}");
    check_averaging(&out, &err);
    // A third epoch goes on from epoch 2's own weights, not from their mean, and the mean at
    // the end takes all three epochs (two carried over from the previous checkpoint).
    let mut args = vec!["train", "translate", "--out", out_s, "--resume", out_s, "--epochs", "3"];
    args.extend_from_slice(&QUICK);
    let (ok, _, err) = wgformer(&args, None);
    assert!(ok, "second resume failed: {err}");
    assert!(err.contains("epoch-002.safetensors") && err.contains("the mean of epochs 1-3"), "{err}");
    for e in 1..=3 {
        assert!(out.join(format!("epoch-00{e}.safetensors")).is_file(), "epoch {e}'s snapshot is kept");
    }

    let (ok, stdout, err) = wgformer(&["translate", "--checkpoint", out_s, "Ich habe Hunger."], None);
    assert!(ok, "translate failed: {err}");
    assert_eq!(stdout.lines().count(), 1, "one line out: {stdout:?}");
    let (ok, stdout, err) =
        wgformer(&["translate", "--checkpoint", out_s, "--greedy"], Some("Guten Morgen.\n\nDas ist ein Haus. 😀\n"));
    assert!(ok, "translate from stdin failed: {err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per input line: {stdout:?}");
    assert_eq!(lines[1], "", "an empty line stays empty");
    assert!(err.contains("unknown to the tokenizer"), "says that the emoji is unknown: {err}");
    // The library's translator gives the CLI's lines, batched or one at a time.
    {
        use wgformer::models::transformer_decode::Search;
        use wgformer::models::translator::Translator;
        let gpu = wgformer::Gpu::new().unwrap();
        let translator = Translator::load(&out).unwrap();
        let sources = ["Guten Morgen.", "", "Das ist ein Haus. 😀"];
        let batched = translator.translate(&gpu, &sources, Search::GREEDY).unwrap();
        assert_eq!(batched.lines, lines, "the library and the CLI agree");
        assert!(batched.unknown_chars > 0 && batched.truncated.is_empty());
        for (i, s) in sources.iter().enumerate() {
            assert_eq!(translator.translate(&gpu, &[s], Search::GREEDY).unwrap().lines, [lines[i]]);
        }
        let bad = Search { beam: 0, alpha: 0.6 };
        assert!(translator.translate(&gpu, &sources, bad).is_err());
    }

    let (ok, stdout, err) =
        wgformer(&["translate", "--checkpoint", out_s, "--beam", "2", "--alpha", "1.0", "Guten Morgen."], None);
    assert!(ok && stdout.lines().count() == 1, "translate with --beam 2 --alpha 1.0: {err}");
    for (flag, value, says) in
        [("--beam", "0", "--beam 0"), ("--alpha", "-1", "--alpha -1"), ("--alpha", "NaN", "--alpha NaN")]
    {
        let (ok, _, err) = wgformer(&["translate", "--checkpoint", out_s, flag, value, "Hallo"], None);
        assert!(!ok && err.contains(says) && !err.contains("panicked"), "{flag} {value}: {err}");
    }

    let (ok, stdout, err) = wgformer(&["eval", "--checkpoint", out_s], None);
    assert!(ok, "eval failed: {err}");
    assert!(stdout.contains("test BLEU (beam 4, alpha 0.6)") && stdout.contains("test BLEU (greedy)"), "{stdout}");

    // A tokenizer from another run does not fit this model's vocabulary.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(out.join(f), other.join(f)).unwrap();
    }
    let tok = std::fs::read_to_string(out.join("tokenizer.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&tok).unwrap();
    let vocab = json["vocab"].as_array_mut().unwrap();
    vocab.pop();
    json["merges"].as_array_mut().unwrap().pop();
    std::fs::write(other.join("tokenizer.json"), json.to_string()).unwrap();
    let (ok, _, err) = wgformer(&["translate", "--checkpoint", other.to_str().unwrap(), "Hallo"], None);
    assert!(!ok && err.contains("tokenizer has") && err.contains("vocabulary"), "{err}");

    // Bad training options are refused with a message, before any work.
    for (flag, value, says) in [
        ("--max-minutes", "0", "max_minutes: must be a positive"),
        ("--dropout", "1.5", "dropout"),
        ("--size", "no-such-config.json", "no-such-config.json"),
    ] {
        let (ok, _, err) = wgformer(&["train", "translate", "--out", other.to_str().unwrap(), flag, value], None);
        assert!(!ok && err.contains(says), "{flag} {value}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run given a time budget and no --epochs measures its first round, plans the steps that fit
/// (rounds of validation and checkpoint included), stays within the budget and ends with the
/// test BLEU; its plan is in trainer_state.json, so --resume goes on with it.
#[test]
fn a_time_budget_plans_and_bounds_the_run() {
    let dir = scratch("translate-budget");
    let out = dir.join("run");
    let out_s = out.to_str().expect("utf-8 path");
    let mut args = vec!["train", "translate", "--out", out_s, "--max-minutes", "0.4"];
    args.extend_from_slice(&QUICK);
    let (ok, _, err) = wgformer(&args, None);
    assert!(ok, "budgeted training failed: {err}");
    assert!(err.contains("time budget: 0.4 minutes") && err.contains("planned "), "{err}");
    assert!(err.contains("test BLEU (beam 4)"), "{err}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trainer_state.json")).unwrap()).unwrap();
    let seconds: f64 = state["history"].as_array().unwrap().iter().map(|r| r["seconds"].as_f64().unwrap()).sum();
    // The budget (less a validation's time) is checked before every step; the last validation
    // may take a little longer than the one before.
    assert!(seconds <= 0.4 * 60.0 * 1.25, "{seconds} s of training and validation for a 24 s budget");
    let (steps, total) = (state["step"].as_u64().unwrap(), state["total_steps"].as_u64().unwrap());
    assert!(state["planned"].as_bool().unwrap() && state["probe_steps"].as_u64().unwrap() >= 12, "{state}");
    assert!(steps <= total && steps >= 12, "{steps} of {total} steps");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The run's end averaged the two epochs' snapshots: model.safetensors holds their mean when the
/// state says so, else the last epoch's weights.
fn check_averaging(out: &std::path::Path, log: &str) {
    assert!(log.contains("the mean of epochs 1-2: valid loss"), "{log}");
    let read = |name: &str| wgformer::util::io::read_safetensors(&out.join(name)).expect(name);
    let (e1, e2, model) = (read("epoch-001.safetensors"), read("epoch-002.safetensors"), read("model.safetensors"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trainer_state.json")).unwrap()).unwrap();
    let averaged = state["averaged"].as_array().expect("averaged in trainer_state.json").len() == 2;
    assert_eq!(averaged, log.contains("the checkpoint keeps the mean"), "{log}");
    let mut differ = false;
    for ((a, b), m) in e1.iter().zip(&e2).zip(&model) {
        assert!(a.name == b.name && b.name == m.name);
        let f = |t: &wgformer::util::io::NamedTensor| t.f32(out).unwrap().to_vec();
        let (a, b, m) = (f(a), f(b), f(m));
        differ |= a != b;
        for ((x, y), z) in a.iter().zip(&b).zip(&m) {
            let want = if averaged { (x + y) / 2.0 } else { *y };
            assert!((z - want).abs() <= 1e-6 * (1.0 + want.abs()), "{z} != {want}");
        }
    }
    assert!(differ, "the two epochs' weights differ");
}

/// The rounds a run's metrics.jsonl holds evaluations of (each with loss and BLEU), in order.
fn rounds(dir: &std::path::Path) -> Vec<usize> {
    use wgformer::runtime::metrics::{Metrics, Record};
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    let m = Metrics::parse(&text, dir).expect("metrics parse");
    let rounds = m.records.iter().filter_map(|r| match r {
        Record::Eval { round, values, .. }
            if values.contains_key("valid_bleu") && values.contains_key("valid_loss") =>
        {
            Some(*round)
        }
        _ => None,
    });
    rounds.collect()
}
