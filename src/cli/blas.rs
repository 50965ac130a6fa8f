//! `bench matmul --compare-blas`: the same products as a CPU sgemm (the matrixmultiply crate on
//! every core), timed in the same run: on a machine without a GPU, the ceiling for any fp32
//! matmul, and on one with a GPU, what the CPU alone would give.

use std::time::Instant;
use wgformer::bench::BenchResult;
use wgformer::kernels::MatmulShape;

/// Median milliseconds of `runs` CPU products of `shape` (batch 1), after one warm-up.
fn sgemm_ms(shape: &MatmulShape, runs: usize) -> f64 {
    let (m, n, k) = (shape.m, shape.n, shape.k);
    let a = vec![0.5f32; m * k];
    let b = vec![0.5f32; k * n];
    let mut c = vec![0.0f32; m * n];
    // Row-major A (M, K); B as (K, N), or (N, K) when transposed.
    let (rsb, csb) = if shape.trans_b { (1, k as isize) } else { (n as isize, 1) };
    let mut run = || {
        let start = Instant::now();
        // SAFETY: the pointers cover m*k, k*n and m*n elements laid out as the strides say.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        start.elapsed().as_secs_f64() * 1e3
    };
    run();
    let mut times: Vec<f64> = (0..runs.max(1)).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A `cpu_sgemm` row after each matmul row, with the GPU kernel's rate as a multiple of it.
pub fn compare(
    shapes: &[(String, MatmulShape)],
    results: Vec<BenchResult>,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Vec<BenchResult> {
    // matrixmultiply reads this once, when its first product starts its thread pool.
    let threads = wgformer::settings::cpu_sgemm_threads();
    let mut out = Vec::new();
    for r in results {
        let shape =
            shapes.iter().find(|(label, s)| r.kernel == "matmul" && *label == r.shape && s.batch == 1 && !s.trans_a);
        let gpu_rate = r.gflops;
        out.push(r.clone());
        let Some((label, shape)) = shape else { continue };
        let ms = sgemm_ms(shape, runs);
        let gflops = shape.flops() / (ms / 1e3) / 1e9;
        let ratio = gpu_rate.map(|g| format!("wgformer at {:.1}% of this", 100.0 * g / gflops)).unwrap_or_default();
        let row = BenchResult {
            kernel: "cpu_sgemm".into(),
            shape: label.clone(),
            dtype: "f32".into(),
            median_ms: ms,
            gflops: Some(gflops),
            gbps: None,
            memory_mib: None,
            note: Some(format!("matrixmultiply, {threads} threads; {ratio}")),
        };
        progress(&wgformer::bench::row(&row));
        out.push(row);
    }
    out
}
