// Embedding lookup and its gradient.
//   embedding_fwd: out[n, c] = table[ids[n], c]                       out (N, C), table (V, C)
//   embedding_bwd: dtable[v, c] = sum of dout[i, c] over tokens i with ids[i] == v
// The backward is deterministic without float atomics: the host, which uploads the ids, also
// uploads them sorted (order: token indices grouped by id, ascending within a group; starts:
// where each id's group begins, V + 1 entries). Each invocation sums one (v, c) over its group
// in index order, so every run adds in the same order.

struct EmbeddingParams { tokens: u32, vocab: u32, channels: u32, _pad: u32, }

override WG: u32 = 64;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;   // (N, C)
@group(0) @binding(1) var<storage, read> table: array<f32>;       // (V, C)
@group(0) @binding(2) var<storage, read> ids: array<u32>;         // (N)
@group(0) @binding(3) var<uniform> p: EmbeddingParams;

@group(0) @binding(0) var<storage, read_write> bw_dtable: array<f32>; // (V, C)
@group(0) @binding(1) var<storage, read> bw_dout: array<f32>;         // (N, C)
@group(0) @binding(2) var<storage, read> bw_order: array<u32>;        // (N)
@group(0) @binding(3) var<storage, read> bw_starts: array<u32>;       // (V + 1)
@group(0) @binding(4) var<uniform> bw_p: EmbeddingParams;

@compute @workgroup_size(WG)
fn embedding_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.tokens * p.channels) { return; }
    let c = i % p.channels;
    // Ids are checked on upload; the clamp keeps a bad one in bounds anyway.
    let v = min(ids[i / p.channels], p.vocab - 1u);
    out[i] = table[v * p.channels + c];
}

@compute @workgroup_size(WG)
fn embedding_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= bw_p.vocab * bw_p.channels) { return; }
    let c = i % bw_p.channels;
    let v = i / bw_p.channels;
    var s = 0.0;
    for (var j = bw_starts[v]; j < bw_starts[v + 1u]; j++) {
        s += bw_dout[bw_order[j] * bw_p.channels + c];
    }
    bw_dtable[i] = s;
}
