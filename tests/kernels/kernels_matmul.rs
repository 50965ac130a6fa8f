//! The matmul kernel against the CPU reference: every transpose combination, edges that are
//! not tile multiples, batches with strides and broadcast, bias, accumulation, the ViT-B/16
//! MLP shapes. Tolerance grows with sqrt(K): an f32 dot product of K terms of size ~1 carries
//! a rounding error that grows like sqrt(K) * 2^-24 when errors are random.

use crate::common;
use common::{assert_close, for_each_gpu, Rng};
use wgformer::kernels::matmul::{MatmulTiles, MatmulVariant, Strips};
use wgformer::kernels::{self, Matmul, MatmulShape};
use wgformer::reference::matmul::matmul_forward;
use wgformer::Gpu;

fn tol(k: usize) -> f64 {
    2e-6 * (k as f64).sqrt().max(1.0)
}

/// One Matmul per variant the adapter supports (the fallbacks run on every adapter too).
fn every_variant(gpu: &Gpu) -> Vec<Matmul> {
    let tiles = MatmulTiles::for_adapter(gpu);
    [MatmulVariant::General, MatmulVariant::Vec4, MatmulVariant::Subgroup, MatmulVariant::Tiled]
        .into_iter()
        .map(|cap| Matmul::build(gpu, tiles, cap).unwrap())
        .collect()
}

/// Runs `shape` on the GPU with random operands and compares with the reference.
fn check(gpu: &Gpu, mm: &Matmul, shape: &MatmulShape, seed: u64) {
    check_case(gpu, mm, &Case::new(shape, seed));
}

/// Random operands for a shape and the reference product, computed once and run on every
/// variant and backend.
struct Case {
    shape: MatmulShape,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Vec<f32>,
    c0: Vec<f32>,
    want: Vec<f32>,
}

impl Case {
    fn new(shape: &MatmulShape, seed: u64) -> Self {
        let (na, nb, nc) = shape.extents();
        let mut rng = Rng::new(seed);
        let (a, b, bias, c0) =
            (rng.vec_f32(na, 1.0), rng.vec_f32(nb, 1.0), rng.vec_f32(shape.n, 1.0), rng.vec_f32(nc, 1.0));
        let mut want = c0.clone();
        matmul_forward(&mut want, &a, &b, shape.bias.then_some(&bias[..]), shape);
        Case { shape: *shape, a, b, bias, c0, want }
    }
}

fn check_case(gpu: &Gpu, mm: &Matmul, case: &Case) {
    let shape = &case.shape;
    let (ga, gb, gbias, gc) = (
        gpu.upload("a", &case.a).unwrap(),
        gpu.upload("b", &case.b).unwrap(),
        gpu.upload("bias", &case.bias).unwrap(),
        gpu.upload("c", &case.c0).unwrap(),
    );
    let d = mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
    kernels::run(gpu, &[&d]).unwrap();
    let got = gpu.read(&gc).unwrap();
    let name = format!("matmul {:?} {shape:?}", mm.variant_for(shape));
    assert_close(&name, &got, &case.want, tol(shape.k), tol(shape.k));
}

#[test]
fn odd_shapes_every_transpose() {
    for_each_gpu(|gpu| {
        // Unaligned shapes take the general kernel; the aligned ones (N and K multiples of 4)
        // the vec4 and subgroup kernels, with M and the column blocks still ragged.
        let shapes = [
            (1, 1, 1),
            (17, 33, 65),
            (7, 5, 3),
            (1, 1000, 3),
            (65, 1, 17),
            (33, 130, 9),
            (1, 4, 4),
            (17, 36, 68),
            (5, 8, 12),
            (33, 132, 20),
            (128, 64, 256),
        ];
        for mm in every_variant(gpu) {
            for (i, &(m, n, k)) in shapes.iter().enumerate() {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    for bias in [false, true] {
                        let shape = MatmulShape { bias, ..MatmulShape::packed(1, m, n, k, ta, tb) };
                        check(gpu, &mm, &shape, i as u64);
                    }
                }
            }
        }
    });
}

