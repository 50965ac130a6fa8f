// Fused attention for GPUs, blocked the way FlashAttention-2 blocks it (without matrix units):
// a workgroup owns WG consecutive query rows of one (batch, head) (dk/dv: WG key rows); the
// other side's rows are staged in workgroup memory, BK rows at a time, by loads in which
// neighbouring invocations read neighbouring vec4s; each invocation keeps its own row's vectors
// and accumulators in registers and reads the staged rows that every invocation shares.
// The forward scores a whole tile first, then rescales its accumulator once per tile, not once
// per key. Same layout, masks and outputs as attention.wgsl (see there); its attention_delta
// runs before dq and dkv. No atomics: every output row is written once, by its own invocation.
// Workgroup memory is 15.5 KiB, inside WebGPU's default 16 KiB.

override WG: u32 = 64;
override D: u32 = 64;      // head dimension, a multiple of 4, at most 128
override BK: u32 = 16;     // rows per staged tile: BK * D / 4 <= TILE4, at most BKMAX
const D4MAX: u32 = 32u;
const TILE4: u32 = 480u;
const BKMAX: u32 = 64u;

var<workgroup> ta: array<vec4<f32>, TILE4>;   // K (forward, dq) or Q (dkv)
var<workgroup> tb: array<vec4<f32>, TILE4>;   // V (forward, dq) or dO (dkv)
var<workgroup> tld: array<vec2<f32>, BKMAX>;  // (lse, delta) of the staged query rows (dkv)

#include "common/attention_fwd_io.wgsl"
#include "common/attention_bwd_io.wgsl"

// The workgroup's (batch, head) and first row, from the flat workgroup index over
// batch * heads * ceil(rows / WG) workgroups; None (x = 0xffffffff) past the end.
fn block_of(wid: vec3<u32>, nwg: vec3<u32>, rows: u32, prm: AttnParams) -> vec3<u32> {
    let blocks = (rows + WG - 1u) / WG;
    let w = wid.x + wid.y * nwg.x;
    if (w >= prm.batch * prm.heads * blocks) { return vec3<u32>(0xffffffffu, 0u, 0u); }
    let bh = w / blocks;
    return vec3<u32>(bh / prm.heads, bh % prm.heads, (w % blocks) * WG);
}

@compute @workgroup_size(WG)
fn attention_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, p.tq, p);
    if (blk.x == 0xffffffffu) { return; }
    let b = blk.x;
    let h = blk.y;
    let i = blk.z + lid;
    let live = i < p.tq;
    let len = select(p.tk, min(key_lens[select(0u, b, p.has_lens != 0u)], p.tk), p.has_lens != 0u);
    let end = select(0u, key_end(i, len, p), live);
    // Keys any row of the block sees: the last row's (ends grow with i).
    let wend = key_end(min(blk.z + WG, p.tq) - 1u, len, p);
    var qr: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    let qi = row4(b, min(i, p.tq - 1u), h, p.tq, p.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = vec4<f32>(q[qi + d]) * p.scale; acc[d] = vec4<f32>(0.0); }
    var m = -3.402823e38;
    var l = 0.0;
    var s: array<f32, BKMAX>;
    for (var t0 = 0u; t0 < wend; t0 += BK) {
        workgroupBarrier();
        for (var x = lid; x < BK * (D / 4u); x += WG) {
            let j = t0 + x / (D / 4u);
            let src = row4(b, min(j, p.tk - 1u), h, p.tk, p.heads) + x % (D / 4u);
            ta[x] = vec4<f32>(k[src]);
            tb[x] = vec4<f32>(v[src]);
        }
        workgroupBarrier();
        let n = min(BK, end - min(end, t0));
        var mb = m;
        for (var jj = 0u; jj < n; jj++) {
            var sc = 0.0;
            for (var d = 0u; d < D / 4u; d++) { sc += dot(qr[d], ta[jj * (D / 4u) + d]); }
            s[jj] = sc;
            mb = max(mb, sc);
        }
        let corr = exp(m - mb);
        l *= corr;
        for (var d = 0u; d < D / 4u; d++) { acc[d] *= corr; }
        for (var jj = 0u; jj < n; jj++) {
            let pj = exp(s[jj] - mb);
            l += pj;
            for (var d = 0u; d < D / 4u; d++) { acc[d] += pj * tb[jj * (D / 4u) + d]; }
        }
        m = mb;
    }
    if (!live) { return; }
    let inv = select(0.0, 1.0 / l, end > 0u);
    for (var d = 0u; d < D / 4u; d++) { o[qi + d] = O4(acc[d] * inv); }
    // No visible key: lse = +max so that every recomputed probability is exp(-huge) = 0.
    lse[(b * p.heads + h) * p.tq + i] = select(3.402823e38, m + log(l), end > 0u);
}

