// Fused attention for adapters with subgroups of a fixed size SG: the same results, layout and
// params as attention.wgsl's attention_fwd, attention_dq and attention_dkv (attention_delta is
// shared). A separate file because a module that calls subgroup builtins does not compile where
// subgroups are missing (GL, some browsers).
// Design rule: a subgroup owns SG consecutive rows of one (batch, head). Walking the other side
// in blocks of SG rows, each lane loads ONE row of the block and the subgroup shares them with
// subgroupShuffle, instead of every lane loading every row: on lavapipe, which turns a load whose
// address it cannot prove uniform into one load per lane, that is SG times fewer loads. Rows are
// padded per (batch, head) to a multiple of SG so that subgroups never straddle two heads; the
// padding lanes compute on clamped rows and write nothing. Every loop bound is uniform across the
// subgroup (subgroupMax/Min of the lanes' ranges) and lanes mask what they may not see.

struct AttnParams { batch: u32, heads: u32, tq: u32, tk: u32, causal: u32, has_lens: u32, scale: f32, _pad: u32, }

override WG: u32 = 64;     // a multiple of SG
override D: u32 = 64;      // head dimension, a multiple of 4, at most DMAX
override SG: u32 = 8;      // the subgroup size
const D4MAX: u32 = 32u;    // DMAX / 4 = 128 / 4
const NEG_BIG: f32 = -3.402823e38;

@group(0) @binding(0) var<storage, read_write> o: array<vec4<f32>>;     // (B, Tq, H, D)
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;         // (B, H, Tq)
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> key_lens: array<u32>;          // (B)
@group(0) @binding(6) var<uniform> p: AttnParams;

@group(0) @binding(0) var<storage, read_write> dq_out: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bq: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bk: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bdo: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> blse: array<f32>;
@group(0) @binding(6) var<storage, read> bdelta: array<f32>;
@group(0) @binding(7) var<storage, read> blens: array<u32>;
@group(0) @binding(8) var<uniform> bp: AttnParams;

@group(0) @binding(0) var<storage, read_write> dk_out: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dv_out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cq: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> ck: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> cv: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> cdo: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> clse: array<f32>;
@group(0) @binding(7) var<storage, read> cdelta: array<f32>;
@group(0) @binding(8) var<storage, read> clens: array<u32>;
@group(0) @binding(9) var<uniform> cp: AttnParams;

fn row4(b: u32, t: u32, h: u32, tokens: u32, heads: u32) -> u32 {
    return ((b * tokens + t) * heads + h) * (D / 4u);
}

// The row this lane owns: (b, h, index, live) for rows of `count` per (batch, head), padded to
// blocks of SG. `ok` is false for lanes past the end of the whole grid (whole subgroups).
struct Slot { b: u32, h: u32, t: u32, live: bool, ok: bool, }

fn slot_of(gid: vec3<u32>, nwg: vec3<u32>, lane: u32, count: u32, prm: AttnParams) -> Slot {
    let slot = gid.x + gid.y * nwg.x * WG;
    let blocks = (count + SG - 1u) / SG;
    let blk = slot / SG;
    let t = (blk % blocks) * SG + lane;
    let bh = blk / blocks;
    return Slot(bh / prm.heads, bh % prm.heads, min(t, count - 1u), t < count, bh < prm.batch * prm.heads);
}

fn key_len(b: u32, prm: AttnParams, lens_b: u32) -> u32 {
    return select(prm.tk, min(lens_b, prm.tk), prm.has_lens != 0u);
}

@compute @workgroup_size(WG)
fn attention_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let s = slot_of(gid, nwg, lane, p.tq, p);
    if (!s.ok) { return; }   // uniform per subgroup: the grid holds whole blocks
    let len = key_len(s.b, p, key_lens[min(s.b, p.batch - 1u)]);
    var end = len;
    if (p.causal != 0u) { end = min(end, s.t + (p.tk - p.tq) + 1u); }
    if (!s.live) { end = 0u; }
    let end_max = subgroupMax(end);
    var qr: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    let qi = row4(s.b, s.t, s.h, p.tq, p.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = q[qi + d] * p.scale; acc[d] = vec4<f32>(0.0); }
    var m = NEG_BIG;
    var l = 0.0;
    for (var j0 = 0u; j0 < end_max; j0 += SG) {
        let kj = row4(s.b, min(j0 + lane, p.tk - 1u), s.h, p.tk, p.heads);
        for (var d = 0u; d < D / 4u; d++) { kr[d] = k[kj + d]; vr[d] = v[kj + d]; }
        let n = min(SG, end_max - j0);
        for (var c = 0u; c < n; c++) {
            var sc = 0.0;
            for (var d = 0u; d < D / 4u; d++) { sc += dot(qr[d], subgroupShuffle(kr[d], c)); }
            let seen = j0 + c < end;
            let m_new = max(m, select(NEG_BIG, sc, seen));
            let corr = exp(m - m_new);
            let pj = select(0.0, exp(sc - m_new), seen);
            l = l * corr + pj;
            for (var d = 0u; d < D / 4u; d++) { acc[d] = acc[d] * corr + pj * subgroupShuffle(vr[d], c); }
            m = m_new;
        }
    }
    if (!s.live) { return; }
    let inv = select(0.0, 1.0 / l, end > 0u);
    for (var d = 0u; d < D / 4u; d++) { o[qi + d] = acc[d] * inv; }
    lse[(s.b * p.heads + s.h) * p.tq + s.t] = select(3.402823e38, m + log(l), end > 0u);
}

