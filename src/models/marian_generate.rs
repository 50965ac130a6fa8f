//! Generation as transformers' `generate` does it for Marian models, on the key/value-cache
//! [`Decoder`]: the decoder starts from `decoder_start_token_id`; the pad id is never produced
//! (`bad_words_ids`); at the last position only end-of-sentence is allowed
//! (`forced_eos_token_id`); greedy search takes the first highest logit; beam search keeps
//! `num_beams` hypotheses ranked by summed log-probabilities, finishes a hypothesis when the end
//! of sentence is among the best `num_beams` candidates, scores it by its sum divided by
//! length^`length_penalty`, and stops once no running hypothesis could beat the finished ones
//! (transformers' heuristic with `early_stopping` false).

use super::transformer::TransformerConfig;
use super::transformer_decode::Decoder;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// What `generate` is asked for (generation_config.json's fields).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Generation {
    pub num_beams: usize,
    /// The longest output, the decoder start token included.
    pub max_length: usize,
    pub length_penalty: f64,
}

/// A large negative score: transformers' mark of a candidate that may not be chosen.
const OUT: f64 = -1.0e9;

/// The generated tokens of each source (complete rows, eos included), after the decoder start
/// token and through the end of sentence. `decoder` must have been built for this beam and for
/// at least `max_length - 1` target positions.
pub async fn generate(gpu: &Gpu, decoder: &Decoder, sources: &[Vec<u32>], g: &Generation) -> Result<Vec<Vec<u32>>> {
    decoder.start(gpu, sources).await?;
    match g.num_beams {
        1 => greedy(gpu, decoder, sources.len(), g).await,
        _ => beam(gpu, decoder, sources.len(), g).await,
    }
}

/// Log-probabilities of one row's logits after Marian's processors at sequence length
/// `cur_len` (pad banned; only eos at the last position).
fn processed(logits: &[f32], cfg: &TransformerConfig, cur_len: usize, g: &Generation) -> Vec<f64> {
    let m = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = logits.iter().map(|&x| (x as f64 - m).exp()).sum();
    let mut lp: Vec<f64> = logits.iter().map(|&x| x as f64 - m - sum.ln()).collect();
    lp[cfg.pad_id as usize] = f64::NEG_INFINITY;
    if cur_len + 1 == g.max_length {
        lp.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
        lp[cfg.eos_id as usize] = 0.0;
    }
    lp
}

/// The first index of the largest value.
fn argmax(v: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

async fn greedy(gpu: &Gpu, decoder: &Decoder, n: usize, g: &Generation) -> Result<Vec<Vec<u32>>> {
    let cfg = &decoder.config;
    let (rows, vocab) = (decoder.sentences(), cfg.vocab_size);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut tok = vec![cfg.decoder_start(); rows];
    let identity: Vec<usize> = (0..rows).collect();
    for t in 0..g.max_length.saturating_sub(1) {
        let logits = decoder.step_logits(gpu, t, &tok).await?;
        for i in 0..n {
            if done[i] {
                continue;
            }
            let next = argmax(&processed(&logits[i * vocab..(i + 1) * vocab], cfg, t + 1, g));
            out[i].push(next);
            done[i] = next == cfg.eos_id;
            tok[i] = next;
        }
        if done.iter().all(|&d| d) {
            break;
        }
        decoder.update_cache(gpu, t, &identity)?;
    }
    Ok(out)
}

/// One sentence's beam: running hypotheses and the best finished ones (`num_beams` slots).
struct Beams {
    running: Vec<(Vec<u32>, f64)>,
    finished: Vec<(Vec<u32>, f64, bool)>,
    /// Whether a running hypothesis may still beat the finished ones.
    open: bool,
}

/// A continuation: its summed log-probability, the running beam it extends and its token.
type Candidate = (f64, usize, u32);

async fn beam(gpu: &Gpu, decoder: &Decoder, n: usize, g: &Generation) -> Result<Vec<Vec<u32>>> {
    let cfg = decoder.config.clone();
    let (k, vocab) = (g.num_beams, cfg.vocab_size);
    let start = |j: usize| (vec![], if j == 0 { 0.0 } else { OUT });
    let mut beams: Vec<Beams> = (0..n)
        .map(|_| Beams { running: (0..k).map(start).collect(), finished: vec![(vec![], OUT, false); k], open: true })
        .collect();
    let mut tok = vec![cfg.decoder_start(); decoder.sentences() * k];
    for t in 0..g.max_length.saturating_sub(1) {
        let cur_len = t + 1;
        let logits = decoder.step_logits(gpu, t, &tok).await?;
        let mut parents: Vec<usize> = (0..tok.len()).collect();
        let mut all_hit = true;
        for (i, b) in beams.iter_mut().enumerate() {
            let mut cands: Vec<Candidate> = Vec::new();
            for (j, (_, score)) in b.running.iter().enumerate() {
                let r = i * k + j;
                let lp = processed(&logits[r * vocab..(r + 1) * vocab], &cfg, cur_len, g);
                cands.extend(top(&lp, 2 * k).into_iter().map(|(v, l)| (score + l, j, v)));
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0));
            cands.truncate(2 * k);
            let hits: Vec<bool> = cands.iter().map(|c| c.2 == cfg.eos_id || cur_len + 1 >= g.max_length).collect();
            all_hit &= hits.iter().all(|&h| h);
            finish(b, &cands, &hits, k, cur_len, g);
            let next = advance(b, &cands, &hits, k);
            for (j, &(parent, token)) in next.iter().enumerate() {
                parents[i * k + j] = i * k + parent;
                tok[i * k + j] = token;
            }
            let best_running = b.running[0].1 / (cur_len as f64).powf(g.length_penalty);
            let worst = b.finished.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
            b.open &= b.finished.iter().any(|f| best_running > if f.2 { worst } else { OUT });
        }
        if all_hit || beams.iter().all(|b| !b.open) {
            break;
        }
        decoder.update_cache(gpu, t, &parents)?;
    }
    Ok(beams.into_iter().map(|b| b.finished.into_iter().next().map(|f| f.0).unwrap_or_default()).collect())
}

