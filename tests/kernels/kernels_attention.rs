//! Fused attention against the reference (which is checked against finite differences here
//! too): every mask kind, odd lengths, head dims 16 to 128, and an 8192-token sequence whose
//! score matrix (256 MiB) would not fit a 128 MiB storage binding.

use crate::common;
use common::attention::{check, sizes};
use common::{assert_close, assert_grad, dot, for_each_gpu, numeric_grad, Rng};
use wgformer::kernels::attention::{Attention, AttentionShape, Variant};
use wgformer::kernels::{self};
use wgformer::reference::attention::{attention_backward, attention_forward, attention_row};

#[test]
fn reference_backward_matches_finite_differences() {
    let cases = [
        (AttentionShape { batch: 2, heads: 2, tq: 3, tk: 3, head_dim: 4, causal: false }, None),
        (AttentionShape { batch: 2, heads: 2, tq: 3, tk: 5, head_dim: 4, causal: true }, None),
        (AttentionShape { batch: 2, heads: 1, tq: 4, tk: 4, head_dim: 4, causal: false }, Some(vec![4u32, 2])),
        (AttentionShape { batch: 2, heads: 1, tq: 3, tk: 4, head_dim: 4, causal: true }, Some(vec![0u32, 3])),
    ];
    for (i, (s, lens)) in cases.iter().enumerate() {
        let (nq, nk, rows) = sizes(s);
        let mut rng = Rng::new(i as u64);
        let (q, k, v, w) = (rng.vec(nq, 1.0), rng.vec(nk, 1.0), rng.vec(nk, 1.0), rng.vec(nq, 1.0));
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            let (mut o, mut lse) = (vec![0.0; nq], vec![0.0; rows]);
            attention_forward(&mut o, &mut lse, q, k, v, lens.as_deref(), s);
            dot(&o, &w)
        };
        let (mut dq, mut dk, mut dv) = (vec![0.0; nq], vec![0.0; nk], vec![0.0; nk]);
        attention_backward(&mut dq, &mut dk, &mut dv, &q, &k, &v, &w, lens.as_deref(), s);
        assert_grad(&format!("dq {s:?}"), &dq, &numeric_grad(&q, 1e-5, |x| loss(x, &k, &v)));
        assert_grad(&format!("dk {s:?}"), &dk, &numeric_grad(&k, 1e-5, |x| loss(&q, x, &v)));
        assert_grad(&format!("dv {s:?}"), &dv, &numeric_grad(&v, 1e-5, |x| loss(&q, &k, x)));
    }
}

/// Every variant the adapter runs (GL has no subgroups: rows and tiled).
fn every_variant(gpu: &wgformer::Gpu) -> Vec<Attention> {
    let (lo, hi) = gpu.caps.subgroup_size;
    let fixed = gpu.caps.subgroups && lo == hi;
    if fixed && gpu.is_cpu() && gpu.settings.kernels.attention.is_none() {
        let best = Attention::new(gpu).unwrap();
        assert!(best.uses_subgroups(), "CPU adapter with fixed subgroups of {lo}: the subgroup kernels are chosen");
    }
    let mut all = vec![Attention::with_subgroups(gpu, false).unwrap()];
    let sg = Attention::with_subgroups(gpu, true).unwrap();
    assert!(fixed || !sg.uses_subgroups(), "the subgroup kernels need subgroups of one size");
    if sg.uses_subgroups() {
        all.push(sg);
    }
    let tiled = Attention::with_variant(gpu, Variant::Tiled).unwrap();
    assert_eq!(tiled.variant(), Variant::Tiled);
    all.push(tiled);
    all
}

#[test]
fn every_mask_length_and_head_dim_matches_reference() {
    for_each_gpu(|gpu| {
        for att in every_variant(gpu) {
            let att = &att;
            let mut seed = 0;
            for d in [16, 32, 64, 128] {
                let shape = |tq, tk, causal| AttentionShape { batch: 2, heads: 2, tq, tk, head_dim: d, causal };
                let cases: [(AttentionShape, Option<Vec<u32>>); 6] = [
                    (shape(1, 1, false), None),
                    (shape(7, 7, true), None),
                    (shape(77, 77, false), Some(vec![77, 30])),
                    (shape(7, 19, false), Some(vec![19, 5])), // cross-attention with source padding
                    (shape(77, 77, true), Some(vec![0, 50])), // a batch entry with every key masked
                    (shape(1, 7, true), None),
                ];
                for (s, lens) in &cases {
                    seed += 1;
                    check(gpu, att, s, lens.as_deref(), seed);
                }
            }
            for causal in [false, true] {
                check(
                    gpu,
                    att,
                    &AttentionShape { batch: 1, heads: 2, tq: 197, tk: 197, head_dim: 64, causal },
                    None,
                    99,
                );
            }
        }
    });
}

