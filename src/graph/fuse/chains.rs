//! The chain fusion: elementwise nodes that read one another's outputs (an embedding's scale,
//! its position Add and dropout; a dropout's backward and a scale; mixed precision's casts
//! after an activation) become one `Op::Elementwise` node, placed at the last of them. A value
//! that a node outside the chain reads (all such readers come after the chain) or that is
//! pinned is written; the others stay in registers.

use super::super::chain::{steps_of, Chain, ChainOp, ChainStep, MAX_STEPS, MAX_TENSORS};
use super::{drop_nodes, uses, Uses};
use crate::graph::{Dtype, Graph, Node, Op, TensorId};
use std::collections::HashSet;

/// A chain being grown: its nodes in order, and their element count.
struct Group {
    members: Vec<usize>,
    n: usize,
}

/// Applies the chain fusion; returns the dispatches saved (a chain of k nodes saves k - 1).
pub fn fuse_chains(g: &mut Graph, pinned: &[TensorId]) -> usize {
    let pinned: HashSet<TensorId> = pinned.iter().copied().collect();
    let u = uses(g);
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.tensors.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        node.inputs.iter().for_each(|t| readers[t.0].push(i));
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; g.nodes.len()];
    for i in 0..g.nodes.len() {
        let Some(n) = elementwise_len(g, i) else { continue };
        let joined = g.nodes[i].inputs.iter().find_map(|t| {
            let k = group_of[u.writer[t.0]?]?;
            (groups[k].n == n && may_join(g, &u, &readers, &pinned, &groups[k], i)).then_some(k)
        });
        let k = joined.unwrap_or_else(|| {
            groups.push(Group { members: Vec::new(), n });
            groups.len() - 1
        });
        groups[k].members.push(i);
        group_of[i] = Some(k);
    }
    let mut removed = vec![false; g.nodes.len()];
    let mut saved = 0;
    for group in groups.iter().filter(|gr| gr.members.len() > 1) {
        let node = chain_node(g, &readers, &pinned, &group.members);
        if node.outputs.is_empty() {
            continue; // nothing reads what it makes
        }
        let (&last, earlier) = group.members.split_last().expect("two members or more");
        earlier.iter().for_each(|&m| removed[m] = true);
        g.nodes[last] = node;
        saved += earlier.len();
    }
    drop_nodes(g, &removed);
    saved
}

/// The element count of node `i` where it is an elementwise op a chain can hold: its outputs
/// and every input but a broadcast Add's addend have that count, all f32 or f16.
fn elementwise_len(g: &Graph, i: usize) -> Option<usize> {
    let node = &g.nodes[i];
    steps_of(&node.op)?;
    let n = g.desc(node.outputs[0]).len();
    let floats = node.inputs.iter().chain(&node.outputs).all(|&t| g.desc(t).dtype != Dtype::U32);
    let lens_ok = node.inputs.iter().enumerate().all(|(pos, &t)| {
        let len = g.desc(t).len();
        len == n || (node.op == Op::Add && pos == 1 && len > 0 && n.is_multiple_of(len))
    });
    let outs_ok = node.outputs.iter().all(|&t| g.desc(t).len() == n);
    (floats && lens_ok && outs_ok && n > 0).then_some(n)
}

/// Whether node `i` may join `group`, the chain then running at `i`: no value of the group is
/// read outside it before `i`, no input of a member is written over in place before `i`, and
/// the chain stays within the kernel's limits.
fn may_join(g: &Graph, u: &Uses, readers: &[Vec<usize>], pinned: &HashSet<TensorId>, group: &Group, i: usize) -> bool {
    let mut members = group.members.clone();
    members.push(i);
    let read_early = group
        .members
        .iter()
        .flat_map(|&m| &g.nodes[m].outputs)
        .any(|t| readers[t.0].iter().any(|&r| r < i && !members.contains(&r)));
    if read_early || !group.members.iter().all(|&m| u.inputs_kept(g, m, i)) {
        return false;
    }
    let chain = build_chain(g, readers, pinned, &members).0;
    chain.steps.len() <= MAX_STEPS && chain.inputs + chain.outputs.len() <= MAX_TENSORS
}

/// The node that runs `members` as one chain.
fn chain_node(g: &Graph, readers: &[Vec<usize>], pinned: &HashSet<TensorId>, members: &[usize]) -> Node {
    let (chain, inputs, outputs) = build_chain(g, readers, pinned, members);
    Node { op: Op::Elementwise(Box::new(chain)), inputs, outputs }
}

/// The chain of `members` with its input and output tensors: inputs are the tensors members
/// read that no member writes (in order of first use); outputs the members' outputs that are
/// pinned or read by a node outside `members`.
fn build_chain(
    g: &Graph,
    readers: &[Vec<usize>],
    pinned: &HashSet<TensorId>,
    members: &[usize],
) -> (Chain, Vec<TensorId>, Vec<TensorId>) {
    let written: HashSet<TensorId> = members.iter().flat_map(|&m| g.nodes[m].outputs.iter().copied()).collect();
    let mut inputs: Vec<TensorId> = Vec::new();
    for t in members.iter().flat_map(|&m| &g.nodes[m].inputs) {
        if !written.contains(t) && !inputs.contains(t) {
            inputs.push(*t);
        }
    }
    // The value each tensor is: an input's position, or the step that makes it.
    let mut value: std::collections::HashMap<TensorId, usize> =
        inputs.iter().enumerate().map(|(v, &t)| (t, v)).collect();
    let mut steps = Vec::new();
    let mut outputs = Vec::new();
    let mut out_values = Vec::new();
    for &m in members {
        let node = &g.nodes[m];
        let (ops, out_steps) = steps_of(&node.op).expect("members are elementwise");
        let first = inputs.len() + steps.len();
        for (op, args) in ops {
            let args = args.iter().map(|&pos| value[&node.inputs[pos]]).collect();
            steps.push(ChainStep { op, args, round: false });
        }
        for (&t, s) in node.outputs.iter().zip(out_steps) {
            let v = first + s;
            value.insert(t, v);
            // A value the graph kept in f16 is rounded as its store would have.
            let rounded = g.desc(t).dtype == Dtype::F16 && steps[v - inputs.len()].op != ChainOp::RoundF16;
            steps[v - inputs.len()].round = rounded;
            if pinned.contains(&t) || readers[t.0].iter().any(|r| !members.contains(r)) {
                outputs.push(t);
                out_values.push(v);
            }
        }
    }
    (Chain { inputs: inputs.len(), steps, outputs: out_values }, inputs, outputs)
}
