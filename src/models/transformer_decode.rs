//! Translation with a trained Transformer: greedy and beam search, one decoder step per new
//! token. The encoder runs once per batch and also projects the memory to every decoder layer's
//! cross-attention keys and values; each step then feeds one token per hypothesis and attends
//! over a key/value cache. The new token's key and value are placed first and the cache after
//! them, so the valid keys are always a prefix (length t + 1) and the fused attention's length
//! mask applies. After each step the new keys and values are copied into the cache on the GPU,
//! and beam search reorders the cache rows by buffer copies.

use super::transformer::{Layers, TransformerConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::graph::{AttentionPolicy, Dtype, Graph, TensorId};
use crate::runtime::exec::{Executor, HostData, StepOptions};
use crate::text::bpe::{BOS, EOS, PAD};

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Search {
    /// Hypotheses kept per sentence (1: greedy).
    pub beam: usize,
    /// Length penalty exponent: scores are divided by ((5 + length) / 6)^alpha.
    pub alpha: f32,
}

impl Search {
    pub const GREEDY: Search = Search { beam: 1, alpha: 0.0 };
    /// The paper's setting: beam 4, alpha 0.6.
    pub const PAPER: Search = Search { beam: 4, alpha: 0.6 };
}

/// The tensors of the encoder graph.
struct EncoderIo {
    src: TensorId,
    src_lens: TensorId,
    src_pe: TensorId,
    cross: Vec<(TensorId, TensorId)>,
}

/// The tensors of the one-token decoder step graph.
struct StepIo {
    tok: TensorId,
    pe: TensorId,
    self_lens: TensorId,
    src_lens: TensorId,
    cache: Vec<(TensorId, TensorId)>,
    cross: Vec<(TensorId, TensorId)>,
    new: Vec<(TensorId, TensorId)>,
    logits: TensorId,
}

/// A model ready to decode batches of `sentences` sources with a given beam.
pub struct Decoder {
    pub config: TransformerConfig,
    sentences: usize,
    search: Search,
    src_max: usize,
    tgt_max: usize,
    encoder: Executor,
    enc: EncoderIo,
    step: Executor,
    io: StepIo,
    /// Scratch for reordering cache rows.
    scratch: Tensor,
    pe: Vec<f32>,
}

fn encoder_graph(
    cfg: &TransformerConfig,
    rows: usize,
    src_max: usize,
    attention: AttentionPolicy,
) -> Result<(Graph, EncoderIo)> {
    let layers = Layers { cfg, drop: 0.0 };
    let mut g = Graph::with_attention(attention);
    let src = g.input("src", &[rows, src_max], Dtype::U32);
    let src_lens = g.input("src_lens", &[rows], Dtype::U32);
    let src_pe = g.input("src_pe", &[src_max, cfg.d_model], Dtype::F32);
    let (src_table, _, _) = layers.embeddings(&mut g);
    let x = layers.embed(&mut g, src_table, src, src_pe)?;
    let memory = layers.encoder(&mut g, x, src_lens)?;
    let mut cross = Vec::new();
    for i in 0..cfg.decoder_layers {
        let name = format!("transformer.decoder.layers.{i}.multihead_attn");
        cross.push((layers.in_proj(&mut g, memory, &name, 1)?, layers.in_proj(&mut g, memory, &name, 2)?));
    }
    Ok((g, EncoderIo { src, src_lens, src_pe, cross }))
}

fn step_graph(
    cfg: &TransformerConfig,
    rows: usize,
    src_max: usize,
    tgt_max: usize,
    attention: AttentionPolicy,
) -> Result<(Graph, StepIo)> {
    let layers = Layers { cfg, drop: 0.0 };
    let c = cfg.d_model;
    let mut g = Graph::with_attention(attention);
    let tok = g.input("tok", &[rows, 1], Dtype::U32);
    let pe = g.input("pe", &[1, c], Dtype::F32);
    let self_lens = g.input("self_lens", &[rows], Dtype::U32);
    let src_lens = g.input("src_lens", &[rows], Dtype::U32);
    let (_, tgt_table, out_weight) = layers.embeddings(&mut g);
    let mut y = layers.embed(&mut g, tgt_table, tok, pe)?;
    let (mut cache, mut cross, mut new) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cfg.decoder_layers {
        let l = format!("transformer.decoder.layers.{i}");
        let ck = g.input(&format!("cache.{i}.k"), &[rows, tgt_max, c], Dtype::F32);
        let cv = g.input(&format!("cache.{i}.v"), &[rows, tgt_max, c], Dtype::F32);
        let xk = g.input(&format!("cross.{i}.k"), &[rows, src_max, c], Dtype::F32);
        let xv = g.input(&format!("cross.{i}.v"), &[rows, src_max, c], Dtype::F32);
        let sa = format!("{l}.self_attn");
        let q = layers.in_proj(&mut g, y, &sa, 0)?;
        let k = layers.in_proj(&mut g, y, &sa, 1)?;
        let v = layers.in_proj(&mut g, y, &sa, 2)?;
        let keys = g.concat_tokens(k, ck)?;
        let values = g.concat_tokens(v, cv)?;
        let a = g.attention(q, keys, values, cfg.num_heads, Some(self_lens), false, 0.0)?;
        let a = layers.out_proj(&mut g, a, &sa)?;
        y = layers.residual_norm(&mut g, y, a, &format!("{l}.norm1"))?;
        let ca = format!("{l}.multihead_attn");
        let q = layers.in_proj(&mut g, y, &ca, 0)?;
        let a = g.attention(q, xk, xv, cfg.num_heads, Some(src_lens), false, 0.0)?;
        let a = layers.out_proj(&mut g, a, &ca)?;
        y = layers.residual_norm(&mut g, y, a, &format!("{l}.norm2"))?;
        let f = layers.feed_forward(&mut g, y, &l)?;
        y = layers.residual_norm(&mut g, y, f, &format!("{l}.norm3"))?;
        cache.push((ck, cv));
        cross.push((xk, xv));
        new.push((k, v));
    }
    if cfg.final_norm {
        y = layers.layernorm(&mut g, y, "transformer.decoder.norm")?;
    }
    let logits = layers.generator(&mut g, y, out_weight)?;
    Ok((g, StepIo { tok, pe, self_lens, src_lens, cache, cross, new, logits }))
}

/// Sets every parameter of `exec`'s graph from `params` (name, values); all must be present.
fn set_params(gpu: &Gpu, exec: &Executor, params: &[(String, Vec<f32>)]) -> Result<()> {
    let g = exec.graph();
    for p in g.params() {
        let name = &g.desc(p).name;
        let values = params
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Error::Config(format!("the checkpoint has no parameter {name}")))?;
        exec.set(gpu, p, HostData::F32(&values.1))?;
    }
    Ok(())
}

