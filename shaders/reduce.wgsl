// Column reduction of a (R, C) tensor and its backward.
//   reduce_cols_fwd: out[c] = sum_r x[r, c]   (bias gradients: sum of dout over rows)
//   reduce_cols_bwd: dx[r, c] = dout[c]        (the gradient of a column sum is a broadcast)
// Design rule: a workgroup owns CB adjacent columns (lanes along x read adjacent addresses) and
// RL row lanes; each lane sums every RL-th row, then the lanes combine in a fixed tree:
// deterministic, no atomics, and rows / RL loop iterations per invocation (llvmpipe stops an
// invocation's loops after 65535 iterations in all, so no lane may walk every row).

struct ReduceParams { rows: u32, cols: u32, _pad0: u32, _pad1: u32, }

override CB: u32 = 8;    // columns per workgroup
override RL: u32 = 32;   // row lanes per workgroup, a power of two
override WG: u32 = 256;  // reduce_cols_bwd: invocations per workgroup

// The input's storage: f16 in the form where mixed precision keeps the summed gradient in half
// precision (shaders::with_f16); sums stay f32.
alias InT = f32;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<InT>;
@group(0) @binding(2) var<uniform> p: ReduceParams;

var<workgroup> partial: array<f32, CB * RL>;

@compute @workgroup_size(CB, RL, 1)
fn reduce_cols_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x * CB + lid.x;
    let cc = min(c, p.cols - 1u);
    var s = 0.0;
    for (var r = lid.y; r < p.rows; r += RL) { s += f32(inp[r * p.cols + cc]); }
    let slot = lid.y * CB + lid.x;
    partial[slot] = s;
    workgroupBarrier();
    for (var h = RL / 2u; h > 0u; h >>= 1u) {
        if (lid.y < h) { partial[slot] += partial[slot + h * CB]; }
        workgroupBarrier();
    }
    if (lid.y == 0u && c < p.cols) { out[c] = partial[lid.x]; }
}

@compute @workgroup_size(WG)
fn reduce_cols_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // out is dx (R, C), inp is dout (C).
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.rows * p.cols) { out[i] = f32(inp[i % p.cols]); }
}
