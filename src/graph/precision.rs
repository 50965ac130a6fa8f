//! Mixed precision as a rewrite of a differentiated graph: every product reads f16 copies of
//! its two operands (autocast's rule for matmuls), made by `CastF16` nodes placed just before
//! the first product that needs them.
//!
//! An activation that only products read is cast once and its f32 original dies at the cast,
//! so the copy a backward product reads (a layer's input, kept for its weight gradient) is
//! stored in f16: half the memory. Anything else (parameters, inputs, activations that other
//! ops read too) gets a short-lived copy per product, so that no f32 tensor and its f16 copy
//! are both kept across the step.
//!
//! A tensor whose writer and every reader have f16 forms (a product read only by GELU or by
//! attention, attention's output and gradients, the cross-entropy's gradient, a product read
//! only by products) is written in f16 in the first place: no f32 tensor, no cast. The
//! residual stream, layernorm and softmax statistics and the parameters' gradients stay f32,
//! as under PyTorch's autocast.

use super::{Dtype, Graph, Node, Op, Role, TensorId};

/// Whether `op` has a kernel form reading its input `pos` in f16.
pub fn reads_half(op: &Op, pos: usize) -> bool {
    match op {
        Op::MatMul { .. } => pos < 2,
        Op::Gelu { .. } | Op::Relu | Op::CrossEntropy { .. } | Op::SumRows => pos == 0,
        Op::Dropout { .. } | Op::DropoutBwd { .. } => pos == 0,
        // x and dy.
        Op::GeluBwd { .. } | Op::ReluBwd => pos < 2,
        Op::Attention { .. } => pos < 3,
        // q, k, v, o and do.
        Op::AttentionBwd { .. } => pos < 5,
        _ => false,
    }
}

/// Whether `op` has a kernel form writing its output `pos` in f16: products, the activations
/// and dropout and their gradients, and the cross-entropy's gradient (written with the loss scale
/// applied, see crossentropy.wgsl).
pub fn writes_half(op: &Op, pos: usize) -> bool {
    match op {
        Op::MatMul { .. } | Op::Gelu { .. } | Op::GeluBwd { .. } | Op::Relu | Op::ReluBwd => pos == 0,
        Op::Dropout { .. } | Op::DropoutBwd { .. } => pos == 0,
        // o; dq, dk and dv.
        Op::Attention { .. } => pos == 0,
        Op::AttentionBwd { .. } => pos < 3,
        Op::CrossEntropy { .. } => pos == 1,
        _ => false,
    }
}

/// The operands of `node` that its kernels read or write in one type: attention's q, k and v
/// (forward and backward), and its backward's gradients (do in, dq, dk and dv out).
fn tied(node: &Node) -> Vec<Vec<TensorId>> {
    let (i, o) = (&node.inputs, &node.outputs);
    match node.op {
        Op::Attention { .. } => vec![i[..3].to_vec()],
        Op::AttentionBwd { .. } => vec![i[..3].to_vec(), vec![i[4], o[0], o[1], o[2]]],
        _ => vec![],
    }
}

/// Where a graph's f16 values live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F16Storage {
    /// f16 tensors, two halves a word: half the memory and traffic of f32.
    Half,
    /// f32 tensors holding f16 values, for devices where f16 loads are slow (CPU adapters):
    /// the same numbers through the f32 kernels.
    RoundedF32,
}

impl Graph {
    /// Makes every MatMul read f16 copies of its operands (its bias stays f32), and keeps in
    /// f16 every tensor whose writer has a form writing it so and whose every reader has a
    /// form reading it so (see [`reads_half`] and [`writes_half`]), stored as `storage` says.
    /// Run after differentiation, so that the backward's products are cast too. What is
    /// already f16 is left alone, so a second call changes nothing. Returns the number of
    /// tensors made f16.
    pub fn cast_products_to_f16(&mut self, storage: F16Storage) -> usize {
        self.half_outputs(storage) + self.cast_operands(storage)
    }