/// The `count` best (token, log-probability) of a row, best first.
fn top(lp: &[f64], count: usize) -> Vec<(u32, f64)> {
    let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
    idx.sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b)));
    idx.truncate(count);
    idx.into_iter().map(|i| (i, lp[i as usize])).collect()
}

/// Merges the candidates that finished among the best `k` into the finished slots (by score
/// divided by length^penalty); the others take part only as unchoosable entries.
fn finish(b: &mut Beams, cands: &[Candidate], hits: &[bool], k: usize, cur_len: usize, g: &Generation) {
    let penalty = (cur_len as f64).powf(g.length_penalty);
    let mut merged: Vec<(Vec<u32>, f64, bool)> = std::mem::take(&mut b.finished);
    for (c, (&(sum, j, token), &hit)) in cands.iter().zip(hits).enumerate() {
        let just = hit && c < k;
        let mut score = sum / penalty;
        if !b.open {
            score += OUT;
        }
        if !just {
            score += OUT;
        }
        let mut seq = b.running[j].0.clone();
        seq.push(token);
        merged.push((seq, score, just));
    }
    merged.sort_by(|a, b| b.1.total_cmp(&a.1));
    merged.truncate(k);
    b.finished = merged;
}

/// The next running hypotheses: the best `k` candidates that did not finish (finished ones
/// count as very low); returns each one's (parent beam, token).
fn advance(b: &mut Beams, cands: &[Candidate], hits: &[bool], k: usize) -> Vec<(usize, u32)> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    let score = |c: usize| cands[c].0 + if hits[c] { OUT } else { 0.0 };
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
    let chosen: Vec<usize> = order.into_iter().take(k).collect();
    let next: Vec<(usize, u32)> = chosen.iter().map(|&c| (cands[c].1, cands[c].2)).collect();
    b.running = chosen
        .iter()
        .map(|&c| {
            let mut seq = b.running[cands[c].1].0.clone();
            seq.push(cands[c].2);
            (seq, score(c))
        })
        .collect();
    next
}

/// Generation settings from generation_config.json (or config.json): num_beams, max_length,
/// length_penalty; transformers' defaults where absent (1, 20, 1.0; Marian's configs set 4
/// and 512). Sampling and settings this search does not implement are errors naming them.
pub fn generation_from_json(text: &str, path: &std::path::Path) -> Result<Generation> {
    let bad = |msg: String| Error::Format { path: path.display().to_string(), msg };
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if v.get("do_sample").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(bad("do_sample true: sampling is not supported (greedy and beam search are)".into()));
    }
    for key in ["num_beam_groups", "no_repeat_ngram_size", "repetition_penalty"] {
        let value = v.get(key).and_then(serde_json::Value::as_f64);
        let neutral = if key == "no_repeat_ngram_size" { 0.0 } else { 1.0 };
        if value.is_some_and(|x| x != neutral) {
            return Err(bad(format!("{key} {} is not supported", value.unwrap_or_default())));
        }
    }
    let int = |key: &str, default: u64| v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(default) as usize;
    Ok(Generation {
        num_beams: int("num_beams", 1).max(1),
        max_length: int("max_length", 20).max(2),
        length_penalty: v.get("length_penalty").and_then(serde_json::Value::as_f64).unwrap_or(1.0),
    })
}