#[test]
fn every_tile_config_is_correct() {
    for_each_gpu(|gpu| {
        for tiles in [
            MatmulTiles { wg_n: 8, wg_m: 1, tm: 8 },
            MatmulTiles { wg_n: 16, wg_m: 4, tm: 4 },
            MatmulTiles { wg_n: 4, wg_m: 2, tm: 3 },
            MatmulTiles { wg_n: 8, wg_m: 1, tm: 16 },
            MatmulTiles { wg_n: 16, wg_m: 1, tm: 32 },
            MatmulTiles { wg_n: 32, wg_m: 1, tm: 32 },
            MatmulTiles { wg_n: 8, wg_m: 1, tm: 24 },
        ] {
            let mm = Matmul::with_tiles(gpu, tiles).unwrap();
            for (ta, tb) in [(false, false), (true, true)] {
                check(gpu, &mm, &MatmulShape::packed(2, 37, 29, 23, ta, tb), 9);
                check(gpu, &mm, &MatmulShape::packed(1, 70, 36, 20, ta, tb), 10);
            }
        }
        for tm in [0, 33] {
            assert!(Matmul::with_tiles(gpu, MatmulTiles { wg_n: 8, wg_m: 1, tm }).is_err());
        }
    });
}

#[test]
fn batched_strided_broadcast_and_accumulate() {
    for_each_gpu(|gpu| {
        for mm in every_variant(gpu) {
            // Batched with padding between rows and between batch entries.
            let mut s = MatmulShape::packed(3, 9, 13, 11, false, true);
            (s.lda, s.ldb, s.ldc) = (12, 14, 15);
            (s.stride_a, s.stride_b, s.stride_c) = (9 * 12 + 5, 13 * 14 + 1, 9 * 15 + 2);
            check(gpu, &mm, &s, 1);
            // One B shared by every batch entry (weights), with bias, accumulating into C.
            let s = MatmulShape {
                stride_b: 0,
                bias: true,
                accumulate: true,
                ..MatmulShape::packed(4, 10, 6, 7, true, false)
            };
            check(gpu, &mm, &s, 2);
            // The same, aligned for the vec4 and subgroup kernels.
            let mut s = MatmulShape::packed(3, 9, 12, 8, false, true);
            (s.lda, s.ldb, s.ldc) = (9, 16, 16);
            (s.stride_a, s.stride_b, s.stride_c) = (9 * 9 + 5, 12 * 16 + 4, 9 * 16 + 8);
            check(gpu, &mm, &s, 3);
            let s = MatmulShape {
                stride_b: 0,
                bias: true,
                accumulate: true,
                ..MatmulShape::packed(4, 10, 8, 12, true, false)
            };
            check(gpu, &mm, &s, 4);
        }
    });
}

#[test]
fn vit_b16_mlp_shapes() {
    // fc1 forward (x W^T + b), dX = dY W, dW = dY^T X for 2 images of 197 tokens, 768 -> 3072.
    let (t, c, f) = (2 * 197, 768, 3072);
    let shapes = [
        MatmulShape { bias: true, ..MatmulShape::packed(1, t, f, c, false, true) },
        MatmulShape::packed(1, t, c, f, false, false),
        MatmulShape::packed(1, f, c, t, true, false),
    ];
    let cases: Vec<Case> = shapes.iter().enumerate().map(|(i, s)| Case::new(s, 100 + i as u64)).collect();
    for_each_gpu(|gpu| {
        // Every variant, and the adapter's own choice of tiles per shape (on CPU adapters wide
        // tiles for products of 1024 or more rows and columns, which these shapes are not).
        let default = Matmul::new(gpu).unwrap();
        if let Some(wide) = MatmulTiles::wide_for_adapter(gpu) {
            let big = MatmulShape::packed(1, 1024, 1024, 8, false, false);
            if default.variant_for(&big) == MatmulVariant::Subgroup {
                assert_eq!(default.tiles_for(&big), wide);
                assert_ne!(default.tiles_for(&shapes[0]), wide);
                check(gpu, &default, &big, 7);
            }
        }
        for mm in every_variant(gpu).into_iter().chain([default]) {
            for case in &cases {
                check_case(gpu, &mm, case);
            }
        }
    });
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    for_each_gpu(|gpu| {
        let mm = Matmul::new(gpu).unwrap();
        let small = gpu.zeros("small", 4).unwrap();
        let s = MatmulShape::packed(1, 3, 3, 3, false, false);
        let err = mm.fwd(gpu, &small, &small, &small, None, &s).unwrap_err();
        assert!(err.to_string().contains("matmul"), "{err}");
        let empty = MatmulShape::packed(1, 0, 3, 3, false, false);
        assert!(mm.fwd(gpu, &small, &small, &small, None, &empty).is_err());
        let bias_missing = MatmulShape { bias: true, ..MatmulShape::packed(1, 1, 1, 1, false, false) };
        assert!(mm.fwd(gpu, &small, &small, &small, None, &bias_missing).is_err());
    });
}

