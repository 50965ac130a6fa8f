//! Corpus BLEU of a model's translations: the validation score after each round and the test
//! score at the end of a run (and of `wgformer eval`).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::models::transformer::TransformerConfig;
use crate::models::transformer_checkpoint as ckpt;
use crate::models::transformer_decode::Search;
use crate::models::translator::{Translations, Translator};
use crate::text::bleu::BleuStats;
use crate::text::bpe::Bpe;

/// The test-set BLEU line of a checkpoint with one search (timed, `name` saying which), and
/// the translations.
pub fn test_bleu(
    gpu: &Gpu,
    ck: &ckpt::Checkpoint,
    test: &[(String, String)],
    name: &str,
    search: Search,
) -> Result<(String, Translations)> {
    let start = std::time::Instant::now();
    let (stats, hyps) = bleu_of(gpu, &ck.config, &ck.tokenizer, &ck.params, test, search)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((format!("test BLEU ({name}): {:.2} ({} pairs, {secs:.1} s): {stats}", stats.score(), test.len()), hyps))
}

/// Corpus BLEU statistics of translating the sources of `pairs`, and the translations (with
/// what was cut or unknown on the way).
pub fn bleu_of(
    gpu: &Gpu,
    cfg: &TransformerConfig,
    bpe: &Bpe,
    params: &[(String, Vec<f32>)],
    pairs: &[(String, String)],
    search: Search,
) -> Result<(BleuStats, Translations)> {
    let translator = Translator::new(cfg.clone(), bpe.clone(), params.to_vec());
    let sources: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
    let hyps = translator.translate(gpu, &sources, search)?;
    let mut stats = BleuStats::default();
    for (h, (_, r)) in hyps.lines.iter().zip(pairs) {
        stats.add(h, r);
    }
    Ok((stats, hyps))
}
