//! `wgformer translate` and `eval` on a translation checkpoint.

use std::io::Read;
use std::path::Path;
use wgformer::models::transformer_decode::Search;
use wgformer::models::translation::TranslationModel;
use wgformer::models::translator::{Translations, Translator, MAX_ROWS, MAX_TOKENS};
use wgformer::text::corpus;
use wgformer::{Error, Gpu, Result};

/// The translations, after warnings about what was adjusted on the way.
fn report(t: Translations) -> Vec<String> {
    for &i in &t.truncated {
        let max = MAX_TOKENS - 1;
        eprintln!("warning: line {} has over {max} tokens; translating its first {max}", i + 1);
    }
    if t.unknown_chars > 0 {
        eprintln!("note: {} characters unknown to the tokenizer were read as <unk>", t.unknown_chars);
    }
    t.lines
}

/// The search the `translate` and `eval` options ask for; bad values are errors.
pub fn search(greedy: bool, beam: usize, alpha: f32) -> Result<Search> {
    let search = if greedy { Search::GREEDY } else { Search { beam, alpha } };
    Translator::check_search(&Search { beam, alpha }).map_err(|_| {
        Error::Config(format!(
            "--beam {beam} --alpha {alpha}: keep between 1 and {MAX_ROWS} hypotheses, and a length penalty of at least 0"
        ))
    })?;
    Ok(search)
}

/// `translate`: TEXT, or every line of stdin, to stdout.
pub fn translate(checkpoint: &Path, text: Option<&str>, search: Search) -> Result<()> {
    let gpu = Gpu::from_env()?;
    let translator = TranslationModel::load(checkpoint)?;
    let input = match text {
        Some(t) => wgformer::text::input::lines(t.as_bytes()),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Io { path: "stdin".into(), source })?;
            wgformer::text::input::lines(&bytes)
        }
    };
    if input.invalid_utf8 > 0 {
        eprintln!("note: {} lines held bytes that are not UTF-8, read as U+FFFD", input.invalid_utf8);
    }
    if input.cut > 0 {
        let max = wgformer::text::input::MAX_LINE_CHARS;
        eprintln!("warning: {} lines were over {max} characters; their first {max} were read", input.cut);
    }
    let lines = input.lines;
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    for out in report(translator.translate(&gpu, &refs, search)?) {
        println!("{out}");
    }
    Ok(())
}

/// `eval` of a translation checkpoint: test-set BLEU (beam search as `beam` says, and greedy);
/// --out writes the beam translations, one per line.
pub fn eval(checkpoint: &Path, out: Option<&Path>, data: &Path, beam: Search, limit: Option<usize>) -> Result<()> {
    let gpu = Gpu::from_env()?;
    let model = TranslationModel::load(checkpoint)?;
    let mut test = corpus::read_split(data, "test")?;
    test.truncate(limit.unwrap_or(usize::MAX));
    let sources: Vec<&str> = test.iter().map(|(s, _)| s.as_str()).collect();
    let name = format!("beam {}, alpha {}", beam.beam, beam.alpha);
    for (name, search) in [(name.as_str(), beam), ("greedy", Search::GREEDY)] {
        let start = std::time::Instant::now();
        let hyps = report(model.translate(&gpu, &sources, search)?);
        let mut stats = wgformer::text::bleu::BleuStats::default();
        for (h, (_, r)) in hyps.iter().zip(&test) {
            stats.add(h, r);
        }
        let secs = start.elapsed().as_secs_f64();
        println!("test BLEU ({name}): {:.2} ({} pairs, {secs:.1} s): {stats}", stats.score(), test.len());
        if let (Some(out), true) = (out, search == beam) {
            wgformer::util::io::write_atomic(out, (hyps.join("\n") + "\n").as_bytes())?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}

/// The model type a checkpoint directory holds ("vit", "transformer" or "marian").
pub fn model_type(dir: &Path) -> Option<String> {
    wgformer::models::model_type(&std::fs::read_to_string(dir.join("config.json")).ok()?)
}
