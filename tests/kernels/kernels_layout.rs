//! Data movement, dropout, embedding and mask kernels against the CPU reference, on odd sizes
//! and realistic ones (ViT-B/16 heads, a translation batch's embedding).

use crate::common;
use common::{assert_close, fit, for_each_gpu, upload, Rng};
use wgformer::kernels::dropout::{dropout_constants, StepParams};
use wgformer::kernels::embedding::group_ids;
use wgformer::kernels::layout::TokenCopy;
use wgformer::kernels::{self, Dropout, Embedding, Layout, Mask};
use wgformer::reference::{dropout as dropout_ref, embedding as emb_ref, layout as layout_ref, mask as mask_ref};

#[test]
fn swap12_matches_reference() {
    for_each_gpu(|gpu| {
        let l = Layout::new(gpu).unwrap();
        for dims in [[1, 1, 1, 1], [2, 7, 3, 5], [8, 197, 12, 64]] {
            let n: usize = dims.iter().product();
            let x = Rng::new(n as u64).vec_f32(n, 1.0);
            let mut want = vec![0.0f32; n];
            layout_ref::swap12_forward(&mut want, &x, dims);
            let (gx, gy) = (gpu.upload("x", &x).unwrap(), gpu.zeros("y", n).unwrap());
            kernels::run(gpu, &[&l.swap12(gpu, &gy, &gx, dims).unwrap()]).unwrap();
            assert_close(&format!("swap12 {dims:?}"), &gpu.read(&gy).unwrap(), &want, 0.0, 0.0);
        }
    });
}

#[test]
fn token_copies_and_fill_match_reference() {
    for_each_gpu(|gpu| {
        let l = Layout::new(gpu).unwrap();
        let cases = [
            TokenCopy {
                batch: 1,
                channels: 1,
                src_tokens: 1,
                dst_tokens: 1,
                src_off: 0,
                dst_off: 0,
                len: 1,
                src_broadcast: false,
            },
            TokenCopy {
                batch: 3,
                channels: 7,
                src_tokens: 1,
                dst_tokens: 5,
                src_off: 0,
                dst_off: 0,
                len: 1,
                src_broadcast: true,
            },
            TokenCopy {
                batch: 8,
                channels: 768,
                src_tokens: 196,
                dst_tokens: 197,
                src_off: 0,
                dst_off: 1,
                len: 196,
                src_broadcast: false,
            },
            TokenCopy {
                batch: 2,
                channels: 5,
                src_tokens: 9,
                dst_tokens: 3,
                src_off: 4,
                dst_off: 0,
                len: 3,
                src_broadcast: false,
            },
        ];
        for c in cases {
            let src_batch = if c.src_broadcast { 1 } else { c.batch };
            let src = Rng::new(c.channels as u64).vec_f32(src_batch * c.src_tokens * c.channels, 1.0);
            let n_dst = c.batch * c.dst_tokens * c.channels;
            let mut want = vec![-2.0f32; n_dst];
            layout_ref::copy_tokens(
                &mut want,
                &src,
                c.batch,
                c.channels,
                c.src_tokens,
                c.dst_tokens,
                c.src_off,
                c.dst_off,
                c.len,
                c.src_broadcast,
            );
            let (gsrc, gdst) = (gpu.upload("src", &src).unwrap(), gpu.zeros("dst", n_dst).unwrap());
            let fill = l.fill(gpu, &gdst, -2.0, n_dst).unwrap();
            let copy = l.copy_tokens(gpu, &gdst, &gsrc, &c).unwrap();
            kernels::run(gpu, &[&fill, &copy]).unwrap();
            assert_close(&format!("tokens {c:?}"), &gpu.read(&gdst).unwrap(), &want, 0.0, 0.0);
        }
    });
}

