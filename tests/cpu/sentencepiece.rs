//! SentencePiece against Python's `sentencepiece` (tests/data/sentencepiece/make.py): for a
//! unigram and a BPE model trained with it on the bundled pairs, every line of lines.txt (the
//! test pairs, plus empty lines, odd whitespace, NFKC cases and unknown characters) must give
//! the same ids, and decoding them the same text.

use std::path::Path;
use wgformer::text::sentencepiece::SentencePiece;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sentencepiece").join(name)
}

fn check(model: &str) {
    let sp = SentencePiece::load(&data(&format!("{model}.model"))).expect("the model loads");
    let lines: Vec<String> = std::fs::read_to_string(data("lines.txt"))
        .expect("lines.txt")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON string per line"))
        .collect();
    let expected = std::fs::read_to_string(data(&format!("{model}.expected.jsonl"))).expect("expected file");
    let mut wrong = Vec::new();
    let mut count = 0;
    for (line, want) in lines.iter().zip(expected.lines()) {
        let want: serde_json::Value = serde_json::from_str(want).expect("JSON");
        let ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).expect("ids");
        let got = sp.encode(line);
        if got != ids {
            wrong.push(format!("encode {line:?}: got {got:?}, want {ids:?} ({:?})", sp.normalize(line)));
        }
        let decoded = sp.decode(&ids);
        if decoded != want["decoded"].as_str().unwrap_or_default() {
            wrong.push(format!("decode {ids:?}: got {decoded:?}, want {}", want["decoded"]));
        }
        count += 1;
    }
    assert_eq!(count, lines.len(), "an expected entry per line");
    assert!(count > 3000, "{count} lines");
    let shown: Vec<&String> = wrong.iter().take(8).collect();
    assert!(wrong.is_empty(), "{model}: {} of {count} lines differ from sentencepiece:\n{shown:#?}", wrong.len());
}

#[test]
fn unigram_matches_sentencepiece() {
    check("unigram");
}

#[test]
fn bpe_matches_sentencepiece() {
    check("bpe");
}

#[test]
fn a_file_that_is_not_a_model_is_an_error() {
    for bytes in [&b""[..], b"not a model at all", &[0x0a, 0xff, 0xff, 0xff, 0x0f]] {
        let e = SentencePiece::from_bytes(bytes, "x.spm").unwrap_err().to_string();
        assert!(e.contains("x.spm"), "{e}");
    }
    let model = std::fs::read(data("unigram.model")).unwrap();
    for cut in [10, model.len() / 2, model.len() - 3] {
        assert!(SentencePiece::from_bytes(&model[..cut], "x.spm").is_err(), "cut at {cut}");
    }
}
