// Fused attention for adapters with subgroups of a fixed size SG: the same results, layout and
// params as attention.wgsl's attention_fwd, attention_dq and attention_dkv (attention_delta is
// shared). A separate file because a module that calls subgroup builtins does not compile where
// subgroups are missing (GL, some browsers).
// Design rule: a subgroup owns R * SG consecutive rows of one (batch, head), each lane R of them
// (t0, t0 + SG, ...). Walking the other side in blocks of SG rows, each lane loads ONE row of the
// block and the subgroup shares them with subgroupShuffle, instead of every lane loading every
// row: on lavapipe, which turns a load whose address it cannot prove uniform into one load per
// lane, that is SG times fewer loads, and each shared row then serves the lane's R rows. Rows are
// padded per (batch, head) to a multiple of R * SG so that subgroups never straddle two heads;
// padding rows compute on clamped rows and write nothing. Every loop bound is uniform across the
// subgroup (subgroupMax/Min of the lanes' ranges) and rows mask what they may not see.
// R is a constant on purpose: as an override set below its arrays' size, the backward ran 8x
// slower on lavapipe (llvmpipe then keeps the per-row arrays out of registers).

override WG: u32 = 64;     // a multiple of SG
override D: u32 = 64;      // head dimension, a multiple of 4, at most DMAX
override SG: u32 = 8;      // the subgroup size
const R: u32 = 4u;         // rows per lane (kernels/attention.rs SG_ROWS_PER_LANE)
const D4MAX: u32 = 32u;    // DMAX / 4 = 128 / 4
const NEG_BIG: f32 = -3.402823e38;

#include "common/attention_fwd_io.wgsl"
#include "common/attention_bwd_io.wgsl"

// The R rows this lane owns (t0, t0 + SG, ...) for rows of `count` per (batch, head), padded to
// blocks of R * SG; rows at or past `count` are padding. `ok` is false past the grid's end.
struct Slots { b: u32, h: u32, t0: u32, ok: bool, }

fn slots_of(gid: vec3<u32>, nwg: vec3<u32>, lane: u32, count: u32, prm: AttnParams) -> Slots {
    let slot = gid.x + gid.y * nwg.x * WG;
    let blocks = (count + R * SG - 1u) / (R * SG);
    let blk = slot / SG;
    let bh = blk / blocks;
    return Slots(bh / prm.heads, bh % prm.heads, (blk % blocks) * R * SG + lane, bh < prm.batch * prm.heads);
}

fn key_len(b: u32, prm: AttnParams, lens_b: u32) -> u32 {
    return select(prm.tk, min(lens_b, prm.tk), prm.has_lens != 0u);
}

// For each of the lane's query rows, the keys it sees: [0, end); none for a padding row.
fn key_ends(s: Slots, prm: AttnParams, len: u32) -> array<u32, R> {
    var end: array<u32, R>;
    for (var r = 0u; r < R; r++) {
        let t = s.t0 + r * SG;
        var e = len;
        if (prm.causal != 0u) { e = min(e, t + (prm.tk - prm.tq) + 1u); }
        if (t >= prm.tq) { e = 0u; }
        end[r] = e;
    }
    return end;
}

// The furthest key any row of the subgroup sees: the walk's uniform bound.
fn subgroup_end(end: array<u32, R>) -> u32 {
    var e = 0u;
    for (var r = 0u; r < R; r++) { e = max(e, end[r]); }
    return subgroupMax(e);
}