#[test]
fn dropout_matches_reference_and_drops_p() {
    for_each_gpu(|gpu| {
        let d = Dropout::new(gpu).unwrap();
        // x and y each in f32, and in f16 (mixed precision's forms) where there is f16: the
        // kept values are scaled in f32, then rounded where y is f16.
        let forms: &[[bool; 2]] = if gpu.caps.f16 {
            &[[false, false], [true, false], [false, true], [true, true]]
        } else {
            &[[false, false]]
        };
        let cases = [(1, 0.5f32), (7, 0.1), (1_000_003, 0.1), (1_000_003, 0.5)];
        for ((n, p), [hx, hy]) in cases.into_iter().flat_map(|c| forms.iter().map(move |&h| (c, h))) {
            let x = fit(Rng::new(n as u64).vec_f32(n, 1.0), hx);
            let (seed, salt) = (12345, 77);
            let step = gpu.uniform("step", &StepParams { seed, step: 1, shard: 0, _pad: 0 });
            let (threshold, scale) = dropout_constants(p).unwrap();
            let mut want = vec![0.0f32; n];
            dropout_ref::dropout_forward(&mut want, &x, seed, salt, threshold, scale);
            let gx = upload(gpu, "x", &x, hx);
            let gy = if hy { gpu.zeros_f16("y", n) } else { gpu.zeros("y", n) }.unwrap();
            kernels::run(gpu, &[&d.prepare(gpu, &gy, &gx, n, p, salt, &step, false).unwrap()]).unwrap();
            let got = gpu.read(&gy).unwrap();
            let rel = if hy { 1e-3 } else { 1e-6 };
            assert_close(&format!("dropout n={n} p={p} f16 x, y: {hx} {hy}"), &got, &fit(want, hy), 0.0, rel);
            if n > 1000 {
                let dropped = got.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
                assert!((dropped - p as f64).abs() < 0.005, "dropped {dropped}, p {p}");
            }
        }
    });
}

#[test]
fn embedding_matches_reference() {
    for_each_gpu(|gpu| {
        let e = Embedding::new(gpu).unwrap();
        // The last case's padding row (id 0, the most frequent) gets no gradient.
        for (tokens, vocab, channels, padding) in
            [(1, 1, 1, None), (7, 3, 5, None), (2048, 8000, 64, None), (300, 40, 8, Some(0))]
        {
            let mut rng = Rng::new(tokens as u64);
            let table = rng.vec_f32(vocab * channels, 1.0);
            let dout = rng.vec_f32(tokens * channels, 1.0);
            // Skewed ids: a few very frequent ones, as in text.
            let ids: Vec<u32> = (0..tokens)
                .map(|_| ((rng.next_u64() % vocab as u64) as u32).min((rng.next_u64() % 50) as u32))
                .collect();
            let (mut out, mut dtable) = (vec![0.0f32; tokens * channels], vec![0.0f32; vocab * channels]);
            emb_ref::embedding_forward(&mut out, &table, &ids, channels);
            emb_ref::embedding_backward(&mut dtable, &dout, &ids, channels, padding);
            if let Some(p) = padding {
                let row = &dtable[p as usize * channels..(p as usize + 1) * channels];
                assert!(ids.contains(&p) && row.iter().all(|&v| v == 0.0), "the padding row has no gradient");
            }
            let (order, starts) = group_ids(&ids, vocab, padding);
            let up = |name, v: &[f32]| gpu.upload(name, v).unwrap();
            let (gtable, gdout) = (up("table", &table), up("dout", &dout));
            let (gids, gorder, gstarts) = (
                gpu.upload_u32("ids", &ids).unwrap(),
                gpu.upload_u32("order", &order).unwrap(),
                gpu.upload_u32("starts", &starts).unwrap(),
            );
            let (gout, gdtable) =
                (gpu.zeros("out", tokens * channels).unwrap(), gpu.zeros("dtable", vocab * channels).unwrap());
            let f = e.fwd(gpu, &gout, &gtable, &gids, tokens, vocab, channels).unwrap();
            let b = e.bwd(gpu, &gdtable, &gdout, &gorder, &gstarts, tokens, vocab, channels).unwrap();
            kernels::run(gpu, &[&f, &b]).unwrap();
            let tag = format!("{tokens}x{vocab}x{channels} padding {padding:?}");
            assert_close(&format!("embedding {tag}"), &gpu.read(&gout).unwrap(), &out, 0.0, 0.0);
            // Summation order is the same as the reference's (token order): exact up to f32 vs f32.
            assert_close(&format!("embedding grad {tag}"), &gpu.read(&gdtable).unwrap(), &dtable, 1e-5, 1e-5);
        }
    });
}

