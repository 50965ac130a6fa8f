// Pieces of the register-tile matmuls whose B and C are vec4 storage (matmul.wgsl's
// matmul_fwd_vec4, matmul_sg.wgsl): the including file declares c4, b4, bias, side4 and p,
// and includes matmul_extras.wgsl.

// Where an invocation works: its 4 columns from n0 (lanes past the last column block recompute
// the last one and do not store it: live_n false), its batch's offsets into A and B, and the
// steps between k and between rows of op(A).
struct Tile4 { n0: u32, live_n: bool, ab: u32, bb4: u32, m_last: u32, ka_step: u32, row_step: u32, ldb4: u32, }

// The Tile4 of column block `nb` (4 columns each) of batch `batch`.
fn tile4(batch: u32, nb: u32) -> Tile4 {
    return Tile4(min(nb * 4u, p.n - 4u), nb * 4u < p.n, batch * p.stride_a, batch * p.stride_b / 4u,
                 p.m - 1u, select(1u, p.lda, TRANS_A), select(p.lda, 1u, TRANS_A), p.ldb / 4u);
}

// Four consecutive k of op(B) (k .. k + 3, one per column of the result) at the 4 columns from
// n0: read straight where B is stored (K, N), transposed in registers where it is (N, K).
fn load_b4(bb4: u32, k: u32, n0: u32, ldb4: u32) -> mat4x4<f32> {
    if (TRANS_B) {
        let i = bb4 + n0 * ldb4 + k / 4u;
        return transpose(mat4x4<f32>(b4[i], b4[i + ldb4], b4[i + 2u * ldb4], b4[i + 3u * ldb4]));
    }
    let i = bb4 + k * ldb4 + n0 / 4u;
    return mat4x4<f32>(b4[i], b4[i + ldb4], b4[i + 2u * ldb4], b4[i + 3u * ldb4]);
}

// The bias of the 4 columns from n0 (zero without one).
fn bias4(n0: u32) -> vec4<f32> {
    if ((p.flags & 1u) == 0u) { return vec4<f32>(0.0); }
    return vec4<f32>(bias[n0], bias[n0 + 1u], bias[n0 + 2u], bias[n0 + 3u]);
}

// C's vec4 index of row m's 4 columns from n0 of batch `batch`.
fn c4_index(batch: u32, m: u32, n0: u32) -> u32 {
    return batch * p.stride_c / 4u + m * (p.ldc / 4u) + n0 / 4u;
}

// Stores row m's 4 columns from n0 of batch `batch`, added to C when accumulating.
fn store4(batch: u32, m: u32, n0: u32, v: vec4<f32>) {
    let idx = c4_index(batch, m, n0);
    var out = v;
    if ((p.flags & 2u) != 0u) { out += c4[idx]; }
    c4[idx] = out;
}

// matmul_extras.wgsl's epilogue of the 4 elements from vec4 `idx4`, side read as a vec4 (the
// including file's side4: one entry point may not use two variables of one binding).
fn finish4(idx4: u32, x: vec4<f32>) -> vec4<f32> {
    var s = vec4<f32>(0.0);
    if (reads_side()) { s = side4[idx4]; }
    let i = idx4 * 4u;
    return vec4<f32>(epilogue(i, x.x, s.x), epilogue(i + 1u, x.y, s.y), epilogue(i + 2u, x.z, s.z),
                     epilogue(i + 3u, x.w, s.w));
}

// Stores the invocation's TM rows from m0 (those inside C) with the bias, then applies the
// epilogue the flags ask for in a second pass over them, reading C back: inlined into this
// loop, which llvmpipe unrolls TM times, the epilogue's code made every product 20-30% slower
// on lavapipe even where it did not run (1040x768x192: 10.1-11.1 ms against 12.5-18.5).
fn store_tile4(batch: u32, m0: u32, n0: u32, acc: ptr<function, array<vec4<f32>, TM_MAX>>) {
    let bias_v = bias4(n0);
    for (var r = 0u; r < TM; r++) {
        if (m0 + r >= p.m) { break; }
        store4(batch, m0 + r, n0, (*acc)[r] + bias_v);
    }
    if (has_epilogue()) {
        for (var m = m0; m < min(m0 + TM, p.m); m++) {
            let idx = c4_index(batch, m, n0);
            c4[idx] = finish4(idx, c4[idx]);
        }
    }
}
