//! The measured block choice of the tiled matmul (kernels/matmul/tune.rs), forced on here with
//! the tiled kernel on every adapter: each shape's product matches the reference whichever
//! block won, the choice is made once per shape, kept in the cache file and read back, and a
//! corrupt cache is ignored and rewritten. Its own test binary, since it sets
//! environment variables the other matmul tests must not see.

mod common;
use common::{assert_close, for_each_gpu, Rng};
use wgformer::kernels::{self, Matmul, MatmulShape};
use wgformer::reference::matmul::matmul_forward;

#[test]
fn tuned_blocks_give_the_reference_product_and_are_chosen_once() {
    // Set before any thread reads them; this binary holds this one test.
    std::env::set_var("WGFORMER_TUNE", "1");
    std::env::set_var("WGFORMER_MATMUL_VARIANT", "tiled");
    let dir = common::cli::scratch("tune-cache");
    let cache = dir.join("blocks.json");
    std::env::set_var("WGFORMER_TUNE_CACHE", &cache);
    for_each_gpu(|gpu| {
        let mm = Matmul::new(gpu).unwrap();
        let shapes = [
            MatmulShape::packed(1, 70, 33, 19, false, false),
            MatmulShape::packed(1, 130, 70, 40, true, false),
            MatmulShape::packed(2, 65, 129, 17, false, true),
            MatmulShape { bias: true, ..MatmulShape::packed(1, 200, 96, 24, true, true) },
        ];
        for (i, shape) in shapes.iter().enumerate() {
            let mut rng = Rng::new(i as u64);
            let (na, nb, nc) = shape.extents();
            let (a, b, bias) = (rng.vec_f32(na, 1.0), rng.vec_f32(nb, 1.0), rng.vec_f32(shape.n, 1.0));
            let mut want = vec![0.0f32; nc];
            matmul_forward(&mut want, &a, &b, shape.bias.then_some(&bias[..]), shape);
            let (ga, gb, gbias) =
                (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap(), gpu.upload("bias", &bias).unwrap());
            let gc = gpu.zeros("c", nc).unwrap();
            let d = mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
            let chosen = mm.describe(shape);
            assert!(chosen == "tiled, 8x4 per invocation" || chosen == "tiled, 4x4 per invocation", "{chosen}");
            kernels::run(gpu, &[&d]).unwrap();
            assert_close(&format!("{shape:?} ({chosen})"), &gpu.read(&gc).unwrap(), &want, 2e-5, 1e-4);
            // The second use finds the choice made.
            mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
            assert_eq!(mm.describe(shape), chosen);
            assert_eq!(mm.tuned_shapes(), i + 1, "each shape measured once");
        }
        // A new kernel set reads the choices back at its first product instead of measuring.
        let again = Matmul::new(gpu).unwrap();
        let (gc, ga, gb) =
            (gpu.zeros("c", 70 * 33).unwrap(), gpu.zeros("a", 70 * 19).unwrap(), gpu.zeros("b", 19 * 33).unwrap());
        again.fwd(gpu, &gc, &ga, &gb, None, &shapes[0]).unwrap();
        assert_eq!(again.tuned_shapes(), shapes.len(), "{} holds every shape", cache.display());
        // A corrupt cache is ignored, and rewritten by the next measurement.
        std::fs::write(&cache, b"{ not json").unwrap();
        let fresh = Matmul::new(gpu).unwrap();
        fresh.fwd(gpu, &gc, &ga, &gb, None, &shapes[0]).unwrap();
        assert_eq!(fresh.tuned_shapes(), 1);
        let text = std::fs::read_to_string(&cache).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "rewritten: {text}");
    });
}
