//! Criterion benches of the kernels `wgformer bench` times: the same cases, timed by
//! criterion with each sample one submit (GPU timestamps where the adapter has them).
//! Run with `cargo bench`; pick an adapter with WGFORMER_BACKEND / WGFORMER_ADAPTER.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use wgformer::bench::{cases, Timer, KERNELS};
use wgformer::Gpu;

fn kernels(c: &mut Criterion) {
    let gpu = match Gpu::from_env() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("no GPU adapter, skipping the kernel benches: {e}");
            return;
        }
    };
    let timer = Timer::new(&gpu);
    for kernel in KERNELS {
        let mut group = c.benchmark_group(*kernel);
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        for case in cases(&gpu, kernel).expect("bench cases build") {
            // Elements are floating-point operations for matmul.
            if let Some(f) = case.flops {
                group.throughput(Throughput::Elements(f as u64));
            } else if let Some(b) = case.bytes {
                group.throughput(Throughput::Bytes(b as u64));
            }
            group.bench_function(format!("{} {}", case.kernel, case.shape), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| Duration::from_secs_f64(timer.time_once(&gpu, &case.dispatches).expect("run") / 1e3))
                        .sum()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
