//! Per-node timing of a planned graph (`wgformer bench attention`, profiling).

use super::Executor;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::Op;

impl Executor {
    /// Times every node on its own (one pass each, GPU timestamps where available) and returns
    /// the total milliseconds per op name, largest first. Inputs and parameters must be set.
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<(&'static str, f64, usize)>> {
        let timer = crate::kernels::Timer::new(gpu);
        let mut per_op: std::collections::BTreeMap<&'static str, (f64, usize)> = Default::default();
        for (node, dispatches) in self.graph.nodes.iter().zip(&self.node_dispatches) {
            let ms = timer.time_once(gpu, dispatches)?;
            let name = match node.op {
                Op::MatMul { batched: true, .. } => "matmul (batched)",
                _ => node.op.name(),
            };
            let e = per_op.entry(name).or_default();
            e.0 += ms;
            e.1 += 1;
        }
        if let Some(opt) = &self.optimizer {
            let e = per_op.entry("adam").or_default();
            e.0 += timer.time_once(gpu, &opt.updates)?;
            e.1 += opt.updates.len();
        }
        let mut out: Vec<(&'static str, f64, usize)> = per_op.into_iter().map(|(k, (ms, n))| (k, ms, n)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }
}
