// Elementwise ops on flat f32 tensors of n elements.
//   add_fwd:   out = a + b      (its gradient passes dout unchanged to a and b: no kernel needed)
//   add_bcast_fwd: out[i] = a[i] + b[i % nb]  (b repeated over a's leading dimensions)
//   mul_fwd:   out = a * b
//   mul_bwd:   da = dout * b, db = dout * a
//   scale_fwd: out = alpha * a  (scale's backward is scale_fwd with the same alpha)
//   relu_fwd:  out = max(a, 0)
//   relu_bwd:  out = b where a > 0, else 0   (a = x, b = dy)
//   silu_fwd:  out = x sigmoid(x)            (SiLU, or swish: Marian's feed-forward activation)
//   silu_bwd:  out = dy s (1 + x (1 - s)), s = sigmoid(x)
// Design rule: one element per invocation; the grid is 2D so n may exceed 65535 workgroups.

struct EltParams { n: u32, alpha: f32, nb: u32, _pad: u32, }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<uniform> p: EltParams;

// mul_bwd's own bindings: two outputs, three inputs.
@group(0) @binding(0) var<storage, read_write> mb_da: array<f32>;
@group(0) @binding(1) var<storage, read_write> mb_db: array<f32>;
@group(0) @binding(2) var<storage, read> mb_dout: array<f32>;
@group(0) @binding(3) var<storage, read> mb_a: array<f32>;
@group(0) @binding(4) var<storage, read> mb_b: array<f32>;
@group(0) @binding(5) var<uniform> mb_p: EltParams;

// scale_fwd's and relu_fwd's bindings: one output, one input.
@group(0) @binding(2) var<uniform> sc_p: EltParams;

// ReLU's and SiLU's operands in bindings of their own, each f16 in the forms where mixed precision keeps
// that tensor in half precision (shaders::with_f16): InT x, OutT the output (y or dx), DyT
// relu_bwd's dy.
alias InT = f32;
alias OutT = f32;
alias DyT = f32;
@group(0) @binding(0) var<storage, read_write> re_out: array<OutT>;
@group(0) @binding(1) var<storage, read> re_x: array<InT>;
@group(0) @binding(2) var<storage, read> re_dy: array<DyT>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn add_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { out[i] = a[i] + b[i]; }
}

@compute @workgroup_size(WG)
fn mul_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { out[i] = a[i] * b[i]; }
}

@compute @workgroup_size(WG)
fn mul_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < mb_p.n) {
        let g = mb_dout[i];
        mb_da[i] = g * mb_b[i];
        mb_db[i] = g * mb_a[i];
    }
}

@compute @workgroup_size(WG)
fn scale_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < sc_p.n) { out[i] = sc_p.alpha * a[i]; }
}

@compute @workgroup_size(WG)
fn relu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < sc_p.n) { re_out[i] = OutT(max(f32(re_x[i]), 0.0)); }
}

@compute @workgroup_size(WG)
fn relu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { re_out[i] = OutT(select(0.0, f32(re_dy[i]), f32(re_x[i]) > 0.0)); }
}

#include "common/activations.wgsl"

@compute @workgroup_size(WG)
fn silu_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < sc_p.n) {
        let x = f32(re_x[i]);
        re_out[i] = OutT(x * sigmoid(x));
    }
}

@compute @workgroup_size(WG)
fn silu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        let x = f32(re_x[i]);
        re_out[i] = OutT(f32(re_dy[i]) * silu_grad(x));
    }
}

@compute @workgroup_size(WG)
fn add_bcast_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) { out[i] = a[i] + b[i % p.nb]; }
}
