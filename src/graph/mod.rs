//! The static graph and its passes: tensors with shapes, and nodes in execution order. Built
//! once per model and batch shape (`build.rs` checks every shape), differentiated once
//! ([`autodiff`]), made mixed precision where asked (`precision.rs`), planned once ([`plan`]),
//! then replayed every step by the runtime (`runtime::exec`). No GPU here.

pub mod autodiff;
pub(crate) mod build;
mod build_attention;
pub mod chain;
pub mod fuse;
pub mod op;
pub mod params;
pub mod plan;
mod precision;

pub use op::Op;
pub use params::{
    Activation, AdamStep, AttentionChooser, AttentionPolicy, AttentionShape, GeluKind, MatmulShape, Precision,
    ProductDropout,
};
pub use precision::{F16Storage, HalfKernels, Slot};

/// Index of a tensor in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// Element type of a graph tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    /// Integer class ids or token ids.
    U32,
    /// Half floats, two to a 32-bit word (mixed precision's product operands, see
    /// [`Graph::cast_products_to_f16`]).
    F16,
}

impl Dtype {
    /// Bytes `len` elements occupy in a buffer (f16 pairs share a word: rounded up to 4).
    pub fn bytes(self, len: usize) -> u64 {
        match self {
            Dtype::F32 | Dtype::U32 => len as u64 * 4,
            Dtype::F16 => (len as u64).div_ceil(2) * 4,
        }
    }
}

/// Where a tensor's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Uploaded every step (a batch).
    Input,
    /// A trained parameter: lives for the whole run, updated by the optimizer.
    Param,
    /// Computed by a node.
    Activation,
}

/// A tensor's description.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub role: Role,
}

impl TensorDesc {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Elements over all but the last dimension.
    pub fn rows(&self) -> usize {
        self.len() / self.last_dim().max(1)
    }
}

/// A shape seen around dimension `dim`: [product before, size of dim, product after].
pub fn around(shape: &[usize], dim: usize) -> [usize; 3] {
    let before = shape[..dim.min(shape.len())].iter().product();
    let after = shape.get(dim + 1..).map_or(1, |s| s.iter().product());
    [before, shape.get(dim).copied().unwrap_or(1), after]
}

/// One operation and the tensors it reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

/// A static computation graph. Nodes are in execution order: every input of a node is a
/// graph input, a parameter, or an output of an earlier node.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<TensorDesc>,
    pub nodes: Vec<Node>,
    /// How [`Graph::attention`] builds attention (default: the fused op).
    pub attention_policy: params::AttentionPolicy,
    /// The precision the executor runs this graph's products in (default f32).
    pub precision: params::Precision,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty graph whose [`Graph::attention`] follows `policy`.
    pub fn with_attention(policy: params::AttentionPolicy) -> Self {
        Graph { attention_policy: policy, ..Self::default() }
    }

    /// The description of `t`.
    pub fn desc(&self, t: TensorId) -> &TensorDesc {
        &self.tensors[t.0]
    }

    /// The tensor's shape.
    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t.0].shape
    }

    /// All parameters, in creation order.
    pub fn params(&self) -> Vec<TensorId> {
        (0..self.tensors.len()).map(TensorId).filter(|&t| self.desc(t).role == Role::Param).collect()
    }

    /// The tensor named `name`, if any.
    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name).map(TensorId)
    }

    fn add_tensor(&mut self, name: String, shape: Vec<usize>, dtype: Dtype, role: Role) -> TensorId {
        self.tensors.push(TensorDesc { name, shape, dtype, role });
        TensorId(self.tensors.len() - 1)
    }

    /// Appends a node whose outputs are new activations of the given shapes and types.
    fn push(&mut self, op: Op, inputs: Vec<TensorId>, outputs: Vec<(Vec<usize>, Dtype)>) -> Vec<TensorId> {
        let n = self.nodes.len();
        let name = op.name();
        let outs: Vec<TensorId> = outputs
            .into_iter()
            .enumerate()
            .map(|(i, (shape, dtype))| self.add_tensor(format!("{name}#{n}.{i}"), shape, dtype, Role::Activation))
            .collect();
        self.nodes.push(Node { op, inputs, outputs: outs.clone() });
        outs
    }
}
