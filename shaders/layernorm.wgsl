// LayerNorm over the last dimension of a (R, C) tensor, biased variance, as in PyTorch.
//   layernorm_fwd: mean_r = sum_c x / C, rstd_r = 1 / sqrt(sum_c (x - mean_r)^2 / C + eps),
//                  y = (x - mean_r) * rstd_r * gamma + beta; saves mean (R) and rstd (R).
//   layernorm_bwd: xhat = (x - mean) * rstd, g = dy * gamma,
//                  dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
//   layernorm_bwd_params: dgamma[c] = sum_r dy * xhat, dbeta[c] = sum_r dy, as reduce.wgsl's
//                  column sums: CB columns x RL row lanes per workgroup, fixed tree, no atomics.
// Design rule: one workgroup per row, WG (a power of two) invocations stride over the columns and
// combine through a workgroup-memory tree; the variance is a second pass for accuracy.

// flags, bit 0 (backward): add dx to what the dx buffer holds (a fused sum, graph/fuse.rs).
struct LayerNormParams { rows: u32, cols: u32, eps: f32, flags: u32, }

override WG: u32 = 64;   // row kernels: invocations per row, a power of two
override CB: u32 = 8;    // layernorm_bwd_params: columns per workgroup
override RL: u32 = 32;   // layernorm_bwd_params: row lanes per workgroup, a power of two

@group(0) @binding(0) var<storage, read_write> y: array<f32>;      // (R, C)
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;   // (R)
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;   // (R)
@group(0) @binding(3) var<storage, read> x: array<f32>;            // (R, C)
@group(0) @binding(4) var<storage, read> gamma: array<f32>;        // (C)
@group(0) @binding(5) var<storage, read> beta: array<f32>;         // (C)
@group(0) @binding(6) var<uniform> p: LayerNormParams;

@group(0) @binding(0) var<storage, read_write> bw_dx: array<f32>;  // (R, C)
@group(0) @binding(1) var<storage, read> bw_x: array<f32>;         // (R, C)
@group(0) @binding(2) var<storage, read> bw_dy: array<f32>;        // (R, C)
@group(0) @binding(3) var<storage, read> bw_mean: array<f32>;      // (R)
@group(0) @binding(4) var<storage, read> bw_rstd: array<f32>;      // (R)
@group(0) @binding(5) var<storage, read> bw_gamma: array<f32>;     // (C)
@group(0) @binding(6) var<uniform> bw_p: LayerNormParams;

@group(0) @binding(0) var<storage, read_write> bp_dgamma: array<f32>; // (C)
@group(0) @binding(1) var<storage, read_write> bp_dbeta: array<f32>;  // (C)
@group(0) @binding(2) var<storage, read> bp_x: array<f32>;       // (R, C)
@group(0) @binding(3) var<storage, read> bp_dy: array<f32>;      // (R, C)
@group(0) @binding(4) var<storage, read> bp_mean: array<f32>;    // (R)
@group(0) @binding(5) var<storage, read> bp_rstd: array<f32>;    // (R)

#include "common/reduce_wg.wgsl"
var<workgroup> part_dg: array<f32, CB * RL>;
var<workgroup> part_db: array<f32, CB * RL>;

@compute @workgroup_size(WG)
fn layernorm_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < p.rows;
    let base = min(row, p.rows - 1u) * p.cols;
    let inv_c = 1.0 / f32(p.cols);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += WG) { s += x[base + c]; }
    let mu = reduce_sum(s, lid) * inv_c;
    var v = 0.0;
    for (var c = lid; c < p.cols; c += WG) { let d = x[base + c] - mu; v += d * d; }
    let r = inverseSqrt(reduce_sum(v, lid) * inv_c + p.eps);
    if (live) {
        for (var c = lid; c < p.cols; c += WG) {
            y[base + c] = (x[base + c] - mu) * r * gamma[c] + beta[c];
        }
        if (lid == 0u) { mean[row] = mu; rstd[row] = r; }
    }
}

