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

    /// Milliseconds of one run of the nodes `keep` selects, recorded into one pass as a step
    /// records them (no warm-up: the caller runs it more than once).
    pub fn time_nodes(&self, gpu: &Gpu, keep: impl Fn(&Op) -> bool) -> Result<f64> {
        let dispatches: Vec<_> = self
            .graph
            .nodes
            .iter()
            .zip(&self.node_dispatches)
            .filter(|(node, _)| keep(&node.op))
            .flat_map(|(_, d)| d.iter().cloned())
            .collect();
        crate::kernels::Timer::new(gpu).time_once(gpu, &dispatches)
    }

    /// Times every matmul node on its own and groups them by shape: one row per
    /// (batch, M, N, K, transposes) with the total milliseconds, the node count and the
    /// floating-point operations, slowest first. For tuning tiles on a GPU.
    pub fn profile_matmuls(&self, gpu: &Gpu) -> Result<Vec<MatmulProfile>> {
        let timer = crate::kernels::Timer::new(gpu);
        let mut rows: std::collections::BTreeMap<String, MatmulProfile> = Default::default();
        for (node, dispatches) in self.graph.nodes.iter().zip(&self.node_dispatches) {
            let Some((trans_a, trans_b, _, _)) = node.op.product() else { continue };
            let Some([batch, m, n, k]) = self.graph.matmul_product(node) else { continue };
            let t = |x: bool| if x { 'T' } else { 'N' };
            let shape = format!("{batch}x{m}x{n}x{k} {}{}", t(trans_a), t(trans_b));
            let ms = timer.time_once(gpu, dispatches)?;
            let row = rows.entry(shape.clone()).or_insert(MatmulProfile { shape, ms: 0.0, nodes: 0, flops: 0.0 });
            row.ms += ms;
            row.nodes += 1;
            row.flops += 2.0 * (batch * m * n * k) as f64;
        }
        let mut out: Vec<MatmulProfile> = rows.into_values().collect();
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(out)
    }
}

/// Matmul nodes of one shape in a profile: `shape` is "BxMxNxK" and the transposes of A and
/// B (N or T each).
#[derive(Clone, Debug)]
pub struct MatmulProfile {
    pub shape: String,
    pub ms: f64,
    pub nodes: usize,
    pub flops: f64,
}
