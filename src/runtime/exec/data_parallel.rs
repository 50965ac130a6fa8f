//! Data-parallel steps: the step's nodes are split into buckets at the points where gradients
//! are finished (reverse layer order, as the backward produces them). Every bucket is its own
//! submit that ends by copying its gradients into a readback buffer; all are submitted at
//! once, so while the host reads bucket k and the group sums it, the GPU computes bucket k+1.
//! When every sum is back the gradients are written back and clipping and Adam run in one more
//! submit. Single-process training keeps its one submit per step ([`Executor::step`]).

use super::{Executor, HostData, StepOptions};
use crate::dist::collective::{Collective, Pending};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Held};
use crate::graph::TensorId;
use std::ops::Range;
use std::time::Instant;

/// Gradient bytes per bucket: a few buckets even for small models, so that their sums overlap
/// the backward, and no more than 16 MiB each.
fn bucket_bytes(total: u64) -> u64 {
    (total / 8).clamp(256 << 10, 16 << 20)
}

/// One bucket: the nodes it runs and the gradients finished by its end.
pub(super) struct Bucket {
    nodes: Range<usize>,
    /// (gradient, first float in the bucket, floats)
    grads: Vec<(TensorId, usize, usize)>,
    floats: usize,
    staging: Held<wgpu::Buffer>,
}

/// What the last data-parallel step spent on communication.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Submits the forward and backward were split into.
    pub buckets: usize,
    /// Gradient bytes each rank sent.
    pub bytes: u64,
    /// Seconds the sums took, added over buckets (as the communication thread saw them).
    pub comm_seconds: f64,
    /// Seconds the host waited for sums after the GPU had finished the backward: the part of
    /// the communication not hidden behind it.
    pub exposed_seconds: f64,
    /// Seconds of the whole step.
    pub step_seconds: f64,
}

impl CommStats {
    /// The share of communication hidden behind the backward pass (1: all of it).
    pub fn hidden_share(&self) -> f64 {
        if self.comm_seconds <= 0.0 {
            return 1.0;
        }
        (1.0 - self.exposed_seconds / self.comm_seconds).clamp(0.0, 1.0)
    }
}

impl Executor {
    /// The buckets of this executor's gradients (made on the first data-parallel step).
    fn buckets(&self, gpu: &Gpu) -> Result<&[Bucket]> {
        if let Some(b) = self.buckets.get() {
            return Ok(b);
        }
        let made = self.make_buckets(gpu)?;
        Ok(self.buckets.get_or_init(|| made))
    }

