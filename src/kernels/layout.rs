//! Data movement: head split/merge (swap of axes 1 and 2), token copies, fills:
//! `shaders/layout.wgsl`.

use super::{check_len, dispatch, grid, u32_of, Dispatch};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Swap12Params {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
}

/// Mirrors `TokensParams` in layout.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct TokensParams {
    batch: u32,
    channels: u32,
    src_tokens: u32,
    dst_tokens: u32,
    src_off: u32,
    dst_off: u32,
    len: u32,
    src_broadcast: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct FillParams {
    n: u32,
    value: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct PatchParams {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    size: u32,
    _pad: [u32; 3],
}

/// A copy of `len` tokens between two (batch, tokens, channels) tensors.
#[derive(Clone, Copy, Debug)]
pub struct TokenCopy {
    pub batch: usize,
    pub channels: usize,
    pub src_tokens: usize,
    pub dst_tokens: usize,
    pub src_off: usize,
    pub dst_off: usize,
    pub len: usize,
    /// The source has a batch of 1, repeated for every destination batch entry.
    pub src_broadcast: bool,
}

/// The data-movement kernels.
pub struct Layout {
    swap12: wgpu::ComputePipeline,
    tokens: wgpu::ComputePipeline,
    tokens4: wgpu::ComputePipeline,
    fill: wgpu::ComputePipeline,
    patchify: wgpu::ComputePipeline,
    unpatchify: wgpu::ComputePipeline,
}

impl Layout {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let module = gpu.shader("layout.wgsl", crate::shaders::LAYOUT)?;
        let wg = [("WG", WG as f64)];
        Ok(Layout {
            swap12: gpu.pipeline(&module, "swap12_fwd", &wg)?,
            tokens: gpu.pipeline(&module, "tokens_copy_fwd", &wg)?,
            tokens4: gpu.pipeline(&module, "tokens_copy4_fwd", &wg)?,
            fill: gpu.pipeline(&module, "fill_fwd", &wg)?,
            patchify: gpu.pipeline(&module, "patchify_fwd", &wg)?,
            unpatchify: gpu.pipeline(&module, "patchify_bwd", &wg)?,
        })
    }

    /// y (A, C, B, D) <- x (A, B, C, D).
    pub fn swap12(&self, gpu: &Gpu, y: &Tensor, x: &Tensor, dims: [usize; 4]) -> Result<Dispatch> {
        let n: usize = dims.iter().product();
        check_len("swap12", "y", y, n)?;
        check_len("swap12", "x", x, n)?;
        let u = |v| u32_of("swap12", "dimension", v);
        let params = Swap12Params { a: u(dims[0])?, b: u(dims[1])?, c: u(dims[2])?, d: u(dims[3])? };
        dispatch(
            gpu,
            "swap12_fwd",
            &self.swap12,
            &[y, x],
            &params,
            grid(gpu, "swap12", (n as u64).div_ceil(WG as u64))?,
        )
    }

    /// dst[b, dst_off + t] = src[b or 0, src_off + t] for t < len.
    pub fn copy_tokens(&self, gpu: &Gpu, dst: &Tensor, src: &Tensor, c: &TokenCopy) -> Result<Dispatch> {
        let op = "tokens_copy";
        if c.src_off + c.len > c.src_tokens || c.dst_off + c.len > c.dst_tokens {
            return Err(Error::shape(op, format!("{c:?} reaches past the tokens")));
        }
        check_len(op, "dst", dst, c.batch * c.dst_tokens * c.channels)?;
        check_len(op, "src", src, if c.src_broadcast { 1 } else { c.batch } * c.src_tokens * c.channels)?;
        let u = |v| u32_of(op, "size", v);
        let params = TokensParams {
            batch: u(c.batch)?,
            channels: u(c.channels)?,
            src_tokens: u(c.src_tokens)?,
            dst_tokens: u(c.dst_tokens)?,
            src_off: u(c.src_off)?,
            dst_off: u(c.dst_off)?,
            len: u(c.len)?,
            src_broadcast: c.src_broadcast as u32,
        };
        if c.channels.is_multiple_of(4) {
            let n = (c.batch * c.len * c.channels / 4) as u64;
            let groups = grid(gpu, op, n.div_ceil(WG as u64))?;
            return dispatch(gpu, "tokens_copy4_fwd", &self.tokens4, &[dst, src], &params, groups);
        }
        let n = (c.batch * c.len * c.channels) as u64;
        dispatch(gpu, "tokens_copy_fwd", &self.tokens, &[dst, src], &params, grid(gpu, op, n.div_ceil(WG as u64))?)
    }

    /// out = value over `n` elements.
    pub fn fill(&self, gpu: &Gpu, out: &Tensor, value: f32, n: usize) -> Result<Dispatch> {
        check_len("fill", "out", out, n)?;
        let params = FillParams { n: u32_of("fill", "n", n)?, value, _pad: [0; 2] };
        dispatch(gpu, "fill_fwd", &self.fill, &[out], &params, grid(gpu, "fill", (n as u64).div_ceil(WG as u64))?)
    }

    /// patches (B, N, C*P*P) from image (B, C, H, W) (`backward`: dimage from dpatches, with
    /// `out` the image-shaped gradient and `inp` the patch-shaped one).
    pub fn patchify(
        &self,
        gpu: &Gpu,
        out: &Tensor,
        inp: &Tensor,
        image: [usize; 4],
        patch: usize,
        backward: bool,
    ) -> Result<Dispatch> {
        let op = if backward { "patchify_bwd" } else { "patchify_fwd" };
        let [b, c, h, w] = image;
        if patch == 0 || h % patch != 0 || w % patch != 0 {
            return Err(Error::shape(op, format!("image {h}x{w} is not a whole number of {patch}x{patch} patches")));
        }
        let n = b * c * h * w;
        check_len(op, "out", out, n)?;
        check_len(op, "inp", inp, n)?;
        let u = |v| u32_of(op, "size", v);
        let params =
            PatchParams { batch: u(b)?, channels: u(c)?, height: u(h)?, width: u(w)?, size: u(patch)?, _pad: [0; 3] };
        let pipeline = if backward { &self.unpatchify } else { &self.patchify };
        dispatch(gpu, op, pipeline, &[out, inp], &params, grid(gpu, op, (n as u64).div_ceil(WG as u64))?)
    }
}
