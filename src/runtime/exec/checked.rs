//! Checked mode: every node on its own, compared with the CPU reference.

use super::Executor;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels;

impl Executor {
    /// Checked mode: runs the graph node by node (one submit each) and compares every output
    /// with the CPU reference computed from the GPU's own inputs to that node. Returns the
    /// first node that differs beyond `atol + rtol * |want|`. Inputs and parameters must be set.
    /// Dropout draws from `seed`.
    pub fn check_nodes(&self, gpu: &Gpu, seed: u32, atol: f64, rtol: f64) -> Result<()> {
        self.set_seed(gpu, seed, 0, 0);
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.graph.tensors.len()];
        for (i, node) in self.graph.nodes.iter().enumerate() {
            // Inputs are read before the node runs: an in-place op writes over one of them.
            for t in &node.inputs {
                values[t.0] = self.read(gpu, *t)?;
            }
            kernels::run(gpu, &self.node_dispatches[i].iter().collect::<Vec<_>>())?;
            let want = crate::reference::graph::run_node(&self.graph, node, &values, seed);
            for (t, w) in node.outputs.iter().zip(want) {
                let got = self.read(gpu, *t)?;
                if let Some(detail) = first_mismatch(&got, &w, atol, rtol) {
                    let tensor = self.graph.desc(*t).name.clone();
                    return Err(Error::Check { node: i, op: node.op.name(), tensor, detail });
                }
            }
        }
        Ok(())
    }
}

// `!(err <= tol)` on purpose: a NaN error is a mismatch.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn first_mismatch(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Option<String> {
    got.iter().zip(want).enumerate().find_map(|(i, (&g, &w))| {
        let err = (g as f64 - w as f64).abs();
        (!(err <= atol + rtol * (w as f64).abs())).then(|| format!("element {i}: got {g}, want {w}"))
    })
}