@compute @workgroup_size(WG)
fn attention_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let s = slots_of(gid, nwg, lane, p.tq, p);
    if (!s.ok) { return; }   // uniform per subgroup: the grid holds whole blocks
    let len = key_len(s.b, p, key_lens[select(0u, s.b, p.has_lens != 0u)]);
    let end = key_ends(s, p, len);
    let end_max = subgroup_end(end);
    var qr: array<array<vec4<f32>, D4MAX>, R>;
    var acc: array<array<vec4<f32>, D4MAX>, R>;
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var ks: array<vec4<f32>, D4MAX>;
    var vs: array<vec4<f32>, D4MAX>;
    var m: array<f32, R>;
    var l: array<f32, R>;
    for (var r = 0u; r < R; r++) {
        let qi = row4(s.b, min(s.t0 + r * SG, p.tq - 1u), s.h, p.tq, p.heads);
        for (var d = 0u; d < D / 4u; d++) { qr[r][d] = vec4<f32>(q[qi + d]) * p.scale; acc[r][d] = vec4<f32>(0.0); }
        m[r] = NEG_BIG;
        l[r] = 0.0;
    }
    for (var j0 = 0u; j0 < end_max; j0 += SG) {
        let kj = row4(s.b, min(j0 + lane, p.tk - 1u), s.h, p.tk, p.heads);
        for (var d = 0u; d < D / 4u; d++) { kr[d] = vec4<f32>(k[kj + d]); vr[d] = vec4<f32>(v[kj + d]); }
        let n = min(SG, end_max - j0);
        for (var c = 0u; c < n; c++) {
            for (var d = 0u; d < D / 4u; d++) { ks[d] = subgroupShuffle(kr[d], c); vs[d] = subgroupShuffle(vr[d], c); }
            for (var r = 0u; r < R; r++) {
                var sc = 0.0;
                for (var d = 0u; d < D / 4u; d++) { sc += dot(qr[r][d], ks[d]); }
                let seen = j0 + c < end[r];
                let m_new = max(m[r], select(NEG_BIG, sc, seen));
                let corr = exp(m[r] - m_new);
                let pj = select(0.0, exp(sc - m_new), seen);
                l[r] = l[r] * corr + pj;
                for (var d = 0u; d < D / 4u; d++) { acc[r][d] = acc[r][d] * corr + pj * vs[d]; }
                m[r] = m_new;
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        let t = s.t0 + r * SG;
        if (t >= p.tq) { continue; }
        let qi = row4(s.b, t, s.h, p.tq, p.heads);
        let inv = select(0.0, 1.0 / l[r], end[r] > 0u);
        for (var d = 0u; d < D / 4u; d++) { o[qi + d] = O4(acc[r][d] * inv); }
        lse[(s.b * p.heads + s.h) * p.tq + t] = select(3.402823e38, m[r] + log(l[r]), end[r] > 0u);
    }
}

@compute @workgroup_size(WG)
fn attention_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(subgroup_invocation_id) lane: u32) {
    let s = slots_of(gid, nwg, lane, bp.tq, bp);
    if (!s.ok) { return; }
    let len = key_len(s.b, bp, blens[select(0u, s.b, bp.has_lens != 0u)]);
    let end = key_ends(s, bp, len);
    let end_max = subgroup_end(end);
    var qr: array<array<vec4<f32>, D4MAX>, R>;
    var dor: array<array<vec4<f32>, D4MAX>, R>;
    var acc: array<array<vec4<f32>, D4MAX>, R>;
    var l: array<f32, R>;
    var dlt: array<f32, R>;
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var ks: array<vec4<f32>, D4MAX>;
    var vs: array<vec4<f32>, D4MAX>;
    for (var r = 0u; r < R; r++) {
        let t = min(s.t0 + r * SG, bp.tq - 1u);
        let qi = row4(s.b, t, s.h, bp.tq, bp.heads);
        for (var d = 0u; d < D / 4u; d++) {
            qr[r][d] = vec4<f32>(bq[qi + d]) * bp.scale;
            dor[r][d] = vec4<f32>(bdo[qi + d]);
            acc[r][d] = vec4<f32>(0.0);
        }
        let row = (s.b * bp.heads + s.h) * bp.tq + t;
        l[r] = blse[row];
        dlt[r] = bdelta[row];
    }
    for (var j0 = 0u; j0 < end_max; j0 += SG) {
        let kj = row4(s.b, min(j0 + lane, bp.tk - 1u), s.h, bp.tk, bp.heads);
        for (var d = 0u; d < D / 4u; d++) { kr[d] = vec4<f32>(bk[kj + d]); vr[d] = vec4<f32>(bv[kj + d]); }
        let n = min(SG, end_max - j0);
        for (var c = 0u; c < n; c++) {
            for (var d = 0u; d < D / 4u; d++) { ks[d] = subgroupShuffle(kr[d], c); vs[d] = subgroupShuffle(vr[d], c); }
            for (var r = 0u; r < R; r++) {
                var sc = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < D / 4u; d++) { sc += dot(qr[r][d], ks[d]); dp += dot(dor[r][d], vs[d]); }
                let ds = select(0.0, exp(sc - l[r]) * (dp - dlt[r]), j0 + c < end[r]);
                for (var d = 0u; d < D / 4u; d++) { acc[r][d] += ds * ks[d]; }
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        let t = s.t0 + r * SG;
        if (t >= bp.tq) { continue; }
        let qi = row4(s.b, t, s.h, bp.tq, bp.heads);
        for (var d = 0u; d < D / 4u; d++) { dq_out[qi + d] = Grad4(acc[r][d] * bp.scale); }
    }
}

@compute @workgroup_size(WG)
fn attention_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let s = slots_of(gid, nwg, lane, cp.tk, cp);
    if (!s.ok) { return; }
    let len = key_len(s.b, cp, clens[select(0u, s.b, cp.has_lens != 0u)]);
    // Queries that see key j: [start, Tq); none for a padding key or a padding row.
    var start: array<u32, R>;
    var start_any = cp.tq;
    for (var r = 0u; r < R; r++) {
        let j = s.t0 + r * SG;
        var st = 0u;
        if (cp.causal != 0u && j > cp.tk - cp.tq) { st = j - (cp.tk - cp.tq); }
        if (j >= len) { st = cp.tq; }
        start[r] = st;
        start_any = min(start_any, st);
    }
    let start_min = subgroupMin(start_any);
    var kr: array<array<vec4<f32>, D4MAX>, R>;
    var vr: array<array<vec4<f32>, D4MAX>, R>;
    var dk: array<array<vec4<f32>, D4MAX>, R>;
    var dv: array<array<vec4<f32>, D4MAX>, R>;
    var qr: array<vec4<f32>, D4MAX>;
    var dor: array<vec4<f32>, D4MAX>;
    var qs: array<vec4<f32>, D4MAX>;
    var os: array<vec4<f32>, D4MAX>;
    for (var r = 0u; r < R; r++) {
        let kj = row4(s.b, min(s.t0 + r * SG, cp.tk - 1u), s.h, cp.tk, cp.heads);
        for (var d = 0u; d < D / 4u; d++) {
            kr[r][d] = vec4<f32>(ck[kj + d]) * cp.scale;
            vr[r][d] = vec4<f32>(cv[kj + d]);
            dk[r][d] = vec4<f32>(0.0);
            dv[r][d] = vec4<f32>(0.0);
        }
    }
    let rows = (s.b * cp.heads + s.h) * cp.tq;
    for (var i0 = start_min; i0 < cp.tq; i0 += SG) {
        let il = min(i0 + lane, cp.tq - 1u);
        let qi = row4(s.b, il, s.h, cp.tq, cp.heads);
        for (var d = 0u; d < D / 4u; d++) { qr[d] = vec4<f32>(cq[qi + d]); dor[d] = vec4<f32>(cdo[qi + d]); }
        let lse_l = clse[rows + il];
        let delta_l = cdelta[rows + il];
        let n = min(SG, cp.tq - i0);
        for (var c = 0u; c < n; c++) {
            for (var d = 0u; d < D / 4u; d++) { qs[d] = subgroupShuffle(qr[d], c); os[d] = subgroupShuffle(dor[d], c); }
            let lse_c = subgroupShuffle(lse_l, c);
            let delta_c = subgroupShuffle(delta_l, c);
            for (var r = 0u; r < R; r++) {
                var sc = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < D / 4u; d++) { sc += dot(kr[r][d], qs[d]); dp += dot(vr[r][d], os[d]); }
                let pij = select(0.0, exp(sc - lse_c), i0 + c >= start[r]);
                let ds = pij * (dp - delta_c);
                for (var d = 0u; d < D / 4u; d++) {
                    dv[r][d] += pij * os[d];
                    dk[r][d] += ds * qs[d];
                }
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        let j = s.t0 + r * SG;
        if (j >= cp.tk) { continue; }
        let kj = row4(s.b, j, s.h, cp.tk, cp.heads);
        for (var d = 0u; d < D / 4u; d++) { dk_out[kj + d] = Grad4(dk[r][d] * cp.scale); dv_out[kj + d] = Grad4(dv[r][d]); }
    }
}
