// Global-norm gradient clipping:
//   sumsq_partial: partial[offset + w] = sum of g^2 over chunk w of one gradient tensor
//                  (chunk = WG * ITEMS consecutive elements per workgroup)
//   sumsq_many:    the same for up to 7 gradient tensors in one dispatch (their workgroups one
//                  after another), writing the partials one dispatch per tensor would
//   clip_scale:    one workgroup: norm = sqrt(sum of all partials);
//                  out[0] = min(1, max_norm / (norm + 1e-6)) (the factor Adam multiplies
//                  gradients by), out[1] = norm; out[0] = -1 when the norm is not finite
//                  (a NaN or inf gradient): Adam then skips the step
// Design rule: fixed chunks and a fixed tree: the norm is deterministic.

struct SumsqParams { n: u32, offset: u32, _pad0: u32, _pad1: u32, }
struct ClipParams { partials: u32, max_norm: f32, inv_loss_scale: f32, _pad1: u32, }

override WG: u32 = 256;
override ITEMS: u32 = 64;

@group(0) @binding(0) var<storage, read_write> partial: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<uniform> sp: SumsqParams;

@group(0) @binding(0) var<storage, read_write> cs_out: array<f32>;      // (2)
@group(0) @binding(1) var<storage, read> cs_partial: array<f32>;
@group(0) @binding(2) var<uniform> cp: ClipParams;

// sumsq_many's bindings: the partials, its params (count tensors; tensor t's first workgroup
// starts[t] and its length ns[t]; total workgroups), and seven gradients (unused ones bound
// to a used one).
struct SumsqMany { count: u32, offset: u32, total: u32, _pad: u32, starts: array<vec4<u32>, 2>, ns: array<vec4<u32>, 2>, }
@group(0) @binding(0) var<storage, read_write> many_partial: array<f32>;
@group(0) @binding(1) var<uniform> mp: SumsqMany;
@group(0) @binding(2) var<storage, read> g0: array<f32>;
@group(0) @binding(3) var<storage, read> g1: array<f32>;
@group(0) @binding(4) var<storage, read> g2: array<f32>;
@group(0) @binding(5) var<storage, read> g3: array<f32>;
@group(0) @binding(6) var<storage, read> g4: array<f32>;
@group(0) @binding(7) var<storage, read> g5: array<f32>;
@group(0) @binding(8) var<storage, read> g6: array<f32>;

#include "common/reduce_wg.wgsl"

// Element i of gradient t (bindings cannot be indexed).
fn grad_of(t: u32, i: u32) -> f32 {
    switch t {
        case 0u: { return g0[i]; }
        case 1u: { return g1[i]; }
        case 2u: { return g2[i]; }
        case 3u: { return g3[i]; }
        case 4u: { return g4[i]; }
        case 5u: { return g5[i]; }
        default: { return g6[i]; }
    }
}

@compute @workgroup_size(WG)
fn sumsq_many(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let w = wg.x + wg.y * nwg.x;
    if (w >= mp.total) { return; }   // the whole workgroup: the 2D grid's spare ones
    var t = 0u;
    for (var k = 1u; k < mp.count; k++) {
        if (w >= mp.starts[k / 4u][k % 4u]) { t = k; }
    }
    let n = mp.ns[t / 4u][t % 4u];
    let start = (w - mp.starts[t / 4u][t % 4u]) * WG * ITEMS;
    var s = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = start + k * WG + lid;
        if (i < n) { let g = grad_of(t, i); s += g * g; }
    }
    let total = reduce_sum(s, lid);
    if (lid == 0u) { many_partial[mp.offset + w] = total; }
}

@compute @workgroup_size(WG)
fn sumsq_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let w = wg.x + wg.y * nwg.x;
    let start = w * WG * ITEMS;
    var s = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = start + k * WG + lid;
        if (i < sp.n) { let g = grad[i]; s += g * g; }
    }
    let total = reduce_sum(s, lid);
    if (lid == 0u) { partial[sp.offset + w] = total; }
}

@compute @workgroup_size(WG)
fn clip_scale(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < cp.partials; i += WG) { s += cs_partial[i]; }
    let norm = sqrt(reduce_sum(s, lid));
    if (lid == 0u) {
        // By its bits: WGSL lets compilers assume floats are never NaN or inf.
        let finite = (bitcast<u32>(norm) & 0x7f800000u) != 0x7f800000u;
        // Gradients of a scaled loss (mixed precision) are unscaled here: the norm reported and
        // clipped is the true one, and Adam's factor includes 1 / loss scale.
        let true_norm = norm * cp.inv_loss_scale;
        cs_out[0] = select(-1.0, min(1.0, cp.max_norm / (true_norm + 1e-6)) * cp.inv_loss_scale, finite);
        cs_out[1] = true_norm;
    }
}
