//! Elementwise chains' generated kernels against the reference interpretation of the chain
//! (`reference::chain`, the fused ops' own references): every chain op, a repeating input,
//! f32 and f16 tensors, sizes 1, 96 and 1000002; the dropout drawn as the dropout kernel draws
//! it on a data-parallel shard; forms shared across constants; malformed chains refused.

use crate::common;
use common::{assert_close, fit, for_each_gpu, upload, Rng};
use wgformer::graph::chain::{Chain, ChainOp, ChainStep};
use wgformer::graph::{Activation, GeluKind, ProductDropout};
use wgformer::kernels::dropout::StepParams;
use wgformer::kernels::{self, ChainKernels, Dropout};

const SEED: u32 = 0x5eed_1234;

fn step(op: ChainOp, args: &[usize], round: bool) -> ChainStep {
    ChainStep { op, args: args.to_vec(), round }
}

/// Every op on inputs x, y, pos (repeating) and dy: a forward's scale, position add, dropout
/// and activations, and a backward's activation gradients, ending in a cast where `halves` (a
/// device with f16 shaders: casts and rounded values need them), else in a scale.
fn every_op(alpha: f32, salt: u32, halves: bool) -> Chain {
    use Activation::{Gelu, Relu, Silu};
    let steps = vec![
        step(ChainOp::Scale(alpha), &[0], halves), // v4, kept in f16 (the same f32 value on both sides)
        step(ChainOp::Add, &[4, 2], false),        // v5
        step(ChainOp::Dropout(ProductDropout::new(0.3, salt)), &[5], false), // v6
        step(ChainOp::Act(Gelu(GeluKind::Exact)), &[6], false), // v7
        step(ChainOp::Act(Gelu(GeluKind::Tanh)), &[1], false), // v8
        step(ChainOp::Act(Relu), &[7], false),     // v9
        step(ChainOp::Act(Silu), &[8], false),     // v10
        step(ChainOp::Mul, &[9, 10], false),       // v11
        step(ChainOp::ActGrad(Gelu(GeluKind::Exact)), &[0, 3], false), // v12
        step(ChainOp::ActGrad(Gelu(GeluKind::Tanh)), &[1, 12], false), // v13
        step(ChainOp::ActGrad(Relu), &[5, 13], false), // v14
        step(ChainOp::ActGrad(Silu), &[11, 14], false), // v15
        step(if halves { ChainOp::RoundF16 } else { ChainOp::Scale(1.0) }, &[15], false), // v16
    ];
    Chain { inputs: 4, steps, outputs: vec![6, 11, 16] }
}

#[test]
fn chains_match_the_reference_in_f32_and_f16() {
    for_each_gpu(|gpu| {
        let chains = ChainKernels::default();
        let step_uniform = gpu.uniform("step", &StepParams { seed: SEED, step: 1, shard: 0, _pad: 0 });
        let chain = every_op(1.5, 77, gpu.caps.f16);
        let halves: &[bool] = if gpu.caps.f16 { &[false, true] } else { &[false] };
        for (&(n, pos_len), &half) in
            [(1, 1), (96, 8), (1_000_002, 500_001)].iter().flat_map(|s| halves.iter().map(move |h| (s, h)))
        {
            let mut rng = Rng::new(n as u64);
            // x and the outputs f16 in the half form; y, pos and dy stay f32.
            let x = fit(rng.vec_f32(n, 3.0), half);
            let (y, pos, dy) = (rng.vec_f32(n, 3.0), rng.vec_f32(pos_len, 1.0), rng.vec_f32(n, 1.0));
            let inputs = [
                upload(gpu, "x", &x, half),
                upload(gpu, "y", &y, false),
                upload(gpu, "pos", &pos, false),
                upload(gpu, "dy", &dy, false),
            ];
            let zeros = |name| if half { gpu.zeros_f16(name, n) } else { gpu.zeros(name, n) }.unwrap();
            let outputs = [zeros("o0"), zeros("o1"), zeros("o2")];
            let lens = [n, n, pos_len, n];
            let ins: Vec<_> = inputs.iter().zip(lens).collect();
            let d = chains.prepare(gpu, &chain, &ins, &outputs.iter().collect::<Vec<_>>(), n, &step_uniform).unwrap();
            kernels::run(gpu, &[&d]).unwrap();
            let want = wgformer::reference::chain::chain_outputs(&chain, &[&x, &y, &pos, &dy], n, SEED);
            for (k, (out, want)) in outputs.iter().zip(want).enumerate() {
                // An f16 value may round the other way where the kernel's f32 value differs by
                // an ulp: one f16 step (the cast's output, and every output of the half form).
                let rel = if half || k == 2 { 2e-3 } else { 1e-5 };
                let tag = format!("output {k} n={n} f16 {half}");
                assert_close(&tag, &gpu.read(out).unwrap(), &fit(want, half), 1e-5, rel);
            }
        }
        // A form per type and repeating input (n = 1 repeats nothing), whatever the constants.
        assert_eq!(chains.forms(), 2 * halves.len());
        let ones = gpu.upload("ones", &[1.0; 8]).unwrap();
        let other = every_op(-0.5, 5, gpu.caps.f16);
        let out: Vec<_> = (0..3).map(|_| gpu.zeros("o", 8).unwrap()).collect();
        let ins: Vec<_> = (0..4).map(|_| (&ones, 8)).collect();
        chains.prepare(gpu, &other, &ins, &out.iter().collect::<Vec<_>>(), 8, &step_uniform).unwrap();
        assert_eq!(chains.forms(), 2 * halves.len());
    });
}