@compute @workgroup_size(WG)
fn attention_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(subgroup_invocation_id) lane: u32) {
    let s = slot_of(gid, nwg, lane, bp.tq, bp);
    if (!s.ok) { return; }
    let len = key_len(s.b, bp, blens[min(s.b, bp.batch - 1u)]);
    var end = len;
    if (bp.causal != 0u) { end = min(end, s.t + (bp.tk - bp.tq) + 1u); }
    if (!s.live) { end = 0u; }
    let end_max = subgroupMax(end);
    var qr: array<vec4<f32>, D4MAX>;
    var dor: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var ks: array<vec4<f32>, D4MAX>;   // key c's row, shuffled once for both of its uses
    let qi = row4(s.b, s.t, s.h, bp.tq, bp.heads);
    for (var d = 0u; d < D / 4u; d++) { qr[d] = bq[qi + d] * bp.scale; dor[d] = bdo[qi + d]; acc[d] = vec4<f32>(0.0); }
    let row = (s.b * bp.heads + s.h) * bp.tq + s.t;
    let l = blse[row];
    let dlt = bdelta[row];
    for (var j0 = 0u; j0 < end_max; j0 += SG) {
        let kj = row4(s.b, min(j0 + lane, bp.tk - 1u), s.h, bp.tk, bp.heads);
        for (var d = 0u; d < D / 4u; d++) { kr[d] = bk[kj + d]; vr[d] = bv[kj + d]; }
        let n = min(SG, end_max - j0);
        for (var c = 0u; c < n; c++) {
            var sc = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < D / 4u; d++) {
                let kc = subgroupShuffle(kr[d], c);
                ks[d] = kc;
                sc += dot(qr[d], kc);
                dp += dot(dor[d], subgroupShuffle(vr[d], c));
            }
            let ds = select(0.0, exp(sc - l) * (dp - dlt), j0 + c < end);
            for (var d = 0u; d < D / 4u; d++) { acc[d] += ds * ks[d]; }
        }
    }
    if (!s.live) { return; }
    for (var d = 0u; d < D / 4u; d++) { dq_out[qi + d] = acc[d] * bp.scale; }
}

@compute @workgroup_size(WG)
fn attention_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let s = slot_of(gid, nwg, lane, cp.tk, cp);
    if (!s.ok) { return; }
    let j = s.t;
    let len = key_len(s.b, cp, clens[min(s.b, cp.batch - 1u)]);
    // Queries that see key j: [start, Tq); none for a padding key or a padding lane.
    var start = 0u;
    if (cp.causal != 0u && j > cp.tk - cp.tq) { start = j - (cp.tk - cp.tq); }
    if (j >= len || !s.live) { start = cp.tq; }
    let start_min = subgroupMin(start);
    var kr: array<vec4<f32>, D4MAX>;
    var vr: array<vec4<f32>, D4MAX>;
    var dk: array<vec4<f32>, D4MAX>;
    var dv: array<vec4<f32>, D4MAX>;
    var qr: array<vec4<f32>, D4MAX>;
    var dor: array<vec4<f32>, D4MAX>;
    // Query c's rows of q and dO, shuffled once for both of their uses (fwd+bwd B8 H8 T256 D64
    // on lavapipe: faster than shuffling twice in 11 of 12 interleaved runs, 2-4% when quiet).
    var qs: array<vec4<f32>, D4MAX>;
    var os: array<vec4<f32>, D4MAX>;
    let kj = row4(s.b, j, s.h, cp.tk, cp.heads);
    for (var d = 0u; d < D / 4u; d++) {
        kr[d] = ck[kj + d] * cp.scale;
        vr[d] = cv[kj + d];
        dk[d] = vec4<f32>(0.0);
        dv[d] = vec4<f32>(0.0);
    }
    let rows = (s.b * cp.heads + s.h) * cp.tq;
    for (var i0 = start_min; i0 < cp.tq; i0 += SG) {
        let il = min(i0 + lane, cp.tq - 1u);
        let qi = row4(s.b, il, s.h, cp.tq, cp.heads);
        for (var d = 0u; d < D / 4u; d++) { qr[d] = cq[qi + d]; dor[d] = cdo[qi + d]; }
        let lse_l = clse[rows + il];
        let delta_l = cdelta[rows + il];
        let n = min(SG, cp.tq - i0);
        for (var c = 0u; c < n; c++) {
            var sc = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < D / 4u; d++) {
                let qc = subgroupShuffle(qr[d], c);
                let oc = subgroupShuffle(dor[d], c);
                qs[d] = qc;
                os[d] = oc;
                sc += dot(kr[d], qc);
                dp += dot(vr[d], oc);
            }
            let seen = i0 + c >= start;
            let pij = select(0.0, exp(sc - subgroupShuffle(lse_l, c)), seen);
            let ds = pij * (dp - subgroupShuffle(delta_l, c));
            for (var d = 0u; d < D / 4u; d++) {
                dv[d] += pij * os[d];
                dk[d] += ds * qs[d];
            }
        }
    }
    if (!s.live) { return; }
    for (var d = 0u; d < D / 4u; d++) { dk_out[kj + d] = dk[d] * cp.scale; dv_out[kj + d] = dv[d]; }
}