    /// Outputs kept in f16: written so by their node (f16 storage), or rounded by a cast right
    /// after it (rounded storage: the f32 output dies at the cast).
    fn half_outputs(&mut self, storage: F16Storage) -> usize {
        let n = self.tensors.len();
        let (mut readers, mut all_read_half) = (vec![0usize; n], vec![true; n]);
        for node in &self.nodes {
            for (pos, t) in node.inputs.iter().enumerate() {
                readers[t.0] += 1;
                all_read_half[t.0] &= reads_half(&node.op, pos);
            }
        }
        let mut target = vec![false; n];
        for node in &self.nodes {
            for (pos, o) in node.outputs.iter().enumerate() {
                target[o.0] = writes_half(&node.op, pos)
                    && readers[o.0] > 0
                    && all_read_half[o.0]
                    && self.desc(*o).dtype == Dtype::F32;
            }
        }
        // Tensors one alias of a kernel's f16 forms types: all f16 or none.
        let mut changed = true;
        while changed {
            changed = false;
            for node in &self.nodes {
                for group in tied(node) {
                    if !group.iter().all(|t| target[t.0]) {
                        for t in group {
                            changed |= std::mem::replace(&mut target[t.0], false);
                        }
                    }
                }
            }
        }
        let count = target.iter().filter(|&&t| t).count();
        if storage == F16Storage::Half {
            for (t, desc) in self.tensors.iter_mut().enumerate().take(n) {
                if target[t] {
                    desc.dtype = Dtype::F16;
                }
            }
            return count;
        }
        let mut copy_of: Vec<Option<TensorId>> = vec![None; n];
        for mut node in std::mem::take(&mut self.nodes) {
            for t in node.inputs.iter_mut() {
                *t = copy_of[t.0].unwrap_or(*t);
            }
            let outputs = node.outputs.clone();
            self.nodes.push(node);
            for o in outputs.into_iter().filter(|o| target[o.0]) {
                copy_of[o.0] = Some(self.push_cast(o, Dtype::F32));
            }
        }
        count
    }

    /// A CastF16 node of `t` into a new tensor of `dtype`, appended.
    fn push_cast(&mut self, t: TensorId, dtype: Dtype) -> TensorId {
        let d = self.desc(t);
        let name = format!("{}.f16#{}", d.name, self.nodes.len());
        let copy = self.add_tensor(name, d.shape.clone(), dtype, Role::Activation);
        self.nodes.push(Node { op: Op::CastF16, inputs: vec![t], outputs: vec![copy] });
        copy
    }

