// Fused scaled dot-product attention, forward and backward, never storing the (Tq x Tk) scores.
// Layout (B, T, H, D): q (B, Tq, H, D), k and v (B, Tk, H, D), o like q; lse and delta (B, H, Tq).
// Key j is visible to query i when j < key_len[b] (if lengths are given) and, when causal,
// j <= i + (Tk - Tq). A query that sees no key gets o = 0 and zero gradients (no NaN).
//   attention_fwd:   per query row, an online softmax over the keys (running max m and sum l):
//                    o = sum_j softmax(scale q.k_j) v_j, lse = m + log l
//   attention_delta: delta_i = sum_d do_i[d] o_i[d]
//   attention_dq:    per query row: dq = scale sum_j p_ij (do_i.v_j - delta_i) k_j, p_ij = exp(scale q_i.k_j - lse_i)
//   attention_dkv:   per key row:   dv = sum_i p_ij do_i,  dk = scale sum_i p_ij (do_i.v_j - delta_i) q_i
// Without lengths, the lengths binding holds one zero: it is read at index 0 only.
// Design rule: one invocation per row, the row's D values in registers (D a pipeline constant,
// so the driver unrolls the D loops); no workgroup memory, deterministic. Loops run over keys
// (forward, dq) or queries (dkv) only, which keeps llvmpipe's per-invocation loop budget for
// sequences up to 65535.

override WG: u32 = 64;
override D: u32 = 64;      // head dimension, a multiple of 4, at most DMAX
const D4MAX: u32 = 32u;    // DMAX / 4 = 128 / 4

#include "common/attention_fwd_io.wgsl"

// attention_delta: delta (B, H, Tq) from do and o.
@group(0) @binding(0) var<storage, read_write> dl_delta: array<f32>;
@group(0) @binding(1) var<storage, read> dl_do: array<Grad4>;
@group(0) @binding(2) var<storage, read> dl_o: array<O4>;
@group(0) @binding(3) var<uniform> dl_p: AttnParams;

#include "common/attention_bwd_io.wgsl"

fn flat_row(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn attention_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // row = (b * H + h) * Tq + i
    let row = flat_row(gid, nwg);
    if (row >= p.batch * p.heads * p.tq) { return; }
    let i = row % p.tq;
    let h = (row / p.tq) % p.heads;
    let b = row / (p.tq * p.heads);
    let len = select(p.tk, min(key_lens[select(0u, b, p.has_lens != 0u)], p.tk), p.has_lens != 0u);
    let end = key_end(i, len, p);
    var qr: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    let qi = row4(b, i, h, p.tq, p.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = vec4<f32>(q[qi + d]) * p.scale; acc[d] = vec4<f32>(0.0); }
    var m = -3.402823e38;
    var l = 0.0;
    for (var j = 0u; j < end; j++) {
        let kj = row4(b, j, h, p.tk, p.heads);
        var s = 0.0;
        for (var d = 0u; d < D / 4u; d++) { s += dot(qr[d], vec4<f32>(k[kj + d])); }
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var d = 0u; d < D / 4u; d++) { acc[d] = acc[d] * corr + pj * vec4<f32>(v[kj + d]); }
        m = m_new;
    }
    let inv = select(0.0, 1.0 / l, end > 0u);
    for (var d = 0u; d < D / 4u; d++) { o[qi + d] = O4(acc[d] * inv); }
    // No visible key: lse = +max so that every recomputed probability is exp(-huge) = 0.
    lse[row] = select(3.402823e38, m + log(l), end > 0u);
}

@compute @workgroup_size(WG)
fn attention_delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_row(gid, nwg);
    if (row >= dl_p.batch * dl_p.heads * dl_p.tq) { return; }
    let i = row % dl_p.tq;
    let h = (row / dl_p.tq) % dl_p.heads;
    let b = row / (dl_p.tq * dl_p.heads);
    let qi = row4(b, i, h, dl_p.tq, dl_p.heads);
    var s = 0.0;
    for (var d = 0u; d < D / 4u; d++) { s += dot(vec4<f32>(dl_do[qi + d]), vec4<f32>(dl_o[qi + d])); }
    dl_delta[row] = s;
}

