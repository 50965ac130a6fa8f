//! Timing a group of dispatches: GPU timestamps around one pass where the adapter has them,
//! else the wall clock around a blocking submit. Used by `bench` and the executor's profile.

use super::Dispatch;
use crate::error::Result;
use crate::gpu::{Gpu, Held};
use std::time::Instant;

/// Times one step made of `dispatches` (one pass, one submit) and returns the time of each of
/// `runs` runs in milliseconds, after one untimed warm-up run.
pub struct Timer {
    timestamps: Option<Held<(wgpu::QuerySet, wgpu::Buffer)>>,
}

impl Timer {
    pub fn new(gpu: &Gpu) -> Self {
        let timestamps = gpu.caps.timestamps.then(|| {
            let _turn = gpu.turn();
            let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            gpu.hold((set, resolve))
        });
        Timer { timestamps }
    }

    /// "gpu timestamps" or "wall clock".
    pub fn method(&self) -> &'static str {
        if self.timestamps.is_some() {
            "gpu timestamps"
        } else {
            "wall clock"
        }
    }

    /// Milliseconds of one run of `dispatches`.
    pub fn time_once(&self, gpu: &Gpu, dispatches: &[Dispatch]) -> Result<f64> {
        let mut enc = gpu.encoder("bench");
        {
            let timestamp_writes = self.timestamps.as_deref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bench"), timestamp_writes });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        if let Some((set, resolve)) = self.timestamps.as_deref() {
            enc.resolve_query_set(set, 0..2, resolve, 0);
        }
        let start = Instant::now();
        gpu.scoped("bench submit", || gpu.submit(enc.finish()))?;
        gpu.wait()?;
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        match self.timestamps.as_deref() {
            Some((_, resolve)) => {
                let bytes = gpu.read_bytes(resolve, 16)?;
                let ticks: [u64; 2] = bytemuck::pod_read_unaligned(&bytes);
                let period_ns = gpu.queue.get_timestamp_period() as f64;
                Ok(ticks[1].saturating_sub(ticks[0]) as f64 * period_ns / 1e6)
            }
            None => Ok(wall_ms),
        }
    }

    /// Median milliseconds over `runs` runs after one warm-up.
    pub fn median_ms(&self, gpu: &Gpu, dispatches: &[Dispatch], runs: usize) -> Result<f64> {
        self.time_once(gpu, dispatches)?;
        let mut times = (0..runs.max(1)).map(|_| self.time_once(gpu, dispatches)).collect::<Result<Vec<_>>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}