/// llvmpipe ends an invocation's loops after 65535 iterations: each variant runs a K close to
/// the bound `Matmul::fwd` enforces (so a driver that counts differently fails here), and a K
/// past it is refused.
#[test]
fn long_k_within_and_past_the_loop_budget() {
    for_each_gpu(|gpu| {
        for mm in every_variant(gpu) {
            let aligned = MatmulShape::packed(1, 2, 4, 120_000, false, false);
            let (k, k_odd) = match mm.variant_for(&aligned) {
                MatmulVariant::Subgroup => (120_000, 200_001),
                MatmulVariant::Tiled => (52_000, 52_001),
                _ => (240_000, 200_001),
            };
            check(gpu, &mm, &MatmulShape::packed(1, 2, 4, k, false, false), 7);
            check(gpu, &mm, &MatmulShape::packed(1, 2, 3, k_odd, true, true), 8);
            if gpu.loop_budget().is_some() {
                let k = 1_000_000;
                let t = gpu.zeros("t", 4 * k).unwrap();
                let err = mm.fwd(gpu, &t, &t, &t, None, &MatmulShape::packed(1, 1, 4, k, false, false)).unwrap_err();
                assert!(err.to_string().contains("loop iterations"), "{err}");
            }
        }
    });
}

/// Every block size of the workgroup-memory kernel, and strips of 16 and double-buffered strips
/// (where the adapter's workgroup memory holds them), on shapes that leave partial blocks and
/// partial strips of k, with every transpose; split-K over strips of 16.
#[test]
fn tiled_blocks_every_transpose() {
    for_each_gpu(|gpu| {
        // Strips of 16, and double-buffered strips, with the large block, untransposed and
        // transposed (each pipeline costs llvmpipe's GL seconds to compile).
        let one = |depth| Strips { depth, buffers: 1 };
        let two = |depth| Strips { depth, buffers: 2 };
        let fits = |s: Strips| gpu.limits.max_compute_workgroup_storage_size >= 2 * s.depth * 32 * 16 * s.buffers;
        let every = [(false, false), (false, true), (true, false), (true, true)];
        type Transposes<'a> = &'a [(bool, bool)];
        let mut kernels: Vec<((u32, u32), Strips, Transposes)> =
            [(4, 4), (8, 8), (4, 8), (8, 4)].map(|b| (b, one(8), &every[..])).into();
        for strips in [one(16), two(8), two(16)].into_iter().filter(|&s| fits(s)) {
            kernels.push(((8, 4), strips, &[(false, false), (true, true)]));
        }
        for (block, strips, transposes) in kernels {
            let mm = Matmul::tiled_with_strips(gpu, block, strips).unwrap();
            for &(ta, tb) in transposes {
                check(gpu, &mm, &MatmulShape::packed(2, 131, 70, 19, ta, tb), 21);
            }
        }
        // A K of several strips of 16, with a partial one, whole and in splits.
        for strips in [one(8), one(16), two(8)] {
            let mm = Matmul::tiled_with_strips(gpu, (8, 4), strips).unwrap();
            check(gpu, &mm, &MatmulShape::packed(1, 67, 130, 37, true, false), 22);
            let s = MatmulShape { bias: true, ..MatmulShape::packed(2, 70, 36, 150, true, false) };
            let (na, nb, nc) = s.extents();
            let mut rng = Rng::new(23);
            let (a, b, bias) = (rng.vec_f32(na, 1.0), rng.vec_f32(nb, 1.0), rng.vec_f32(s.n, 1.0));
            let mut want = vec![0.0; nc];
            matmul_forward(&mut want, &a, &b, Some(&bias), &s);
            let (ga, gb, gbias) =
                (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap(), gpu.upload("bias", &bias).unwrap());
            for splits in [2, 3] {
                let gc = gpu.zeros("c", nc).unwrap();
                let d = mm.fwd_split(gpu, &gc, &ga, &gb, Some(&gbias), Default::default(), &s, Some(splits)).unwrap();
                kernels::run(gpu, &d.iter().collect::<Vec<_>>()).unwrap();
                let tol = 2e-6 * (s.k as f64).sqrt();
                assert_close(&format!("{strips:?}, {splits} splits"), &gpu.read(&gc).unwrap(), &want, tol, tol);
            }
        }
        assert!(Matmul::tiled(gpu, (2, 8)).is_err());
        assert!(Matmul::tiled_with_strips(gpu, (8, 4), one(12)).is_err());
        assert!(Matmul::tiled_with_strips(gpu, (8, 4), Strips { depth: 8, buffers: 3 }).is_err());
        // Strips over the adapter's workgroup memory are refused, not compiled.
        if !fits(two(16)) {
            assert!(Matmul::tiled_with_strips(gpu, (8, 4), two(16)).is_err());
        }
    });
}
