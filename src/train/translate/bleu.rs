//! Corpus BLEU of a model's translations: the validation score after each round and the test
//! score at the end of a run (and of `wgformer eval`).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::transformer_decode::Search;
use crate::models::translation::TranslationModel;
use crate::models::translator::Translations;
use crate::text::bleu::BleuStats;

/// The test-set BLEU line of a model with one search (timed, `name` saying which), and the
/// translations.
pub fn test_bleu(
    gpu: &Gpu,
    model: &TranslationModel,
    test: &[(String, String)],
    name: &str,
    search: Search,
) -> Result<(String, Translations)> {
    let start = std::time::Instant::now();
    let (stats, hyps) = bleu_of(gpu, model, test, search)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((format!("test BLEU ({name}): {:.2} ({} pairs, {secs:.1} s): {stats}", stats.score(), test.len()), hyps))
}

/// Corpus BLEU statistics of translating the sources of `pairs`, and the translations (with
/// what was cut or unknown on the way).
pub fn bleu_of(
    gpu: &Gpu,
    model: &TranslationModel,
    pairs: &[(String, String)],
    search: Search,
) -> Result<(BleuStats, Translations)> {
    let sources: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
    let hyps = model.translate(gpu, &sources, search)?;
    let mut stats = BleuStats::default();
    for (h, (_, r)) in hyps.lines.iter().zip(pairs) {
        stats.add(h, r);
    }
    Ok((stats, hyps))
}
