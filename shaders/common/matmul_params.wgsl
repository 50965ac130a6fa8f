// The params of every matmul kernel (kernels/matmul.rs MatmulParams) and its transposes.
struct MatmulParams {
    m: u32, n: u32, k: u32, batch: u32,
    lda: u32, ldb: u32, ldc: u32,
    flags: u32,        // bit 0: add bias[n]; bit 1: accumulate into C; bits 2-8: matmul_extras.wgsl
    stride_a: u32, stride_b: u32, stride_c: u32,
    k_split: u32,      // k per split of a split-K product (matmul_tiled.wgsl), a multiple of 16; 0: all of K
    drop_threshold: u32, drop_scale: f32, drop_salt: u32,   // a dropout in the store (flags bit 8)
    _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