@compute @workgroup_size(WG)
fn attention_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, bp.tq, bp);
    if (blk.x == 0xffffffffu) { return; }
    let b = blk.x;
    let h = blk.y;
    let i = blk.z + lid;
    let live = i < bp.tq;
    let len = select(bp.tk, min(blens[select(0u, b, bp.has_lens != 0u)], bp.tk), bp.has_lens != 0u);
    let end = select(0u, key_end(i, len, bp), live);
    let wend = key_end(min(blk.z + WG, bp.tq) - 1u, len, bp);
    var qr: array<vec4<f32>, D4MAX>;
    var dor: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    let qi = row4(b, min(i, bp.tq - 1u), h, bp.tq, bp.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = vec4<f32>(bq[qi + d]) * bp.scale; dor[d] = vec4<f32>(bdo[qi + d]); acc[d] = vec4<f32>(0.0); }
    let lrow = (b * bp.heads + h) * bp.tq + min(i, bp.tq - 1u);
    let l = blse[lrow];
    let dlt = bdelta[lrow];
    for (var t0 = 0u; t0 < wend; t0 += BK) {
        workgroupBarrier();
        for (var x = lid; x < BK * (D / 4u); x += WG) {
            let j = t0 + x / (D / 4u);
            let src = row4(b, min(j, bp.tk - 1u), h, bp.tk, bp.heads) + x % (D / 4u);
            ta[x] = vec4<f32>(bk[src]);
            tb[x] = vec4<f32>(bv[src]);
        }
        workgroupBarrier();
        let n = min(BK, end - min(end, t0));
        for (var jj = 0u; jj < n; jj++) {
            var sc = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < D / 4u; d++) {
                sc += dot(qr[d], ta[jj * (D / 4u) + d]);
                dp += dot(dor[d], tb[jj * (D / 4u) + d]);
            }
            let ds = exp(sc - l) * (dp - dlt);
            for (var d = 0u; d < D / 4u; d++) { acc[d] += ds * ta[jj * (D / 4u) + d]; }
        }
    }
    if (!live) { return; }
    for (var d = 0u; d < D / 4u; d++) { dq_out[qi + d] = Grad4(acc[d] * bp.scale); }
}

@compute @workgroup_size(WG)
fn attention_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let blk = block_of(wid, nwg, cp.tk, cp);
    if (blk.x == 0xffffffffu) { return; }
    let b = blk.x;
    let h = blk.y;
    let j = blk.z + lid;
    let len = select(cp.tk, min(clens[select(0u, b, cp.has_lens != 0u)], cp.tk), cp.has_lens != 0u);
    // Queries that see key j: i >= j - (Tk - Tq) when causal; none past the key length.
    let shift = cp.tk - cp.tq;
    var start = 0u;
    if (cp.causal != 0u && j > shift) { start = j - shift; }
    if (j >= len || j >= cp.tk) { start = cp.tq; }
    // The block's first query: that of its first key (starts grow with j).
    var wstart = 0u;
    if (cp.causal != 0u && blk.z > shift) { wstart = min(blk.z - shift, cp.tq); }
    if (blk.z >= len) { wstart = cp.tq; }
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var dk: array<vec4<f32>, D4MAX>;
    var dv: array<vec4<f32>, D4MAX>;
    let kj = row4(b, min(j, cp.tk - 1u), h, cp.tk, cp.heads);
    for (var d = 0u; d < D / 4u; d++) {
        kr[d] = vec4<f32>(ck[kj + d]) * cp.scale;
        vr[d] = vec4<f32>(cv[kj + d]);
        dk[d] = vec4<f32>(0.0);
        dv[d] = vec4<f32>(0.0);
    }
    for (var t0 = wstart; t0 < cp.tq; t0 += BK) {
        workgroupBarrier();
        for (var x = lid; x < BK * (D / 4u); x += WG) {
            let i = min(t0 + x / (D / 4u), cp.tq - 1u);
            let src = row4(b, i, h, cp.tq, cp.heads) + x % (D / 4u);
            ta[x] = vec4<f32>(cq[src]);
            tb[x] = vec4<f32>(cdo[src]);
        }
        for (var x = lid; x < BK; x += WG) {
            let lrow = (b * cp.heads + h) * cp.tq + min(t0 + x, cp.tq - 1u);
            tld[x] = vec2<f32>(clse[lrow], cdelta[lrow]);
        }
        workgroupBarrier();
        let lo = max(start, t0) - t0;
        let hi = min(t0 + BK, cp.tq) - t0;
        for (var ii = lo; ii < hi; ii++) {
            var sc = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < D / 4u; d++) {
                sc += dot(ta[ii * (D / 4u) + d], kr[d]);
                dp += dot(tb[ii * (D / 4u) + d], vr[d]);
            }
            let pij = exp(sc - tld[ii].x);
            let ds = pij * (dp - tld[ii].y);
            for (var d = 0u; d < D / 4u; d++) {
                dv[d] += pij * tb[ii * (D / 4u) + d];
                dk[d] += ds * ta[ii * (D / 4u) + d];
            }
        }
    }
    if (j >= cp.tk) { return; }
    for (var d = 0u; d < D / 4u; d++) { dk_out[kj + d] = Grad4(dk[d] * cp.scale); dv_out[kj + d] = Grad4(dv[d]); }
}