#[test]
fn f16_projections_match_reference() {
    for_each_gpu(|gpu| {
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        for att in every_variant(gpu) {
            for (i, (d, tq, tk, causal, lens)) in [
                (32, 7, 7, true, None),
                (64, 77, 77, false, Some(vec![77, 30])),
                (16, 7, 19, false, Some(vec![19, 5])),
                (64, 70, 70, true, None),
            ]
            .into_iter()
            .enumerate()
            {
                let s = AttentionShape { batch: 2, heads: 2, tq, tk, head_dim: d, causal };
                // (q, k, v; o; gradients) in f16: each on its own, and all (the graph rewrite's).
                for halves in [[true, false, false], [false, true, false], [false, false, true], [true; 3]] {
                    common::attention::check_in(gpu, &att, &s, lens.as_deref(), 200 + i as u64, halves);
                }
            }
        }
        // Mixed types are refused, not misread.
        let att = Attention::new(gpu).unwrap();
        let s = AttentionShape { batch: 1, heads: 1, tq: 4, tk: 4, head_dim: 16, causal: false };
        let (t, h) = (gpu.zeros("t", 64).unwrap(), gpu.zeros_f16("h", 64).unwrap());
        let err = att.fwd(gpu, &t, &t, &h, &t, &t, None, &s).unwrap_err().to_string();
        assert!(err.contains("all be f32 or all f16"), "{err}");
        let err = att.bwd(gpu, [&h, &t, &t], &t, [&t, &t, &t, &t, &h, &t], None, &s).unwrap_err().to_string();
        assert!(err.contains("do, dq, dk and dv must all be f32 or all f16"), "{err}");
    });
}

#[test]
fn long_sequence_without_a_score_matrix() {
    for_each_gpu(|gpu| {
        let s = AttentionShape { batch: 1, heads: 1, tq: 8192, tk: 8192, head_dim: 64, causal: false };
        // On lavapipe (128 MiB bindings) a materialised 256 MiB score matrix could not even be
        // bound; GPUs with larger bindings run the same case.
        let (nq, nk, rows) = sizes(&s);
        let mut rng = Rng::new(5);
        let (q, k, v) = (rng.vec_f32(nq, 1.0), rng.vec_f32(nk, 1.0), rng.vec_f32(nk, 1.0));
        let (gq, gk, gv) = (gpu.upload("q", &q).unwrap(), gpu.upload("k", &k).unwrap(), gpu.upload("v", &v).unwrap());
        let (go, glse) = (gpu.zeros("o", nq).unwrap(), gpu.zeros("lse", rows).unwrap());
        let mut want = vec![0.0f32; nq];
        for i in (0..8192).step_by(257) {
            attention_row(&mut want, &q, &k, &v, None, &s, 0, 0, i);
        }
        for att in every_variant(gpu) {
            kernels::run(gpu, &[&att.fwd(gpu, &go, &glse, &gq, &gk, &gv, None, &s).unwrap()]).unwrap();
            let got = gpu.read(&go).unwrap();
            for i in (0..8192).step_by(257) {
                let r = i * 64..(i + 1) * 64;
                let tag = format!("row {i} ({})", att.variant().name());
                assert_close(&tag, &got[r.clone()], &want[r], 1e-5, 1e-3);
            }
        }
    });
}

#[test]
fn unsupported_shapes_are_errors() {
    for_each_gpu(|gpu| {
        let att = Attention::new(gpu).unwrap();
        let t = gpu.zeros("t", 1024).unwrap();
        let s = AttentionShape { batch: 1, heads: 1, tq: 4, tk: 4, head_dim: 24, causal: false };
        assert!(att.fwd(gpu, &t, &t, &t, &t, &t, None, &s).unwrap_err().to_string().contains("head dimension"));
        let s = AttentionShape { batch: 1, heads: 1, tq: 5, tk: 4, head_dim: 16, causal: true };
        assert!(att.fwd(gpu, &t, &t, &t, &t, &t, None, &s).is_err(), "causal with more queries than keys");
    });
}
