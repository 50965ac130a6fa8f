// A chain of elementwise ops (graph::chain) in one kernel: the values between the ops stay in
// registers, f32, while each tensor is f32 or f16 in storage. kernels/chain.rs generates each
// chain's form from this template: it replaces the lines between `//@bindings` and `//@end`
// with the chain's tensors (inputs, then outputs, then the two uniforms) and those between
// `//@body` and `//@end` with one `let` per step and the stores. As written (one input copied
// to one output) it is what the build validates.
//   lens:  each input's element count; an input shorter than n repeats (element i % len)
//   words: dropouts' salts and thresholds; reals: scale factors and dropouts' scales
//   dropout keeps element i as dropout.wgsl does (keyed by i + shard * n)
// Design rule: one element per invocation; the grid is 2D so n may exceed 65535 workgroups.

#include "common/activations.wgsl"
#include "common/dropout_hash.wgsl"

struct ChainParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lens: array<vec4<u32>, 2>,
    words: array<vec4<u32>, 8>,
    reals: array<vec4<f32>, 8>,
}

override WG: u32 = 256;

//@bindings
@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read_write> out0: array<f32>;
@group(0) @binding(2) var<uniform> p: ChainParams;
@group(0) @binding(3) var<uniform> st: StepParams;
//@end

// x / (1 - p) where element i is kept, else 0 (salt, threshold and scale of one dropout).
fn dropped(i: u32, x: f32, salt: u32, threshold: u32, scale: f32) -> f32 {
    return select(0.0, x * scale, dropout_keep(st.seed, salt, i + st.shard * p.n, threshold));
}

@compute @workgroup_size(WG)
fn chain(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) { return; }
//@body
    out0[i] = in0[i % p.lens[0].x];
//@end
}