/// A dropout in a chain keeps the elements the dropout kernel keeps, on shard 1 too.
#[test]
fn a_chains_dropout_draws_the_dropout_kernels_mask() {
    for_each_gpu(|gpu| {
        let (chains, dropout) = (ChainKernels::default(), Dropout::new(gpu).unwrap());
        let step_uniform = gpu.uniform("step", &StepParams { seed: SEED, step: 2, shard: 1, _pad: 0 });
        let n = 4099;
        let x = Rng::new(3).vec_f32(n, 2.0);
        let gx = gpu.upload("x", &x).unwrap();
        let (a, b) = (gpu.zeros("a", n).unwrap(), gpu.zeros("b", n).unwrap());
        let drop = ChainOp::Dropout(ProductDropout::new(0.4, 123));
        let chain = Chain {
            inputs: 1,
            steps: vec![step(drop, &[0], false), step(ChainOp::Scale(1.0), &[1], false)],
            outputs: vec![2],
        };
        let fused = chains.prepare(gpu, &chain, &[(&gx, n)], &[&a], n, &step_uniform).unwrap();
        let alone = dropout.prepare(gpu, &b, &gx, n, 0.4, 123, &step_uniform, false).unwrap();
        kernels::run(gpu, &[&fused, &alone]).unwrap();
        let (a, b) = (gpu.read(&a).unwrap(), gpu.read(&b).unwrap());
        assert_eq!(a, b);
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.6).abs() < 0.05, "kept {kept}");
    });
}

#[test]
fn malformed_chains_and_lengths_are_errors() {
    for_each_gpu(|gpu| {
        let chains = ChainKernels::default();
        let step_uniform = gpu.uniform("step", &StepParams { seed: 0, step: 0, shard: 0, _pad: 0 });
        let (x, out) = (gpu.upload("x", &[1.0; 6]).unwrap(), gpu.zeros("out", 6).unwrap());
        let reads_ahead = Chain { inputs: 1, steps: vec![step(ChainOp::Mul, &[0, 1], false)], outputs: vec![1] };
        let no_steps = Chain { inputs: 1, steps: vec![], outputs: vec![0] };
        for bad in [reads_ahead, no_steps] {
            assert!(chains.prepare(gpu, &bad, &[(&x, 6)], &[&out], 6, &step_uniform).is_err(), "{bad:?}");
        }
        let scale = Chain { inputs: 1, steps: vec![step(ChainOp::Scale(2.0), &[0], false)], outputs: vec![1] };
        // 4 does not divide 6; 8 elements are more than x holds.
        assert!(chains.prepare(gpu, &scale, &[(&x, 4)], &[&out], 6, &step_uniform).is_err());
        assert!(chains.prepare(gpu, &scale, &[(&x, 8)], &[&out], 8, &step_uniform).is_err());
        assert!(chains.prepare(gpu, &scale, &[(&x, 6)], &[&out], 6, &step_uniform).is_ok());
    });
}