@compute @workgroup_size(WG)
fn layernorm_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < bw_p.rows;
    let rr = min(row, bw_p.rows - 1u);
    let base = rr * bw_p.cols;
    let mu = bw_mean[rr];
    let r = bw_rstd[rr];
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = lid; c < bw_p.cols; c += WG) {
        let g = bw_dy[base + c] * bw_gamma[c];
        sg += g;
        sgx += g * (bw_x[base + c] - mu) * r;
    }
    let inv_c = 1.0 / f32(bw_p.cols);
    let mg = reduce_sum(sg, lid) * inv_c;
    let mgx = reduce_sum(sgx, lid) * inv_c;
    if (live) {
        for (var c = lid; c < bw_p.cols; c += WG) {
            let xhat = (bw_x[base + c] - mu) * r;
            let g = bw_dy[base + c] * bw_gamma[c];
            var v = r * (g - mg - xhat * mgx);
            if ((bw_p.flags & 1u) != 0u) { v += bw_dx[base + c]; }
            bw_dx[base + c] = v;
        }
    }
}

@compute @workgroup_size(CB, RL, 1)
fn layernorm_bwd_params(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x * CB + lid.x;
    let cc = min(c, bw_p.cols - 1u);
    var dg = 0.0;
    var db = 0.0;
    for (var row = lid.y; row < bw_p.rows; row += RL) {
        let i = row * bw_p.cols + cc;
        let dy = bp_dy[i];
        dg += dy * (bp_x[i] - bp_mean[row]) * bp_rstd[row];
        db += dy;
    }
    let slot = lid.y * CB + lid.x;
    part_dg[slot] = dg;
    part_db[slot] = db;
    workgroupBarrier();
    for (var h = RL / 2u; h > 0u; h >>= 1u) {
        if (lid.y < h) {
            part_dg[slot] += part_dg[slot + h * CB];
            part_db[slot] += part_db[slot + h * CB];
        }
        workgroupBarrier();
    }
    if (lid.y == 0u && c < bw_p.cols) {
        bp_dgamma[c] = part_dg[lid.x];
        bp_dbeta[c] = part_db[lid.x];
    }
}

// layernorm_fwd_rows / layernorm_bwd_rows: the same results with one invocation per row and no
// workgroup memory or barriers; faster for short rows and on CPU adapters.
@compute @workgroup_size(WG)
fn layernorm_fwd_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let inv_c = 1.0 / f32(p.cols);
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) { s += x[base + c]; }
    let mu = s * inv_c;
    var v = 0.0;
    for (var c = 0u; c < p.cols; c++) { let d = x[base + c] - mu; v += d * d; }
    let r = inverseSqrt(v * inv_c + p.eps);
    for (var c = 0u; c < p.cols; c++) { y[base + c] = (x[base + c] - mu) * r * gamma[c] + beta[c]; }
    mean[row] = mu;
    rstd[row] = r;
}

@compute @workgroup_size(WG)
fn layernorm_bwd_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= bw_p.rows) { return; }
    let base = row * bw_p.cols;
    let mu = bw_mean[row];
    let r = bw_rstd[row];
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = 0u; c < bw_p.cols; c++) {
        let g = bw_dy[base + c] * bw_gamma[c];
        sg += g;
        sgx += g * (bw_x[base + c] - mu) * r;
    }
    let inv_c = 1.0 / f32(bw_p.cols);
    let mg = sg * inv_c;
    let mgx = sgx * inv_c;
    for (var c = 0u; c < bw_p.cols; c++) {
        let xhat = (bw_x[base + c] - mu) * r;
        var v = r * (bw_dy[base + c] * bw_gamma[c] - mg - xhat * mgx);
        if ((bw_p.flags & 1u) != 0u) { v += bw_dx[base + c]; }
        bw_dx[base + c] = v;
    }
}
