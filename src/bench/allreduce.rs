//! `bench allreduce`: the bandwidth of the gradient sums of data-parallel training, at the
//! sizes of a gradient bucket and of the presets' whole gradients, between the ranks of an
//! MPI job. Bandwidth is reported as NCCL's tests do: algorithm bandwidth (bytes / time) and
//! bus bandwidth (x 2(N-1)/N, what each link carries in a ring), which compares across N.

use super::BenchResult;
use crate::dist::collective::{sum, Collective};
use crate::error::Result;
use std::time::Instant;

/// Gradient floats per case: the executor's bucket sizes, then the presets' gradients.
fn cases() -> Result<Vec<(String, usize)>> {
    let mut out = vec![("bucket 256 KiB".to_string(), 64 << 10), ("bucket 16 MiB".to_string(), 4 << 20)];
    for model in ["vit-tiny", "vit-base", "transformer-small", "transformer-base"] {
        if let Some(n) = super::step::gradient_floats(model)? {
            out.push((format!("{model} gradients"), n));
        }
    }
    Ok(out)
}

/// Times `runs` sums (after one warm-up) of every case over `group`; every rank must call it.
pub fn run_allreduce(group: &dyn Collective, runs: usize, progress: &mut dyn FnMut(&str)) -> Result<Vec<BenchResult>> {
    let n = group.size();
    let mut results = Vec::new();
    for (name, floats) in cases()? {
        let data = vec![1.0f32; floats];
        let mut times = Vec::new();
        for run in 0..=runs.max(1) {
            let send = data.clone();
            let start = Instant::now();
            let out = sum(group, send)?;
            let s = start.elapsed().as_secs_f64();
            if out.first().is_some_and(|&v| v != n as f32) {
                return Err(crate::Error::Distributed(format!("a sum of {n} ones gave {}", out[0])));
            }
            if run > 0 {
                times.push(s);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let bytes = floats as f64 * 4.0;
        let algo = bytes / median / 1e9;
        let bus = algo * 2.0 * (n as f64 - 1.0) / n as f64;
        let r = BenchResult {
            kernel: "allreduce".into(),
            shape: format!("{name} ({:.1} MiB)", bytes / (1 << 20) as f64),
            dtype: "f32".into(),
            median_ms: median * 1e3,
            gflops: None,
            gbps: Some(bus),
            memory_mib: None,
            note: Some(format!("{n} ranks; algorithm bandwidth {algo:.2} GB/s, bus bandwidth {bus:.2} GB/s")),
        };
        progress(&super::row(&r));
        results.push(r);
    }
    Ok(results)
}
