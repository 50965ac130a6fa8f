// The params, storage types and forward bindings of the fused attention kernels
// (attention.wgsl, attention_sg.wgsl, attention_tiled.wgsl).

struct AttnParams { batch: u32, heads: u32, tq: u32, tk: u32, causal: u32, has_lens: u32, scale: f32, _pad: u32, }

// q, k and v's storage: vec4<f16> in the form where mixed precision keeps the projections
// in half precision (shaders::with_f16); arithmetic stays f32.
alias Qkv4 = vec4<f32>;
// o's storage (O4; the backward reads it too) and the gradients' (Grad4: do, dq, dk and dv), each
// vec4<f16> in the forms where mixed precision keeps them in half precision.
alias O4 = vec4<f32>;
alias Grad4 = vec4<f32>;

// attention_fwd: o and lse from q, k, v (and the keys' lengths).
@group(0) @binding(0) var<storage, read_write> o: array<O4>;     // (B, Tq, H, D)
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;         // (B, H, Tq)
@group(0) @binding(2) var<storage, read> q: array<Qkv4>;
@group(0) @binding(3) var<storage, read> k: array<Qkv4>;
@group(0) @binding(4) var<storage, read> v: array<Qkv4>;
@group(0) @binding(5) var<storage, read> key_lens: array<u32>;          // (B)
@group(0) @binding(6) var<uniform> p: AttnParams;

// vec4 index of row t, head h of a (B, T, H, D) tensor.
fn row4(b: u32, t: u32, h: u32, tokens: u32, heads: u32) -> u32 {
    return ((b * tokens + t) * heads + h) * (D / 4u);
}

// Keys visible to query i: [0, end).
fn key_end(i: u32, len: u32, prm: AttnParams) -> u32 {
    var end = len;
    if (prm.causal != 0u) { end = min(end, i + (prm.tk - prm.tq) + 1u); }
    return end;
}
