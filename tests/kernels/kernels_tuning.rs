//! Measured kernel choices (kernels/tuning.rs), forced on here on every adapter: the tiled
//! matmul's blocks and the fused attention's variants. Whichever candidate wins, results match
//! the reference; a choice is made once per shape class, kept in the cache file and read back;
//! a corrupt cache is ignored and rewritten. Devices of their own, opened with these settings,
//! and one test, since both families share the cache file.

use crate::common;
use common::{assert_close, for_each_gpu_with, Rng};
use wgformer::kernels::attention::{Attention, AttentionShape};
use wgformer::kernels::{self, Matmul, MatmulShape};
use wgformer::reference::matmul::matmul_forward;
use wgformer::settings::{MatmulKernel, TuneMode, TuneSettings};
use wgformer::Gpu;

#[test]
fn measured_choices_give_the_reference_results_and_are_made_once() {
    let dir = common::cli::scratch("tune-cache");
    let cache = dir.join("tuning.json");
    let tuned = |s: &mut wgformer::Settings| {
        s.tuning = TuneSettings { mode: TuneMode::All, budget_ms: 600_000.0, cache: Some(cache.clone()) };
        s.kernels.matmul_kernel = Some(MatmulKernel::Tiled);
    };
    for_each_gpu_with(tuned, |gpu| {
        matmul_blocks(gpu, &cache);
        attention_variants(gpu, &cache);
        attention_paths(gpu, &cache);
    });
}

fn matmul_blocks(gpu: &Gpu, cache: &std::path::Path) {
    {
        let mm = Matmul::new(gpu).unwrap();
        let shapes = [
            MatmulShape::packed(1, 70, 33, 19, false, false),
            MatmulShape::packed(1, 130, 70, 40, true, false),
            MatmulShape::packed(2, 65, 129, 17, false, true),
            MatmulShape { bias: true, ..MatmulShape::packed(1, 200, 96, 24, true, true) },
            // A weight gradient: one block of C, a long K: split-K candidates are measured too.
            MatmulShape::packed(1, 64, 64, 2048, true, false),
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
            let bias = shape.bias.then_some(&gbias);
            let d = mm.fwd_split(gpu, &gc, &ga, &gb, bias, Default::default(), shape, None).unwrap();
            let chosen = mm.describe(shape);
            assert!(chosen == "tiled, 8x4 per invocation" || chosen == "tiled, 4x4 per invocation", "{chosen}");
            // Whole products, or the weight gradient in one of the measured split counts.
            let splits = mm.splits_for(gpu, shape);
            let allowed: &[usize] = if shape.k == 2048 { &[1, 2, 4, 8] } else { &[1] };
            assert!(allowed.contains(&splits) && d.len() == 1 + (splits > 1) as usize, "{splits} splits");
            let chosen = format!("{chosen}, {splits} splits");
            kernels::run(gpu, &d.iter().collect::<Vec<_>>()).unwrap();
            // f32 sums of K terms, in whichever order the choice sums: an error that grows with
            // K and the outputs' scale (the weight gradient's K of 2048 reaches 1e-4).
            let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs())) as f64;
            let atol = 2e-5f64.max(1e-6 * (shape.k as f64).sqrt() * scale);
            assert_close(&format!("{shape:?} ({chosen})"), &gpu.read(&gc).unwrap(), &want, atol, 1e-4);
            // The second use finds the choice made.
            mm.fwd(gpu, &gc, &ga, &gb, shape.bias.then_some(&gbias), shape).unwrap();
            assert_eq!(format!("{}, {} splits", mm.describe(shape), mm.splits_for(gpu, shape)), chosen);
            assert_eq!(mm.tuned_shapes(), i + 1, "each shape class measured once");
        }
        // A new kernel set reads the choices back at its first product instead of measuring.
        let again = Matmul::new(gpu).unwrap();
        let (gc, ga, gb) =
            (gpu.zeros("c", 70 * 33).unwrap(), gpu.zeros("a", 70 * 19).unwrap(), gpu.zeros("b", 19 * 33).unwrap());
        again.fwd(gpu, &gc, &ga, &gb, None, &shapes[0]).unwrap();
        assert_eq!(again.tuned_shapes(), shapes.len(), "{} holds every shape", cache.display());
        // A corrupt cache is ignored, and rewritten by the next measurement.
        std::fs::write(cache, b"{ not json").unwrap();
        let fresh = Matmul::new(gpu).unwrap();
        fresh.fwd(gpu, &gc, &ga, &gb, None, &shapes[0]).unwrap();
        assert_eq!(fresh.tuned_shapes(), 1);
        let text = std::fs::read_to_string(cache).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "rewritten: {text}");
    }
}

