//! One device shared by several threads while the CPU is saturated: every thread's results are
//! right and nothing panics. On GL, wgpu gives up (panics) when a thread waits too long for the
//! device's context; wgformer's calls take turns in the `Gpu` instead, so the wait happens there.
//!
//! `WGFORMER_STRESS_ROUNDS` sets the rounds per worker (default 3).

use crate::common;
use common::{for_each_gpu, Rng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wgformer::graph::autodiff::backward;
use wgformer::graph::{Dtype, Role, TensorId};
use wgformer::kernels::{self, Matmul, MatmulShape};
use wgformer::reference::graph::evaluate;
use wgformer::runtime::exec::{Executor, HostData, StepOptions};
use wgformer::Gpu;

const WORKERS: usize = 3;

fn rounds() -> usize {
    common::test_settings().stress_rounds
}

/// Side of the products the long jobs repeat.
const SIZE: usize = 512;

/// How many repeats of one product make a submit that holds the device for about `seconds`
/// (timed here, so the holds are long on fast and slow machines alike).
fn repeats_for(gpu: &Gpu, matmul: &Matmul, seconds: f64) -> usize {
    let (a, b, c) = (
        gpu.zeros("a", SIZE * SIZE).unwrap(),
        gpu.zeros("b", SIZE * SIZE).unwrap(),
        gpu.zeros("c", SIZE * SIZE).unwrap(),
    );
    let d = matmul.fwd(gpu, &c, &a, &b, None, &MatmulShape::packed(1, SIZE, SIZE, SIZE, false, false)).unwrap();
    kernels::run(gpu, &[&d]).unwrap(); // compiles the pipeline
    let start = Instant::now();
    kernels::run(gpu, &[&d, &d]).unwrap();
    let one = start.elapsed().as_secs_f64() / 2.0;
    ((seconds / one).ceil() as usize).clamp(1, 5000)
}

/// One submit of `repeats` products (a long hold of the device), checked at sampled entries
/// against an f64 dot product.
fn long_job(gpu: &Gpu, matmul: &Matmul, seed: u64, repeats: usize) {
    let mut rng = Rng::new(seed);
    let n = SIZE;
    let a = rng.vec_f32(n * n, 1.0);
    let b = rng.vec_f32(n * n, 1.0);
    let ta = gpu.upload("stress.a", &a).unwrap();
    let tb = gpu.upload("stress.b", &b).unwrap();
    let tc = gpu.zeros("stress.c", n * n).unwrap();
    let d = matmul.fwd(gpu, &tc, &ta, &tb, None, &MatmulShape::packed(1, n, n, n, false, false)).unwrap();
    kernels::run(gpu, &vec![&d; repeats]).unwrap();
    let c = gpu.read(&tc).unwrap();
    for _ in 0..64 {
        let (i, j) = ((rng.next_u64() as usize) % n, (rng.next_u64() as usize) % n);
        let want: f64 = (0..n).map(|p| a[i * n + p] as f64 * b[p * n + j] as f64).sum();
        let got = c[i * n + j] as f64;
        // f32 accumulation over n terms of size <= 1: the error grows like sqrt(n) ulps.
        assert!((got - want).abs() <= 1e-5 * (n as f64).sqrt() * (1.0 + want.abs()), "c[{i},{j}] = {got}, want {want}");
    }
}

/// Many short calls: uploads, reads, writes and drops of small tensors.
fn short_calls(gpu: &Gpu, seed: u64) {
    let mut rng = Rng::new(seed);
    for round in 0..20 {
        let data = rng.vec_f32(1 + round * 37, 10.0);
        let t = gpu.upload("stress.small", &data).unwrap();
        assert_eq!(gpu.read(&t).unwrap(), data);
        let doubled: Vec<f32> = data.iter().map(|x| x * 2.0).collect();
        gpu.write(&t, &doubled).unwrap();
        assert_eq!(gpu.read(&t).unwrap(), doubled);
    }
}

/// Executors built, stepped and dropped: the loss and gradients of a small graph against the
/// CPU reference.
fn executor_job(gpu: &Gpu, seed: u64) {
    let t = common::graphs::vit_like();
    let mut graph = t.graph;
    let grads = backward(&mut graph, t.loss).unwrap();
    let mut values = common::random_values(&graph, seed);
    let exec = Executor::new(gpu, graph.clone(), Some(t.loss), Some(&grads)).unwrap();
    let mut inputs: Vec<(TensorId, HostData)> = Vec::new();
    for (i, d) in graph.tensors.iter().enumerate() {
        if d.role != Role::Activation && d.dtype == Dtype::F32 {
            inputs.push((TensorId(i), HostData::F32(&values[i])));
        }
    }
    for (id, v) in &t.targets {
        inputs.push((*id, HostData::U32(v)));
    }
    let loss = exec.step(gpu, &inputs, &StepOptions::default()).unwrap();
    let got: Vec<(TensorId, Vec<f32>)> = grads.of.values().map(|g| (*g, exec.read(gpu, *g).unwrap())).collect();
    drop(exec);
    for (id, v) in &t.targets {
        values[id.0] = v.iter().map(|&x| x as f32).collect();
    }
    evaluate(&graph, &mut values);
    common::assert_close("stress loss", &[loss], &values[t.loss.0], 1e-5, 1e-4);
    for (g, v) in got {
        common::assert_close("stress gradient", &v, &values[g.0], 1e-5, 1e-3);
    }
}

/// Busy threads on every core, until `stop`.
fn saturate_cpu(stop: &AtomicBool) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        std::hint::black_box(x);
    }
}

#[test]
fn one_device_shared_by_threads_under_cpu_load() {
    for_each_gpu(|gpu| {
        // On GL, longer than wgpu's wait for the context (6 s in wgpu-hal 30); CPU load makes
        // them longer still.
        let seconds = if gpu.info.backend == wgformer::wgpu::Backend::Gl { 8.0 } else { 2.0 };
        let repeats = repeats_for(gpu, &Matmul::new(gpu).unwrap(), seconds);
        eprintln!("long jobs: {repeats} products of {SIZE}^3 in one submit");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let burners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
                .map(|_| s.spawn(|| saturate_cpu(&stop)))
                .collect();
            let workers: Vec<_> = (0..WORKERS)
                .map(|w| {
                    s.spawn(move || {
                        // Each worker builds its own kernels: pipeline creation is a use of
                        // the context too.
                        let matmul = Matmul::new(gpu).unwrap();
                        for r in 0..rounds() {
                            let seed = (w * 1000 + r) as u64;
                            match (w + r) % 3 {
                                0 => long_job(gpu, &matmul, seed, repeats),
                                1 => short_calls(gpu, seed),
                                _ => executor_job(gpu, seed),
                            }
                        }
                    })
                })
                .collect();
            let results: Vec<_> = workers.into_iter().map(|h| h.join()).collect();
            stop.store(true, Ordering::Relaxed);
            for b in burners {
                b.join().unwrap();
            }
            for (w, r) in results.into_iter().enumerate() {
                if let Err(e) = r {
                    let msg =
                        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                    panic!("worker {w} panicked: {}", msg.unwrap_or_default());
                }
            }
        });
    });
}