    fn make_buckets(&self, gpu: &Gpu) -> Result<Vec<Bucket>> {
        let Some(opt) = &self.optimizer else {
            return Err(Error::Config("a data-parallel step needs an executor with gradients".into()));
        };
        let producer = |t: TensorId| self.graph.nodes.iter().rposition(|n| n.outputs.contains(&t));
        let mut finished: Vec<(usize, TensorId)> = opt.grads.iter().map(|&g| (producer(g).unwrap_or(0), g)).collect();
        finished.sort();
        finished.dedup();
        if finished.is_empty() {
            return Err(Error::Config("a data-parallel step needs at least one parameter with a gradient".into()));
        }
        let total: u64 = finished.iter().map(|(_, g)| self.graph.desc(*g).len() as u64 * 4).sum();
        let target = bucket_bytes(total);
        let mut buckets = Vec::new();
        let (mut start, mut grads, mut floats) = (0, Vec::new(), 0);
        for (i, &(node, g)) in finished.iter().enumerate() {
            let n = self.graph.desc(g).len();
            grads.push((g, floats, n));
            floats += n;
            let last = i + 1 == finished.len();
            if floats as u64 * 4 >= target || last {
                let end = if last { self.graph.nodes.len() } else { node + 1 };
                buckets.push((start..end, std::mem::take(&mut grads), floats));
                (start, floats) = (end, 0);
            }
        }
        buckets
            .into_iter()
            .map(|(nodes, grads, floats)| {
                let _turn = gpu.turn();
                // One more float: the last bucket also carries the loss.
                let staging = gpu.hold(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gradient bucket readback"),
                    size: (floats as u64 + 1) * 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
                Ok(Bucket { nodes, grads, floats, staging })
            })
            .collect()
    }

    /// One data-parallel training step: like [`Executor::step`] on this rank's share of the
    /// global batch, but the gradients are summed over `group` before clipping and Adam, so
    /// that every rank applies the same update. `opts.loss_weight` must be this rank's share
    /// of the global loss (its examples or target tokens over the global batch's), and the
    /// loss returned is the global batch's.
    pub fn step_data_parallel(
        &self,
        gpu: &Gpu,
        inputs: &[(TensorId, HostData<'_>)],
        opts: &StepOptions,
        group: &dyn Collective,
    ) -> Result<f32> {
        let started = Instant::now();
        let (Some(loss), Some(opt)) = (self.loss, &self.optimizer) else {
            return Err(Error::Config("a data-parallel step needs a loss and gradients".into()));
        };
        let buckets = self.buckets(gpu)?;
        let clip = self.prepare_step(gpu, inputs, opts, group.rank() as u32)?;
        let weight = opts.loss_weight.unwrap_or(1.0);
        let last = buckets.len() - 1;
        // A bucket's values, read back: the last also carries this rank's share of the loss.
        let values_of = |k: usize, bytes: Vec<u8>| {
            let mut values = bytemuck::pod_collect_to_vec::<u8, f32>(&bytes);
            match k == last {
                true => values[buckets[k].floats] *= weight,
                false => values.truncate(buckets[k].floats),
            }
            values
        };
        let (mut submitted, mut maps) = (Vec::with_capacity(buckets.len()), Vec::with_capacity(buckets.len()));
        let mut pending: Vec<Pending> = Vec::with_capacity(buckets.len());
        for (k, b) in buckets.iter().enumerate() {
            let mut enc = gpu.encoder("data-parallel bucket");
            {
                let mut pass = enc
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bucket"), timestamp_writes: None });
                for d in self.node_dispatches[b.nodes.clone()].iter().flatten() {
                    d.record(&mut pass);
                }
            }
            for &(g, at, n) in &b.grads {
                enc.copy_buffer_to_buffer(&self.tensors[g.0].buffer, 0, &b.staging, at as u64 * 4, n as u64 * 4);
            }
            if k == last {
                enc.copy_buffer_to_buffer(&self.tensors[loss.0].buffer, 0, &b.staging, b.floats as u64 * 4, 4);
            }
            submitted.push(gpu.scoped("data-parallel step", || gpu.submit(enc.finish()))?);
            maps.push(gpu.request_map(&b.staging));
            // Where a submit returns only once the GPU is free (lavapipe), earlier buckets are
            // done by now: start their sums while this one computes.
            gpu.poll_now()?;
            while pending.len() < k {
                let j = pending.len();
                match maps[j].try_recv() {
                    Ok(mapped) => {
                        mapped?;
                        let bytes = gpu.take_mapped(&buckets[j].staging, (buckets[j].floats as u64 + 1) * 4)?;
                        pending.push(group.start_sum(values_of(j, bytes)));
                    }
                    Err(_) => break,
                }
            }
        }
        self.host_ns.store(started.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        // The rest, in order, as the GPU finishes them.
        for j in pending.len()..buckets.len() {
            gpu.wait_for(submitted[j].clone())?;
            maps[j].recv().map_err(|_| Error::Readback("a bucket's mapping was dropped".into()))??;
            let bytes = gpu.take_mapped(&buckets[j].staging, (buckets[j].floats as u64 + 1) * 4)?;
            pending.push(group.start_sum(values_of(j, bytes)));
        }
        let backward_done = Instant::now();
        let (mut comm_seconds, mut global_loss) = (0.0, f32::NAN);
        for (k, (b, p)) in buckets.iter().zip(pending).enumerate() {
            let reduced = pollster::block_on(p)?;
            comm_seconds += reduced.seconds;
            if reduced.data.len() < b.floats {
                return Err(Error::Distributed(format!("a bucket came back with {} values", reduced.data.len())));
            }
            for &(g, at, n) in &b.grads {
                gpu.write_raw(&self.tensors[g.0], &reduced.data[at..at + n])?;
            }
            if k + 1 == buckets.len() {
                global_loss = reduced.data.get(b.floats).copied().unwrap_or(f32::NAN);
            }
        }
        let exposed_seconds = backward_done.elapsed().as_secs_f64();
        let mut enc = gpu.encoder("data-parallel update");
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("update"), timestamp_writes: None });
            self.record_optimizer(&mut pass, opts, clip);
        }
        let clipped = self.clipping(opts, clip);
        if clipped.is_some() {
            enc.copy_buffer_to_buffer(&opt.grad_scale.buffer, 4, &self.loss_staging, 4, 4);
        }
        gpu.scoped("data-parallel update", || gpu.submit(enc.finish()))?;
        let norm = match clipped {
            Some(_) => {
                let bytes = pollster::block_on(gpu.map_read(&self.loss_staging, 8))?;
                Some(bytemuck::pod_read_unaligned::<f32>(&bytes[4..8]))
            }
            None => {
                gpu.wait()?;
                None
            }
        };
        if let Ok(mut slot) = self.last_norm.lock() {
            *slot = norm;
        }
        let stats = CommStats {
            buckets: buckets.len(),
            bytes: buckets.iter().map(|b| b.floats as u64 * 4).sum(),
            comm_seconds,
            exposed_seconds,
            step_seconds: started.elapsed().as_secs_f64(),
        };
        if let Ok(mut slot) = self.comm.lock() {
            *slot = stats;
        }
        Ok(global_loss)
    }

    /// Communication of the last data-parallel step.
    pub fn last_comm(&self) -> CommStats {
        self.comm.lock().map(|s| *s).unwrap_or_default()
    }
}