    /// Every product's operands read from f16 copies (see the module's doc for which are
    /// shared).
    fn cast_operands(&mut self, storage: F16Storage) -> usize {
        let n = self.tensors.len();
        let mut made_by_cast = vec![false; n];
        let mut only_products = vec![true; n];
        for node in &self.nodes {
            for o in &node.outputs {
                made_by_cast[o.0] = node.op == Op::CastF16;
            }
            for (pos, t) in node.inputs.iter().enumerate() {
                if !(matches!(node.op, Op::MatMul { .. }) && pos < 2) {
                    only_products[t.0] = false;
                }
            }
        }
        let dtype = match storage {
            F16Storage::Half => Dtype::F16,
            F16Storage::RoundedF32 => Dtype::F32,
        };
        let mut copy_of: Vec<Option<TensorId>> = vec![None; n];
        let mut casts = 0;
        for mut node in std::mem::take(&mut self.nodes) {
            if matches!(node.op, Op::MatMul { .. }) {
                for pos in 0..2 {
                    let t = node.inputs[pos];
                    if made_by_cast[t.0] || self.desc(t).dtype != Dtype::F32 {
                        continue;
                    }
                    let once = self.desc(t).role == Role::Activation && only_products[t.0];
                    node.inputs[pos] = match copy_of[t.0] {
                        Some(copy) if once => copy,
                        _ => {
                            let copy = self.push_cast(t, dtype);
                            casts += 1;
                            copy_of[t.0] = Some(copy);
                            copy
                        }
                    };
                }
            }
            self.nodes.push(node);
        }
        casts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GeluKind;

    /// x -> linear -> gelu -> linear, plus the products a backward would add: gelu's output
    /// read again for a weight gradient, the second weight again for an input gradient.
    fn mlp() -> Graph {
        let mut g = Graph::new();
        let x = g.input("x", &[8, 16], Dtype::F32);
        let (w1, w2) = (g.param("w1", &[32, 16]), g.param("w2", &[4, 32]));
        let h = g.linear(x, w1, None).unwrap();
        let a = g.gelu(h, GeluKind::Exact).unwrap();
        let out = g.linear(a, w2, None).unwrap();
        let _dw2 = g.matmul(a, out, true, false).unwrap();
        let da = g.matmul(out, w2, false, false).unwrap();
        g.sum_rows(da).unwrap();
        g
    }

    #[test]
    fn every_product_reads_f16_and_only_products_read_casts() {
        let mut g = mlp();
        let products = g.nodes.iter().filter(|n| matches!(n.op, Op::MatMul { .. })).count();
        let casts = g.cast_products_to_f16(F16Storage::Half);
        assert!(casts > 0 && casts <= 2 * products);
        for node in &g.nodes {
            if let Op::MatMul { .. } = node.op {
                for t in &node.inputs[..2] {
                    assert_eq!(g.desc(*t).dtype, Dtype::F16, "{} reads f32", g.desc(*t).name);
                }
            }
        }
        // Every input of every node is made before it (execution order kept).
        let mut made: Vec<bool> = g.tensors.iter().map(|t| t.role != Role::Activation).collect();
        for node in &g.nodes {
            assert!(node.inputs.iter().all(|t| made[t.0]), "{} reads a later tensor", node.op.name());
            node.outputs.iter().for_each(|o| made[o.0] = true);
        }
        assert_eq!(g.cast_products_to_f16(F16Storage::Half), 0, "a second call casts again");
        // The first layer's product, read only by GELU, is written in f16.
        let gelu = g.nodes.iter().find(|n| matches!(n.op, Op::Gelu { .. })).unwrap();
        assert_eq!(g.desc(gelu.inputs[0]).dtype, Dtype::F16);
    }

    #[test]
    fn rounded_storage_rounds_products_that_gelu_reads_right_after_them() {
        let mut g = mlp();
        g.cast_products_to_f16(F16Storage::RoundedF32);
        let at = g.nodes.iter().position(|n| matches!(n.op, Op::Gelu { .. })).unwrap();
        let cast = g.producer(g.nodes[at].inputs[0]).unwrap().1;
        assert_eq!(cast.op, Op::CastF16);
        let product = g.producer(cast.inputs[0]).unwrap().1;
        assert!(matches!(product.op, Op::MatMul { .. }));
        assert_eq!(g.nodes.iter().filter(|n| n.inputs.contains(&cast.inputs[0])).count(), 1);
        assert_eq!(g.cast_products_to_f16(F16Storage::RoundedF32), 0, "a second call casts again");
    }

    #[test]
    fn activations_only_products_read_are_cast_once() {
        let mut g = mlp();
        g.cast_products_to_f16(F16Storage::RoundedF32);
        // gelu's output feeds the second layer and its weight gradient: one cast, and the
        // f32 original's only reader is that cast.
        let gelu_out = g.nodes.iter().find(|n| matches!(n.op, Op::Gelu { .. })).unwrap().outputs[0];
        let readers: Vec<&Node> = g.nodes.iter().filter(|n| n.inputs.contains(&gelu_out)).collect();
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].op, Op::CastF16);
        let copy = readers[0].outputs[0];
        assert_eq!(g.desc(copy).dtype, Dtype::F32, "rounded storage keeps f32 tensors");
        assert_eq!(g.nodes.iter().filter(|n| n.inputs.contains(&copy)).count(), 2);
        // A parameter is cast before each product that reads it (forward and input gradient).
        let w2 = g.find("w2").unwrap();
        assert_eq!(g.nodes.iter().filter(|n| n.op == Op::CastF16 && n.inputs[0] == w2).count(), 2);
    }
}