#[test]
fn masks_match_reference() {
    for_each_gpu(|gpu| {
        let m = Mask::new(gpu).unwrap();
        for (dims, causal, lens) in [
            ([1, 1, 1, 1], true, None),
            ([2, 3, 5, 7], true, Some(vec![7u32, 2])),
            ([3, 2, 4, 4], false, Some(vec![0, 4, 1])),
            ([8, 8, 64, 64], true, None),
        ] {
            let n: usize = dims.iter().product();
            let x = Rng::new(n as u64).vec_f32(n, 1.0);
            let glens = lens.as_ref().map(|l| gpu.upload_u32("lens", l).unwrap());
            let (gx, gy, gdx) = (gpu.upload("x", &x).unwrap(), gpu.zeros("y", n).unwrap(), gpu.zeros("dx", n).unwrap());
            let f = m.prepare(gpu, &gy, &gx, glens.as_ref(), dims, causal, false).unwrap();
            let b = m.prepare(gpu, &gdx, &gx, glens.as_ref(), dims, causal, true).unwrap();
            kernels::run(gpu, &[&f, &b]).unwrap();
            for (backward, got) in [(false, &gy), (true, &gdx)] {
                let mut want = vec![0.0f32; n];
                mask_ref::mask_apply(&mut want, &x, dims, lens.as_deref(), causal, backward);
                assert_close(
                    &format!("mask {dims:?} causal {causal} bwd {backward}"),
                    &gpu.read(got).unwrap(),
                    &want,
                    0.0,
                    0.0,
                );
            }
        }
    });
}

#[test]
fn patchify_matches_reference_both_ways() {
    for_each_gpu(|gpu| {
        let l = Layout::new(gpu).unwrap();
        for (dims, p) in [([1, 1, 1, 1], 1), ([2, 3, 4, 6], 2), ([8, 3, 224, 224], 16), ([4, 1, 28, 28], 7)] {
            let n: usize = dims.iter().product();
            let img = Rng::new(n as u64).vec_f32(n, 1.0);
            let mut patches = vec![0.0f32; n];
            layout_ref::patchify(&mut patches, &img, dims, p, false);
            let mut back = vec![0.0f32; n];
            layout_ref::patchify(&mut back, &patches, dims, p, true);
            assert_eq!(back, img, "the reference round trip");
            let (gimg, gpat, gback) =
                (gpu.upload("img", &img).unwrap(), gpu.zeros("pat", n).unwrap(), gpu.zeros("back", n).unwrap());
            let f = l.patchify(gpu, &gpat, &gimg, dims, p, false).unwrap();
            let b = l.patchify(gpu, &gback, &gpat, dims, p, true).unwrap();
            kernels::run(gpu, &[&f, &b]).unwrap();
            assert_close(&format!("patchify {dims:?}/{p}"), &gpu.read(&gpat).unwrap(), &patches, 0.0, 0.0);
            assert_close(&format!("unpatchify {dims:?}/{p}"), &gpu.read(&gback).unwrap(), &img, 0.0, 0.0);
        }
        let t = gpu.zeros("t", 30).unwrap();
        assert!(l.patchify(gpu, &t, &t, [1, 1, 5, 6], 2, false).is_err(), "5 rows are not whole 2x2 patches");
    });
}
