// Column reduction of a (R, C) tensor and its backward.
//   reduce_cols_fwd: out[c] = sum_r x[r, c]   (bias gradients: sum of dout over rows)
//   reduce_cols_bwd: dx[r, c] = dout[c]        (the gradient of a column sum is a broadcast)
// Design rule: one invocation per column, rows summed in order: deterministic, no atomics.

struct ReduceParams { rows: u32, cols: u32, _pad0: u32, _pad1: u32, }

override WG: u32 = 64;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<uniform> p: ReduceParams;

@compute @workgroup_size(WG)
fn reduce_cols_fwd(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) { s += inp[r * p.cols + c]; }
    out[c] = s;
}

@compute @workgroup_size(WG)
fn reduce_cols_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // out is dx (R, C), inp is dout (C).
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.rows * p.cols) { out[i] = inp[i % p.cols]; }
}
