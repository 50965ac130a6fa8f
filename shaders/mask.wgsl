// Attention masks on scores (B, H, Tq, Tk), for the composed attention path.
//   mask_fwd: y = x, or -1e30 where key j is masked: j >= key_len[b] (padding) or, when causal,
//             j > i + (Tk - Tq) (a query sees keys up to its own position)
//   mask_bwd: dx = dy, or 0 where masked
// -1e30 rather than -inf: a fully masked row then softmaxes to a uniform row, not NaN.

struct MaskParams { batch: u32, heads: u32, tq: u32, tk: u32, causal: u32, has_lens: u32, _pad0: u32, _pad1: u32, }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> key_lens: array<u32>;   // (B); ignored unless has_lens
@group(0) @binding(3) var<uniform> p: MaskParams;

fn masked(i: u32) -> bool {
    let j = i % p.tk;
    let q = (i / p.tk) % p.tq;
    let b = i / (p.tk * p.tq * p.heads);
    let pad = p.has_lens != 0u && j >= key_lens[b];
    let future = p.causal != 0u && j > q + (p.tk - p.tq);
    return pad || future;
}

@compute @workgroup_size(WG)
fn mask_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.batch * p.heads * p.tq * p.tk) { out[i] = select(inp[i], -1e30, masked(i)); }
}

@compute @workgroup_size(WG)
fn mask_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.batch * p.heads * p.tq * p.tk) { out[i] = select(inp[i], 0.0, masked(i)); }
}
