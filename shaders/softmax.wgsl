// Softmax over the last dimension of a (R, C) tensor, numerically stable.
//   softmax_fwd: y[r, c] = exp(x[r, c] - max_r) / sum_c exp(x[r, c] - max_r)
//   softmax_bwd: dx[r, c] = y[r, c] * (dy[r, c] - sum_c dy[r, c] * y[r, c])
// Design rule: one workgroup per row, WG (a power of two) invocations stride over the columns
// and combine through a workgroup-memory tree. Rows map to a 2D grid of workgroups.

struct SoftmaxParams { rows: u32, cols: u32, _pad0: u32, _pad1: u32, }

override WG: u32 = 64;

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> p: SoftmaxParams;

@group(0) @binding(0) var<storage, read_write> bw_dx: array<f32>;
@group(0) @binding(1) var<storage, read> bw_y: array<f32>;
@group(0) @binding(2) var<storage, read> bw_dy: array<f32>;
@group(0) @binding(3) var<uniform> bw_p: SoftmaxParams;

#include "common/reduce_wg.wgsl"

@compute @workgroup_size(WG)
fn softmax_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < p.rows;
    let base = min(row, p.rows - 1u) * p.cols;
    var m = -3.402823e38;
    for (var c = lid; c < p.cols; c += WG) { m = max(m, x[base + c]); }
    m = reduce_max(m, lid);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += WG) { s += exp(x[base + c] - m); }
    s = reduce_sum(s, lid);
    let inv = 1.0 / s;
    if (live) {
        for (var c = lid; c < p.cols; c += WG) { y[base + c] = exp(x[base + c] - m) * inv; }
    }
}

@compute @workgroup_size(WG)
fn softmax_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < bw_p.rows;
    let base = min(row, bw_p.rows - 1u) * bw_p.cols;
    var d = 0.0;
    for (var c = lid; c < bw_p.cols; c += WG) { d += bw_dy[base + c] * bw_y[base + c]; }
    d = reduce_sum(d, lid);
    if (live) {
        for (var c = lid; c < bw_p.cols; c += WG) {
            bw_dx[base + c] = bw_y[base + c] * (bw_dy[base + c] - d);
        }
    }
}

// softmax_fwd_rows / softmax_bwd_rows: the same results with one invocation per row and no
// workgroup memory or barriers; faster for short rows (attention over few tokens), and on CPU
// adapters, where barriers are expensive.
@compute @workgroup_size(WG)
fn softmax_fwd_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var m = -3.402823e38;
    for (var c = 0u; c < p.cols; c++) { m = max(m, x[base + c]); }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) { s += exp(x[base + c] - m); }
    let inv = 1.0 / s;
    for (var c = 0u; c < p.cols; c++) { y[base + c] = exp(x[base + c] - m) * inv; }
}

@compute @workgroup_size(WG)
fn softmax_bwd_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= bw_p.rows) { return; }
    let base = row * bw_p.cols;
    var d = 0.0;
    for (var c = 0u; c < bw_p.cols; c++) { d += bw_dy[base + c] * bw_y[base + c]; }
    for (var c = 0u; c < bw_p.cols; c++) { bw_dx[base + c] = bw_y[base + c] * (bw_dy[base + c] - d); }
}
