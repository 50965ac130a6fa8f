//! Marian's tokenizer against transformers' MarianTokenizer (tests/golden/make_marian.py wrote
//! tokenizer.jsonl for the marian-s0 directory): source ids, target ids, and the decoding of
//! the target ids with and without special tokens, line for line.

use std::path::Path;
use wgformer::text::marian::MarianTokenizer;

#[test]
fn marian_tokenizer_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0");
    let tok = MarianTokenizer::load(&dir).expect("the tokenizer loads");
    let cases = std::fs::read_to_string(dir.join("tokenizer.jsonl")).expect("tokenizer.jsonl");
    let (mut wrong, mut count) = (Vec::new(), 0);
    for line in cases.lines() {
        let case: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let text = case["text"].as_str().expect("text");
        let ids = |key: &str| -> Vec<u32> { serde_json::from_value(case[key].clone()).expect("ids") };
        let (want, want_target) = (ids("ids"), ids("target_ids"));
        let checks = [
            ("ids", format!("{:?}", tok.encode(text)), format!("{want:?}")),
            ("target_ids", format!("{:?}", tok.encode_target(text)), format!("{want_target:?}")),
            ("decoded", tok.decode(&want_target, true), case["decoded"].as_str().unwrap_or_default().to_string()),
            (
                "decoded_special",
                tok.decode(&want_target, false),
                case["decoded_special"].as_str().unwrap_or_default().to_string(),
            ),
        ];
        for (what, got, want) in checks {
            if got != want {
                wrong.push(format!("{what} of {text:?}: got {got}, want {want}"));
            }
        }
        count += 1;
    }
    assert!(count > 600, "{count} cases");
    let shown: Vec<&String> = wrong.iter().take(8).collect();
    assert!(wrong.is_empty(), "{} of {count} cases differ from transformers:\n{shown:#?}", wrong.len());
}

#[test]
fn a_directory_without_its_files_is_an_error_naming_them() {
    let e = MarianTokenizer::load(Path::new("/nonexistent-marian")).unwrap_err().to_string();
    assert!(e.contains("vocab.json"), "{e}");
    let spm = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/marian-s0/source.spm")).unwrap();
    let e = MarianTokenizer::from_parts(&spm, &spm, r#"{"a": 0}"#, "dir").unwrap_err().to_string();
    assert!(e.contains("</s>"), "{e}");
    let e = MarianTokenizer::from_parts(&spm, b"junk", "{}", "dir").unwrap_err().to_string();
    assert!(e.contains("target.spm"), "{e}");
}
