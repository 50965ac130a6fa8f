//! Embedding lookup and its deterministic gradient: `shaders/embedding.wgsl`.

use super::{check_len, check_loop_budget, check_typed, dispatch, grid, u32_of, Dispatch};
use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbeddingParams {
    tokens: u32,
    vocab: u32,
    channels: u32,
    _pad: u32,
}

/// The embedding kernels.
pub struct Embedding {
    fwd: wgpu::ComputePipeline,
    bwd: wgpu::ComputePipeline,
}

/// The ids grouped by value, as `embedding_bwd` reads them: (order, starts). `order` lists token
/// indices by id, ascending within an id; `starts[v]..starts[v + 1]` is id v's range. The
/// `padding` id's range is empty (its row gets no gradient); `order` keeps its full length.
pub fn group_ids(ids: &[u32], vocab: usize, padding: Option<u32>) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; vocab + 1];
    for &id in ids.iter().filter(|&&id| Some(id) != padding) {
        starts[id as usize + 1] += 1;
    }
    for v in 0..vocab {
        starts[v + 1] += starts[v];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; ids.len()];
    for (i, &id) in ids.iter().enumerate().filter(|&(_, &id)| Some(id) != padding) {
        order[next[id as usize] as usize] = i as u32;
        next[id as usize] += 1;
    }
    (order, starts)
}

impl Embedding {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("embedding.wgsl", crate::shaders::EMBEDDING)?;
        let wg = [("WG", WG as f64)];
        Ok(Embedding {
            fwd: gpu.pipeline(&module, "embedding_fwd", &wg)?,
            bwd: gpu.pipeline(&module, "embedding_bwd", &wg)?,
        })
    }

    fn params(op: &'static str, tokens: usize, vocab: usize, channels: usize) -> Result<EmbeddingParams> {
        let u = |v| u32_of(op, "size", v);
        Ok(EmbeddingParams { tokens: u(tokens)?, vocab: u(vocab)?, channels: u(channels)?, _pad: 0 })
    }

    /// out (tokens, channels) = `table[ids]`.
    #[allow(clippy::too_many_arguments)]
    pub fn fwd(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        table: &Tensor,
        ids: &Tensor,
        tokens: usize,
        vocab: usize,
        channels: usize,
    ) -> Result<Dispatch> {
        let op = "embedding_fwd";
        check_len(op, "out", out, tokens * channels)?;
        check_len(op, "table", table, vocab * channels)?;
        check_typed(op, "ids", ids, tokens, DType::U32)?;
        let groups = grid(gpu, op, ((tokens * channels) as u64).div_ceil(WG as u64))?;
        dispatch(gpu, op, &self.fwd, &[out, table, ids], &Self::params(op, tokens, vocab, channels)?, groups)
    }

    /// dtable (vocab, channels) from dout (tokens, channels) and the grouped ids (`group_ids`).
    #[allow(clippy::too_many_arguments)]
    pub fn bwd(
        &self,
        gpu: &Gpu,
        dtable: &Tensor,
        dout: &Tensor,
        order: &Tensor,
        starts: &Tensor,
        tokens: usize,
        vocab: usize,
        channels: usize,
    ) -> Result<Dispatch> {
        let op = "embedding_bwd";
        check_len(op, "dtable", dtable, vocab * channels)?;
        check_len(op, "dout", dout, tokens * channels)?;
        check_typed(op, "order", order, tokens, DType::U32)?;
        check_typed(op, "starts", starts, vocab + 1, DType::U32)?;
        // One id may occur in every token.
        check_loop_budget(gpu, op, tokens as u64 + 4, &format!("{tokens} tokens"))?;
        let groups = grid(gpu, op, ((vocab * channels) as u64).div_ceil(WG as u64))?;
        dispatch(
            gpu,
            op,
            &self.bwd,
            &[dtable, dout, order, starts],
            &Self::params(op, tokens, vocab, channels)?,
            groups,
        )
    }
}
