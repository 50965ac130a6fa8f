// Dropout with a counter-based random number generator: no mask is stored. Element i of the
// node with salt s in the step with seed k is kept when hash(k, s, i) / 2^32 >= p; kept values
// are scaled by 1 / (1 - p). On data-parallel rank r, i counts from r * n (the element's
// index in the whole batch, for batch-major tensors), so N ranks draw one process's masks. The backward recomputes the same decision from (k, s, i), so it
// must run in the same step (same seed).
//   dropout_fwd: y = keep ? x / (1 - p) : 0
//   dropout_bwd: dx = keep ? dy / (1 - p) : 0
// The hash is in common/dropout_hash.wgsl (the matmul kernels draw the same masks).

struct DropoutParams { n: u32, threshold: u32, scale: f32, salt: u32, }
#include "common/dropout_hash.wgsl"

override WG: u32 = 256;

// Storage types, each f16 in the forms where mixed precision keeps that tensor in half
// precision (shaders::with_f16): InT the input (x or dy), OutT the output (y or dx).
alias InT = f32;
alias OutT = f32;

@group(0) @binding(0) var<storage, read_write> out: array<OutT>;
@group(0) @binding(1) var<storage, read> inp: array<InT>;
@group(0) @binding(2) var<uniform> p: DropoutParams;
@group(0) @binding(3) var<uniform> st: StepParams;

fn keep(i: u32) -> bool {
    // threshold = p * 2^32 (saturated), so P(hash < threshold) = p.
    // A data-parallel rank keys its elements by their index in the whole batch (shard 0: i).
    return dropout_keep(st.seed, p.salt, i + st.shard * p.n, p.threshold);
}

@compute @workgroup_size(WG)
fn dropout_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) { out[i] = OutT(select(0.0, f32(inp[i]) * p.scale, keep(i))); }
}

// The same formula on dy: the gradient of y = mask * x * scale.
@compute @workgroup_size(WG)
fn dropout_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) { out[i] = OutT(select(0.0, f32(inp[i]) * p.scale, keep(i))); }
}