@compute @workgroup_size(WG)
fn attention_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_row(gid, nwg);
    if (row >= bp.batch * bp.heads * bp.tq) { return; }
    let i = row % bp.tq;
    let h = (row / bp.tq) % bp.heads;
    let b = row / (bp.tq * bp.heads);
    let len = select(bp.tk, min(blens[select(0u, b, bp.has_lens != 0u)], bp.tk), bp.has_lens != 0u);
    let end = key_end(i, len, bp);
    var qr: array<vec4<f32>, D4MAX>;
    var dor: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    let qi = row4(b, i, h, bp.tq, bp.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = vec4<f32>(bq[qi + d]) * bp.scale; dor[d] = vec4<f32>(bdo[qi + d]); acc[d] = vec4<f32>(0.0); }
    let l = blse[row];
    let dlt = bdelta[row];
    for (var j = 0u; j < end; j++) {
        let kj = row4(b, j, h, bp.tk, bp.heads);
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D / 4u; d++) { s += dot(qr[d], vec4<f32>(bk[kj + d])); dp += dot(dor[d], vec4<f32>(bv[kj + d])); }
        let ds = exp(s - l) * (dp - dlt);
        for (var d = 0u; d < D / 4u; d++) { acc[d] += ds * vec4<f32>(bk[kj + d]); }
    }
    for (var d = 0u; d < D / 4u; d++) { dq_out[qi + d] = Grad4(acc[d] * bp.scale); }
}

@compute @workgroup_size(WG)
fn attention_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // row = (b * H + h) * Tk + j
    let row = flat_row(gid, nwg);
    if (row >= cp.batch * cp.heads * cp.tk) { return; }
    let j = row % cp.tk;
    let h = (row / cp.tk) % cp.heads;
    let b = row / (cp.tk * cp.heads);
    let len = select(cp.tk, min(clens[select(0u, b, cp.has_lens != 0u)], cp.tk), cp.has_lens != 0u);
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var dk: array<vec4<f32>, D4MAX>;
    var dv: array<vec4<f32>, D4MAX>;
    let kj = row4(b, j, h, cp.tk, cp.heads);
    for (var d = 0u; d < D / 4u; d++) {
        kr[d] = vec4<f32>(ck[kj + d]) * cp.scale;
        vr[d] = vec4<f32>(cv[kj + d]);
        dk[d] = vec4<f32>(0.0);
        dv[d] = vec4<f32>(0.0);
    }
    // Queries that see key j: all when not causal, else i >= j - (Tk - Tq).
    var start = 0u;
    if (cp.causal != 0u && j > cp.tk - cp.tq) { start = j - (cp.tk - cp.tq); }
    if (j >= len) { start = cp.tq; }
    for (var i = start; i < cp.tq; i++) {
        let qi = row4(b, i, h, cp.tq, cp.heads);
        let lrow = (b * cp.heads + h) * cp.tq + i;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D / 4u; d++) { s += dot(vec4<f32>(cq[qi + d]), kr[d]); dp += dot(vec4<f32>(cdo[qi + d]), vr[d]); }
        let pij = exp(s - clse[lrow]);
        let ds = pij * (dp - cdelta[lrow]);
        for (var d = 0u; d < D / 4u; d++) {
            dv[d] += pij * vec4<f32>(cdo[qi + d]);
            dk[d] += ds * vec4<f32>(cq[qi + d]);
        }
    }
    for (var d = 0u; d < D / 4u; d++) { dk_out[kj + d] = Grad4(dk[d] * cp.scale); dv_out[kj + d] = Grad4(dv[d]); }
}