fn attention_variants(gpu: &Gpu, cache: &std::path::Path) {
    {
        let att = Attention::new(gpu).unwrap();
        let how = att.describe_choice();
        assert!(how.starts_with("measured per shape class among rows"), "{how}");
        let shape = |batch, tq, tk, head_dim, causal| AttentionShape { batch, heads: 2, tq, tk, head_dim, causal };
        let cases = [
            (shape(2, 40, 40, 32, false), None),
            (shape(2, 9, 70, 16, true), None),
            (shape(3, 33, 33, 64, false), Some(vec![33u32, 5, 20])),
        ];
        for (i, (s, lens)) in cases.iter().enumerate() {
            common::attention::check(gpu, &att, s, lens.as_deref(), i as u64);
            let v = att.variant_for(s, lens.is_some());
            assert!(how.contains(v.name()), "{} chosen for {s:?}, not among {how}", v.name());
        }
        // The choices are in the cache: a new kernel set makes the same ones without measuring.
        let again = Attention::new(gpu).unwrap();
        for (i, (s, lens)) in cases.iter().enumerate() {
            common::attention::check(gpu, &again, s, lens.as_deref(), 10 + i as u64);
            assert_eq!(again.variant_for(s, lens.is_some()), att.variant_for(s, lens.is_some()), "{s:?}");
        }
        let text = std::fs::read_to_string(cache).unwrap();
        assert!(text.matches("\"attention d").count() >= cases.len(), "every case measured: {text}");
    }
}

/// The path (fused op or composed ops) measured per shape class: the policy answers for the
/// calls its probe made, the graphs it builds take the measured path, and both paths give the
/// same attention.
fn attention_paths(gpu: &Gpu, cache: &std::path::Path) {
    use wgformer::graph::Op;
    use wgformer::runtime::attention_choice::{attention_executor, attention_graph, policy, policy_in};
    {
        let shapes = [
            AttentionShape { batch: 2, heads: 2, tq: 24, tk: 24, head_dim: 16, causal: true },
            AttentionShape { batch: 3, heads: 4, tq: 7, tk: 40, head_dim: 32, causal: false },
        ];
        let mut probed = 0;
        let chosen = policy(gpu, |p| {
            for s in &shapes {
                probed += 1;
                assert!(p.fused(s, true), "the recording policy answers fused");
            }
            Ok(())
        })
        .unwrap();
        assert_eq!((probed, chosen.kind()), (2, "chosen"));
        let text = std::fs::read_to_string(cache).unwrap();
        assert!(text.matches("\"attention-path d").count() >= shapes.len(), "every call measured: {text}");
        // Mixed precision runs other kernels: its calls are measured in f16 and kept apart.
        if gpu.caps.f16 {
            let half = policy_in(gpu, wgformer::graph::Precision::F16, |p| {
                for s in &shapes {
                    let _ = p.fused(s, true);
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(half.kind(), "chosen");
            let text = std::fs::read_to_string(cache).unwrap();
            assert!(text.matches(" f16\"").count() >= shapes.len(), "every f16 call measured: {text}");
        }
        for s in &shapes {
            let fused = chosen.fused(s, true);
            // The graph of the path chosen, and of the other one: the same output and loss.
            let mut losses = Vec::new();
            for path in [fused, !fused] {
                let a = attention_graph(s, true, path).unwrap();
                assert_eq!(a.graph.nodes.iter().any(|n| matches!(n.op, Op::Attention { .. })), path);
                let (exec, _) = attention_executor(gpu, &a, true).unwrap();
                let opts = wgformer::runtime::exec::StepOptions {
                    adam: None,
                    seed: 1,
                    clip: None,
                    loss_scale: None,
                    loss_weight: None,
                };
                losses.push(exec.step(gpu, &[], &opts).unwrap());
            }
            assert_close(&format!("loss {s:?}"), &losses[1..], &losses[..1], 1e-5, 1e-4);
        }
    }
}