/// Where a decoder's parameters come from.
enum Weights<'a> {
    /// Uploaded from these values (by graph name).
    Upload(&'a [(String, Vec<f32>)]),
    /// The buffers of a decoder of the same model.
    Share(&'a Decoder),
}

/// One hypothesis of a beam.
#[derive(Clone, Debug)]
struct Hyp {
    tokens: Vec<u32>,
    score: f32,
}

impl Decoder {
    /// Prepares decoding of up to `sentences` sources of at most `src_max` tokens (eos
    /// included) into at most `tgt_max` tokens each.
    pub fn new(
        gpu: &Gpu,
        config: &TransformerConfig,
        params: &[(String, Vec<f32>)],
        sentences: usize,
        search: Search,
        src_max: usize,
        tgt_max: usize,
    ) -> Result<Self> {
        Self::build(gpu, config, Weights::Upload(params), sentences, search, (src_max, tgt_max))
    }

    /// A decoder of other sizes on `like`'s parameter buffers: nothing is uploaded (a model's
    /// batches of different lengths, without a copy of its weights each).
    pub fn sharing(
        gpu: &Gpu,
        like: &Decoder,
        sentences: usize,
        search: Search,
        src_max: usize,
        tgt_max: usize,
    ) -> Result<Self> {
        Self::build(gpu, &like.config, Weights::Share(like), sentences, search, (src_max, tgt_max))
    }

    fn build(
        gpu: &Gpu,
        config: &TransformerConfig,
        weights: Weights,
        sentences: usize,
        search: Search,
        (src_max, tgt_max): (usize, usize),
    ) -> Result<Self> {
        if sentences == 0 || search.beam == 0 || src_max == 0 || tgt_max == 0 {
            return Err(Error::Config("sentences, beam and the maximum lengths must be positive".into()));
        }
        let rows = sentences * search.beam;
        let attention = crate::runtime::attention_choice::policy(gpu, |p| {
            encoder_graph(config, rows, src_max, p.clone())?;
            step_graph(config, rows, src_max, tgt_max, p).map(drop)
        })?;
        let (eg, enc) = encoder_graph(config, rows, src_max, attention.clone())?;
        let keep: Vec<TensorId> = enc.cross.iter().flat_map(|&(k, v)| [k, v]).collect();
        let (sg, io) = step_graph(config, rows, src_max, tgt_max, attention)?;
        let mut step_keep: Vec<TensorId> = io.new.iter().flat_map(|&(k, v)| [k, v]).collect();
        step_keep.push(io.logits);
        let (encoder, step) = match weights {
            Weights::Upload(params) => {
                let encoder = Executor::keeping(gpu, eg, None, None, &keep)?;
                let step = Executor::keeping(gpu, sg, None, None, &step_keep)?;
                set_params(gpu, &encoder, params)?;
                set_params(gpu, &step, params)?;
                (encoder, step)
            }
            Weights::Share(like) => (
                Executor::sharing(gpu, eg, None, None, &keep, &like.encoder)?,
                Executor::sharing(gpu, sg, None, None, &step_keep, &like.step)?,
            ),
        };
        let c = config.d_model;
        encoder.set(gpu, enc.src_pe, HostData::F32(&config.positional_table(src_max)))?;
        let scratch = gpu.zeros("decode.scratch", rows * tgt_max * c)?;
        Ok(Decoder {
            config: config.clone(),
            sentences,
            search,
            src_max,
            tgt_max,
            encoder,
            enc,
            step,
            io,
            scratch,
            pe: config.positional_table(tgt_max),
        })
    }

    /// Sources per batch.
    pub fn sentences(&self) -> usize {
        self.sentences
    }

    /// The longest source (eos included) a batch takes.
    pub fn src_max(&self) -> usize {
        self.src_max
    }

    /// The most target tokens a translation may have (the caches' length).
    pub fn tgt_max(&self) -> usize {
        self.tgt_max
    }

    /// Translates up to [`Decoder::sentences`] token sequences (without eos; each at most
    /// `src_max - 1` long); returns the target tokens of each, without bos/eos.
    pub fn decode(&self, gpu: &Gpu, sources: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
        pollster::block_on(self.decode_async(gpu, sources))
    }

    /// [`Decoder::decode`] without blocking (browsers).
    pub async fn decode_async(&self, gpu: &Gpu, sources: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
        let k = self.search.beam;
        let rows = self.sentences * k;
        let with_eos: Vec<Vec<u32>> = sources.iter().map(|s| s.iter().copied().chain([EOS]).collect()).collect();
        self.start(gpu, &with_eos).await?;
        let n = sources.len();
        let mut alive: Vec<Vec<Hyp>> = vec![vec![Hyp { tokens: vec![], score: 0.0 }]; n];
        let mut finished: Vec<Vec<Hyp>> = vec![Vec::new(); n];
        let limit: Vec<usize> = sources.iter().map(|s| (2 * s.len() + 10).min(self.tgt_max)).collect();
        let steps = limit.iter().copied().max().unwrap_or(0);
        let vocab = self.config.vocab_size;
        let mut tok = vec![BOS; rows];
        for t in 0..steps {
            let logits = self.step_logits(gpu, t, &tok).await?;
            let mut parents: Vec<usize> = (0..rows).collect();
            for i in 0..n {
                if alive[i].is_empty() {
                    continue;
                }
                let mut cands: Vec<(f32, usize, u32)> = Vec::new();
                for (j, h) in alive[i].iter().enumerate() {
                    let r = i * k + j;
                    let lp = log_softmax(&logits[r * vocab..(r + 1) * vocab]);
                    for (tok, l) in top_k(&lp, 2 * k) {
                        cands.push((h.score + l, j, tok));
                    }
                }
                cands.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut next = Vec::with_capacity(k);
                for (rank, &(score, j, tok)) in cands.iter().enumerate() {
                    let mut tokens = alive[i][j].tokens.clone();
                    if tok == EOS || t + 1 == limit[i] {
                        if tok != EOS {
                            tokens.push(tok);
                        }
                        // An end of sentence among the best k finishes a hypothesis; at the
                        // length limit every survivor finishes.
                        if rank < k {
                            finished[i].push(Hyp { tokens, score });
                        }
                        continue;
                    }
                    if next.len() < k {
                        parents[i * k + next.len()] = i * k + j;
                        tokens.push(tok);
                        next.push(Hyp { tokens, score });
                    }
                    if next.len() == k && rank + 1 >= k {
                        break;
                    }
                }
                // Keep the k best finished hypotheses by length-normalised score.
                finished[i].sort_by(|x, y| self.normalised(y).total_cmp(&self.normalised(x)));
                finished[i].truncate(k);
                // Stop once no live hypothesis can overtake the worst kept one, even if it
                // reached the longest length allowed (limit tokens and the end of sentence)
                // with no further loss: tensor2tensor's rule, which the paper's beam search used;
                // stopping at the first k finished favours short ones.
                let hopeless = match (finished[i].get(k - 1), next.first()) {
                    (Some(worst), Some(best)) => {
                        self.normalised(worst) >= best.score / self.length_penalty(limit[i] + 1)
                    }
                    _ => false,
                };
                alive[i] = if hopeless || next.is_empty() || t + 1 >= limit[i] { Vec::new() } else { next };
            }
            if alive.iter().all(|a| a.is_empty()) {
                break;
            }
            for (i, beams) in alive.iter().enumerate() {
                for (j, h) in beams.iter().enumerate() {
                    tok[i * k + j] = *h.tokens.last().unwrap_or(&BOS);
                }
            }
            self.update_cache(gpu, t, &parents)?;
        }
        Ok(finished
            .into_iter()
            .zip(alive)
            .map(|(f, a)| {
                let pool = if f.is_empty() { a } else { f };
                pool.into_iter()
                    .max_by(|x, y| self.normalised(x).total_cmp(&self.normalised(y)))
                    .map(|h| h.tokens)
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Encodes a batch: `sources` are whole token rows (eos included), at most
    /// [`Decoder::sentences`] of at most [`Decoder::src_max`] tokens; each sentence's
    /// hypothesis rows (as many as the beam) carry its source. Starts the decoding steps.
    pub(crate) async fn start(&self, gpu: &Gpu, sources: &[Vec<u32>]) -> Result<()> {
        let (k, s_max, c) = (self.search.beam, self.src_max, self.config.d_model);
        let rows = self.sentences * k;
        let bad = |msg: String| Err(Error::Input { name: "sources".into(), msg });
        if sources.len() > self.sentences {
            return bad(format!("{} sentences, at most {} per batch", sources.len(), self.sentences));
        }
        if let Some(long) = sources.iter().find(|s| s.len() > s_max || s.is_empty()) {
            return bad(format!(
                "a source of {} tokens (eos included) does not fit the {s_max} this decoder takes",
                long.len()
            ));
        }
        let pad = self.config.pad_id;
        let mut src = vec![pad; rows * s_max];
        let mut src_lens = vec![1u32; rows];
        for r in 0..rows {
            let row = &mut src[r * s_max..(r + 1) * s_max];
            match sources.get(r / k) {
                Some(s) => {
                    row[..s.len()].copy_from_slice(s);
                    src_lens[r] = s.len() as u32;
                }
                None => row[0] = self.config.eos_id,
            }
        }
        let feed = [(self.enc.src, HostData::U32(&src)), (self.enc.src_lens, HostData::U32(&src_lens))];
        self.encoder.step_async(gpu, &feed, &StepOptions::default()).await?;
        let mut enc = gpu.encoder("cross kv");
        for (&(ek, ev), &(sk, sv)) in self.enc.cross.iter().zip(&self.io.cross) {
            let bytes = (rows * s_max * c * 4) as u64;
            enc.copy_buffer_to_buffer(self.encoder.buffer(ek), 0, self.step.buffer(sk), 0, bytes);
            enc.copy_buffer_to_buffer(self.encoder.buffer(ev), 0, self.step.buffer(sv), 0, bytes);
        }
        gpu.scoped("cross-attention keys", || gpu.submit(enc.finish()))?;
        self.step.set(gpu, self.io.src_lens, HostData::U32(&src_lens))
    }

    /// One decoding step at position `t`, feeding one token per hypothesis row: the logits,
    /// (rows, vocab). Call [`Decoder::update_cache`] before the next step.
    pub(crate) async fn step_logits(&self, gpu: &Gpu, t: usize, tok: &[u32]) -> Result<Vec<f32>> {
        let c = self.config.d_model;
        if t >= self.tgt_max {
            return Err(Error::Input { name: "step".into(), msg: format!("position {t} is past {}", self.tgt_max) });
        }
        let lens = vec![t as u32 + 1; tok.len()];
        let inputs = [
            (self.io.tok, HostData::U32(tok)),
            (self.io.pe, HostData::F32(&self.pe[t * c..(t + 1) * c])),
            (self.io.self_lens, HostData::U32(&lens)),
        ];
        self.step.step_async(gpu, &inputs, &StepOptions::default()).await?;
        self.step.read_async(gpu, self.io.logits).await
    }

    /// Hypotheses per sentence.
    pub fn beam(&self) -> usize {
        self.search.beam
    }

    /// GNMT's length penalty ((5 + length) / 6)^alpha for `length` tokens, end of sentence included.
    fn length_penalty(&self, length: usize) -> f32 {
        ((5.0 + length as f32) / 6.0).powf(self.search.alpha)
    }

    /// A hypothesis' log-probability divided by its length penalty.
    fn normalised(&self, h: &Hyp) -> f32 {
        h.score / self.length_penalty(h.tokens.len() + 1)
    }

    /// Writes step `t`'s keys and values into the cache at position t, row r taking the
    /// history of row parents[r].
    pub(crate) fn update_cache(&self, gpu: &Gpu, t: usize, parents: &[usize]) -> Result<()> {
        let (c, tm) = (self.config.d_model as u64 * 4, self.tgt_max as u64);
        let reorder = parents.iter().enumerate().any(|(r, &p)| r != p);
        let mut enc = gpu.encoder("kv cache");
        for (&(ck, cv), &(nk, nv)) in self.io.cache.iter().zip(&self.io.new) {
            for (cache, new) in [(ck, nk), (cv, nv)] {
                let (cache, new) = (self.step.buffer(cache), self.step.buffer(new));
                let target = if reorder { self.scratch.buffer() } else { cache };
                for (r, &p) in parents.iter().enumerate() {
                    let (r, p) = (r as u64, p as u64);
                    if reorder && t > 0 {
                        enc.copy_buffer_to_buffer(cache, p * tm * c, target, r * tm * c, t as u64 * c);
                    }
                    enc.copy_buffer_to_buffer(new, p * c, target, (r * tm + t as u64) * c, c);
                }
                if reorder {
                    let bytes = parents.len() as u64 * tm * c;
                    enc.copy_buffer_to_buffer(self.scratch.buffer(), 0, cache, 0, bytes);
                }
            }
        }
        gpu.scoped("kv cache update", || gpu.submit(enc.finish())).map(|_| ())
    }
}

/// log(softmax(x)).
fn log_softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    x.iter().map(|v| v - lse).collect()
}

/// The `k` largest entries as (index, value), largest first; padding never wins.
fn top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..x.len() as u32).filter(|&i| i != PAD && i != BOS).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return vec![];
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| x[b as usize].total_cmp(&x[a as usize]));
    let mut top: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i, x[i as usize])).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_skips_padding_and_sorts() {
        let x = [9.0, 8.0, 1.0, 5.0, 3.0];
        assert_eq!(top_k(&x, 2), [(3, 5.0), (4, 3.0)]);
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        assert!((l.iter().map(|v| v.exp()).sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
