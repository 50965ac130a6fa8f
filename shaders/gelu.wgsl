// GELU, forward and backward, elementwise over n values.
//   exact (approximate == 0): gelu(x) = x/2 * (1 + erf(x / sqrt(2)))
//   tanh  (approximate == 1): gelu(x) = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   gelu_bwd: dinp = dout * gelu'(x)
// The formulas are in common/activations.wgsl, shared with the matmul's fused activations.

struct GeluParams { n: u32, approximate: u32, _pad0: u32, _pad1: u32, }

// Storage types, each f16 in the forms where mixed precision keeps that tensor in half
// precision (shaders::with_f16): InT the input x, OutT the output (gelu_fwd's y, gelu_bwd's
// dx), DyT gelu_bwd's dy. Arithmetic stays f32.
alias InT = f32;
alias OutT = f32;
alias DyT = f32;

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<OutT>;
@group(0) @binding(1) var<storage, read> inp: array<InT>;
@group(0) @binding(2) var<uniform> p: GeluParams;

// gelu_bwd's bindings: dinp is the output, then inp and dout.
@group(0) @binding(0) var<storage, read_write> bw_dinp: array<OutT>;
@group(0) @binding(1) var<storage, read> bw_inp: array<InT>;
@group(0) @binding(2) var<storage, read> bw_dout: array<DyT>;
@group(0) @binding(3) var<uniform> bw_p: GeluParams;

#include "common/activations.wgsl"

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn gelu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { out[i] = OutT(gelu(f32(inp[i]), p.approximate)); }
}

@compute @workgroup_size(WG)
fn gelu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < bw_p.n) { bw_dinp[i] = OutT(f32(bw_dout[i]) * gelu_grad(f32(bw_inp[i]), bw_p.approximate)); }
}
