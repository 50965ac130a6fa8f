//! Mixed precision as a rewrite of a differentiated graph: every product reads f16 copies of
//! its two operands (autocast's rule for matmuls), made by `CastF16` nodes placed just before
//! the first product that needs them.
//!
//! An activation that only products read is cast once and its f32 original dies at the cast,
//! so the copy a backward product reads (a layer's input, kept for its weight gradient) is
//! stored in f16: half the memory. Anything else (parameters, inputs, activations that other
//! ops read too) gets a short-lived copy per product, so that no f32 tensor and its f16 copy
//! are both kept across the step; parameters may instead be cast once per step
//! (`F16WeightCasts::OncePerStep`), their copies kept from the first product to the last.
//!
//! A tensor whose writer and every reader have f16 forms (a product read only by GELU or by
//! attention, attention's output and gradients, the cross-entropy's gradient, a product read
//! only by products) is written in f16 in the first place: no f32 tensor, no cast. The
//! residual stream, layernorm and softmax statistics and the parameters' gradients stay f32,
//! as under PyTorch's autocast.

use super::{Dtype, Graph, Node, Op, Role, TensorId};
use crate::settings::F16WeightCasts;

/// Where an operand sits on a node: input or output, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    In(usize),
    Out(usize),
}

/// What the kernels can do with f16 tensors, as the rewrite needs to know it: which operands
/// some kernel form reads or writes in f16, and which operands one WGSL alias types together
/// (all f16 or none). Implemented by the kernels' table of f16 forms
/// (`kernels::f16_forms::HalfTable`), so that the graph layer needs no kernels.
pub trait HalfKernels {
    /// Whether `op` has a kernel form reading its input `pos` in f16.
    fn reads_half(&self, op: &Op, pos: usize) -> bool;
    /// Whether `op` has a kernel form writing its output `pos` in f16.
    fn writes_half(&self, op: &Op, pos: usize) -> bool;
    /// Groups of `op`'s operands that are f16 together or not at all.
    fn tied(&self, op: &Op) -> Vec<Vec<Slot>>;
}

/// The tensors of `node` in each of `kernels`' tied groups.
fn tied(kernels: &dyn HalfKernels, node: &Node) -> Vec<Vec<TensorId>> {
    let slot = |s: &Slot| match *s {
        Slot::In(i) => node.inputs.get(i).copied(),
        Slot::Out(i) => node.outputs.get(i).copied(),
    };
    kernels.tied(&node.op).iter().map(|group| group.iter().filter_map(slot).collect()).collect()
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
    /// form reading it so (as `kernels` says), stored as `storage` says.
    /// Run after differentiation, so that the backward's products are cast too. What is
    /// already f16 is left alone, so a second call changes nothing. Returns the number of
    /// tensors made f16.
    pub fn cast_products_to_f16(&mut self, storage: F16Storage, kernels: &dyn HalfKernels) -> usize {
        self.cast_products_to_f16_with(storage, F16WeightCasts::PerProduct, kernels)
    }

    /// [`Graph::cast_products_to_f16`] with parameters cast as `weights` says: before each
    /// product, or once per step.
    pub fn cast_products_to_f16_with(
        &mut self,
        storage: F16Storage,
        weights: F16WeightCasts,
        kernels: &dyn HalfKernels,
    ) -> usize {
        self.half_outputs(storage, kernels) + self.cast_operands(storage, weights)
    }

    /// Outputs kept in f16: written so by their node (f16 storage), or rounded by a cast right
    /// after it (rounded storage: the f32 output dies at the cast).
    fn half_outputs(&mut self, storage: F16Storage, kernels: &dyn HalfKernels) -> usize {
        let n = self.tensors.len();
        let (mut readers, mut all_read_half) = (vec![0usize; n], vec![true; n]);
        for node in &self.nodes {
            for (pos, t) in node.inputs.iter().enumerate() {
                readers[t.0] += 1;
                all_read_half[t.0] &= kernels.reads_half(&node.op, pos);
            }
        }
        let mut target = vec![false; n];
        for node in &self.nodes {
            for (pos, o) in node.outputs.iter().enumerate() {
                target[o.0] = kernels.writes_half(&node.op, pos)
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
                for group in tied(kernels, node) {
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
    fn cast_operands(&mut self, storage: F16Storage, weights: F16WeightCasts) -> usize {
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
                    let role = self.desc(t).role;
                    let once = (role == Role::Activation && only_products[t.0])
                        || (role == Role::Param && weights == F16WeightCasts::OncePerStep);
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
