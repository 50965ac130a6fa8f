// Element loads of the workgroup-memory matmuls (matmul_tiled.wgsl, matmul_f16.wgsl), widened to
// f32 whatever the storage type of the including file's a and b.

// op(A)[m][k] of batch offset `ab`, 0 outside the matrix.
fn load_a(ab: u32, m: u32, k: u32) -> f32 {
    var v = 0.0;
    if (m < p.m && k < p.k) {
        v = f32(a[ab + select(m * p.lda + k, k * p.lda + m, TRANS_A)]);
    }
    return v;
}

// op(B)[k][n] of batch offset `bb`, 0 outside the matrix.
fn load_b(bb: u32, k: u32, n: u32) -> f32 {
    var v = 0.0;
    if (k < p.k && n < p.n) {
        v = f32(b[bb + select(k * p.ldb + n, n * p.ldb + k, TRANS_B)]);
    }
    return v;
}
