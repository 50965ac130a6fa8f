//! The Transformer's decoding: the key/value-cached one-token steps on the GPU give the same
//! translations as re-running the whole model on each prefix with the CPU reference; beam
//! search keeps each sentence of a batch independent and finds hypotheses at least as likely
//! as greedy's.

use crate::common;
use wgformer::models::transformer::{build, init_params, TransformerConfig};
use wgformer::models::transformer_decode::{Decoder, Search};
use wgformer::reference::graph::evaluate;
use wgformer::text::bpe::{BOS, EOS};

fn tiny_config() -> TransformerConfig {
    TransformerConfig {
        d_model: 32,
        num_heads: 2,
        encoder_layers: 2,
        decoder_layers: 2,
        d_ff: 48,
        final_norm: true,
        tie_embeddings: true,
        ..TransformerConfig::small(23)
    }
}

/// Random parameters larger than the initialisation, so that the output depends on the input.
fn params(cfg: &TransformerConfig) -> Vec<(String, Vec<f32>)> {
    let t = build(cfg, 1, 2, 2, false).unwrap();
    let mut rng = common::Rng::new(42);
    init_params(&t.graph, 3)
        .into_iter()
        .map(|(p, v)| {
            let d = t.graph.desc(p);
            let v = if d.name.contains("norm") { v } else { rng.vec_f32(v.len(), 0.5) };
            (d.name.clone(), v)
        })
        .collect()
}

/// log p(target | source) and the next-token log-probabilities after `prefix`, from the full
/// model on the CPU.
fn full_model(cfg: &TransformerConfig, params: &[(String, Vec<f32>)], src: &[u32], prefix: &[u32]) -> Vec<f64> {
    let (s, t) = (src.len() + 1, prefix.len() + 1);
    let g = build(cfg, 1, s, t, false).unwrap();
    let mut values: Vec<Vec<f64>> = g.graph.tensors.iter().map(|d| vec![0.0; d.len()]).collect();
    for (name, v) in params {
        if let Some(id) = g.graph.find(name) {
            values[id.0] = v.iter().map(|&x| x as f64).collect();
        }
    }
    let ids = |v: Vec<u32>| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>();
    values[g.src.0] = ids(src.iter().copied().chain([EOS]).collect());
    values[g.src_lens.0] = vec![s as f64];
    values[g.tgt_in.0] = ids([BOS].into_iter().chain(prefix.iter().copied()).collect());
    values[g.tgt_out.0] = vec![EOS as f64; t];
    for (id, pe) in g.constants() {
        values[id.0] = pe.iter().map(|&x| x as f64).collect();
    }
    evaluate(&g.graph, &mut values);
    let v = cfg.vocab_size;
    let last = &values[g.logits.0][(t - 1) * v..t * v];
    let m = last.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + last.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    last.iter().map(|x| x - lse).collect()
}

/// Greedy decoding by re-running the full model on every prefix.
fn naive_greedy(cfg: &TransformerConfig, params: &[(String, Vec<f32>)], src: &[u32], limit: usize) -> Vec<u32> {
    let mut out = Vec::new();
    while out.len() < limit {
        let lp = full_model(cfg, params, src, &out);
        // Never padding or bos, as the decoder.
        let best = (2..lp.len()).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap() as u32;
        if best == EOS {
            break;
        }
        out.push(best);
    }
    out
}

/// Sum of log p of `target` then eos.
fn log_prob(cfg: &TransformerConfig, params: &[(String, Vec<f32>)], src: &[u32], target: &[u32]) -> f64 {
    (0..=target.len())
        .map(|i| {
            let lp = full_model(cfg, params, src, &target[..i]);
            lp[*target.get(i).unwrap_or(&EOS) as usize]
        })
        .sum()
}

const SOURCES: [&[u32]; 3] = [&[5, 9, 12, 7], &[4, 4, 20], &[11, 6, 8, 17, 3, 10, 9]];

#[test]
fn cached_greedy_decoding_matches_the_full_model() {
    let cfg = tiny_config();
    let params = params(&cfg);
    common::for_each_gpu(|gpu| {
        let dec = Decoder::new(gpu, &cfg, &params, 3, Search::GREEDY, 9, 12).unwrap();
        let sources: Vec<Vec<u32>> = SOURCES.iter().map(|s| s.to_vec()).collect();
        let got = dec.decode(gpu, &sources).unwrap();
        for (src, out) in SOURCES.iter().zip(&got) {
            let limit = (2 * src.len() + 10).min(12);
            let want = naive_greedy(&cfg, &params, src, limit);
            assert_eq!(out, &want, "source {src:?}");
        }
        assert!(got.iter().any(|o| o.len() > 2), "the outputs are long enough to use the cache: {got:?}");
    });
}

#[test]
fn beam_search_is_per_sentence_and_beats_greedy() {
    let cfg = tiny_config();
    let params = params(&cfg);
    common::for_each_gpu(|gpu| {
        let search = Search { beam: 4, alpha: 0.0 };
        let batch = Decoder::new(gpu, &cfg, &params, 3, search, 9, 12).unwrap();
        let single = Decoder::new(gpu, &cfg, &params, 1, search, 9, 12).unwrap();
        let greedy = Decoder::new(gpu, &cfg, &params, 1, Search::GREEDY, 9, 12).unwrap();
        let sources: Vec<Vec<u32>> = SOURCES.iter().map(|s| s.to_vec()).collect();
        let together = batch.decode(gpu, &sources).unwrap();
        for (src, out) in sources.iter().zip(&together) {
            let alone = single.decode(gpu, std::slice::from_ref(src)).unwrap();
            assert_eq!(out, &alone[0], "source {src:?} decodes the same alone and in a batch");
            let g = greedy.decode(gpu, std::slice::from_ref(src)).unwrap();
            let (lb, lg) = (log_prob(&cfg, &params, src, out), log_prob(&cfg, &params, src, &g[0]));
            assert!(lb >= lg - 1e-4, "beam {out:?} ({lb}) vs greedy {:?} ({lg})", g[0]);
        }
    });
}

#[test]
fn bad_decoder_inputs_are_errors() {
    let cfg = tiny_config();
    let params = params(&cfg);
    common::for_each_gpu(|gpu| {
        let dec = Decoder::new(gpu, &cfg, &params, 1, Search::GREEDY, 4, 6).unwrap();
        assert!(dec.decode(gpu, &[vec![5, 6, 7, 8]]).is_err(), "longer than src_max - 1");
        assert!(dec.decode(gpu, &[vec![5], vec![6]]).is_err(), "more sentences than the batch");
        assert!(dec.decode(gpu, &[vec![99]]).is_err(), "id outside the vocabulary");
        let missing: Vec<(String, Vec<f32>)> = params[1..].to_vec();
        assert!(Decoder::new(gpu, &cfg, &missing, 1, Search::GREEDY, 4, 6).is_err());
    });
}
