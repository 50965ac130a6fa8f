//! The one table of f16-storage forms: for each kernel family that mixed precision may run on
//! f16 tensors, the WGSL aliases its source declares (`alias NAME = f32;`, made f16 by
//! `shaders::with_f16`) and the graph operands each alias types. `HalfForm` compiles the forms
//! from it, the graph's rewrite asks it which operands may be f16 ([`HalfTable`], through
//! `graph::HalfKernels`), and `tests/cpu/shaders_validate.rs` validates every form it lists.

use crate::graph::{HalfKernels, Op, Slot};

/// One alias of a family and the operands it types: (op name as `Op::name`, slot).
pub struct HalfAlias {
    pub name: &'static str,
    pub operands: &'static [(&'static str, Slot)],
}

/// A kernel family with f16-storage forms.
pub struct F16Family {
    pub file: &'static str,
    pub source: &'static str,
    /// The aliases, each f16 on its own in some form (their order is the order in which a
    /// kernel passes its tensors to `HalfForm::for_types`).
    pub aliases: &'static [HalfAlias],
    /// Operands the family reads in f16 in every form (the f16 products' A and B).
    pub always_half: &'static [(&'static str, Slot)],
}

use Slot::{In, Out};

pub const GELU: F16Family = F16Family {
    file: "gelu.wgsl",
    source: crate::shaders::GELU,
    aliases: &[
        HalfAlias { name: "InT", operands: &[("gelu", In(0)), ("gelu_bwd", In(0))] },
        HalfAlias { name: "OutT", operands: &[("gelu", Out(0)), ("gelu_bwd", Out(0))] },
        HalfAlias { name: "DyT", operands: &[("gelu_bwd", In(1))] },
    ],
    always_half: &[],
};

/// ReLU and SiLU, forward and backward.
pub const ELEMENTWISE: F16Family = F16Family {
    file: "elementwise.wgsl",
    source: crate::shaders::ELEMENTWISE,
    aliases: &[
        HalfAlias {
            name: "InT",
            operands: &[("relu", In(0)), ("relu_bwd", In(0)), ("silu", In(0)), ("silu_bwd", In(0))],
        },
        HalfAlias {
            name: "OutT",
            operands: &[("relu", Out(0)), ("relu_bwd", Out(0)), ("silu", Out(0)), ("silu_bwd", Out(0))],
        },
        HalfAlias { name: "DyT", operands: &[("relu_bwd", In(1)), ("silu_bwd", In(1))] },
    ],
    always_half: &[],
};

pub const DROPOUT: F16Family = F16Family {
    file: "dropout.wgsl",
    source: crate::shaders::DROPOUT,
    aliases: &[
        HalfAlias { name: "InT", operands: &[("dropout", In(0)), ("dropout_bwd", In(0))] },
        HalfAlias { name: "OutT", operands: &[("dropout", Out(0)), ("dropout_bwd", Out(0))] },
    ],
    always_half: &[],
};

/// Column sums (bias gradients).
pub const REDUCE: F16Family = F16Family {
    file: "reduce.wgsl",
    source: crate::shaders::REDUCE,
    aliases: &[HalfAlias { name: "InT", operands: &[("sum_rows", In(0))] }],
    always_half: &[],
};

/// The logits and the loss-scaled gradient (the loss and the statistics stay f32).
pub const CROSSENTROPY: F16Family = F16Family {
    file: "crossentropy.wgsl",
    source: crate::shaders::CROSSENTROPY,
    aliases: &[
        HalfAlias { name: "LogitT", operands: &[("cross_entropy", In(0))] },
        HalfAlias { name: "DlogitT", operands: &[("cross_entropy", Out(1))] },
    ],
    always_half: &[],
};

/// The f16 products' output, and the fused products' pre-activation (read) and activation
/// (written) where mixed precision keeps them in f16 (A and B are f16 in every form). The
/// fused products come from `graph::fuse`, after the rewrite: the executor picks their form
/// from their tensors' types.
const PRODUCT_OUT: &[HalfAlias] = &[
    HalfAlias { name: "OutT", operands: &[("matmul", Out(0))] },
    HalfAlias { name: "SideT", operands: &[("matmul_act_grad", In(2))] },
    HalfAlias { name: "AuxT", operands: &[("matmul_act", Out(1))] },
];
const PRODUCT_IN: &[(&str, Slot)] = &[("matmul", In(0)), ("matmul", In(1))];

pub const MATMUL_F16: F16Family = F16Family {
    file: "matmul_f16.wgsl",
    source: crate::shaders::MATMUL_F16,
    aliases: PRODUCT_OUT,
    always_half: PRODUCT_IN,
};

pub const MATMUL_COOP: F16Family = F16Family {
    file: "matmul_coop.wgsl",
    source: crate::shaders::MATMUL_COOP,
    aliases: PRODUCT_OUT,
    always_half: PRODUCT_IN,
};

/// Attention's q, k, v (one alias: all or none), its output o, and the gradients do, dq, dk
/// and dv (one alias), in all three variants.
const ATTENTION_ALIASES: &[HalfAlias] = &[
    HalfAlias {
        name: "Qkv4",
        operands: &[
            ("attention", In(0)),
            ("attention", In(1)),
            ("attention", In(2)),
            ("attention_bwd", In(0)),
            ("attention_bwd", In(1)),
            ("attention_bwd", In(2)),
        ],
    },
    HalfAlias { name: "O4", operands: &[("attention", Out(0)), ("attention_bwd", In(3))] },
    HalfAlias {
        name: "Grad4",
        operands: &[
            ("attention_bwd", In(4)),
            ("attention_bwd", Out(0)),
            ("attention_bwd", Out(1)),
            ("attention_bwd", Out(2)),
        ],
    },
];

pub const ATTENTION: F16Family = F16Family {
    file: "attention.wgsl",
    source: crate::shaders::ATTENTION,
    aliases: ATTENTION_ALIASES,
    always_half: &[],
};
pub const ATTENTION_SG: F16Family = F16Family {
    file: "attention_sg.wgsl",
    source: crate::shaders::ATTENTION_SG,
    aliases: ATTENTION_ALIASES,
    always_half: &[],
};
pub const ATTENTION_TILED: F16Family = F16Family {
    file: "attention_tiled.wgsl",
    source: crate::shaders::ATTENTION_TILED,
    aliases: ATTENTION_ALIASES,
    always_half: &[],
};

/// Every family with f16 forms.
pub const F16_FAMILIES: &[&F16Family] = &[
    &GELU,
    &ELEMENTWISE,
    &DROPOUT,
    &REDUCE,
    &CROSSENTROPY,
    &MATMUL_F16,
    &MATMUL_COOP,
    &ATTENTION,
    &ATTENTION_SG,
    &ATTENTION_TILED,
];

/// The table as the graph's mixed-precision rewrite reads it.
pub struct HalfTable;

impl HalfTable {
    /// Whether some family types operand `slot` of an op named `op` in f16.
    fn has(op: &str, slot: Slot) -> bool {
        F16_FAMILIES
            .iter()
            .any(|f| f.always_half.contains(&(op, slot)) || f.aliases.iter().any(|a| a.operands.contains(&(op, slot))))
    }
}

impl HalfKernels for HalfTable {
    fn reads_half(&self, op: &Op, pos: usize) -> bool {
        Self::has(op.name(), In(pos))
    }

    fn writes_half(&self, op: &Op, pos: usize) -> bool {
        Self::has(op.name(), Out(pos))
    }

    fn tied(&self, op: &Op) -> Vec<Vec<Slot>> {
        let name = op.name();
        let Some(family) =
            F16_FAMILIES.iter().find(|f| f.aliases.iter().any(|a| a.operands.iter().any(|o| o.0 == name)))
        else {
            return Vec::new();
        };
        family
            .aliases
            .iter()
            .map(|a| a.operands.iter().filter(|o| o.0 == name).map(|o| o.1).collect::<Vec<_>>())
            .filter(|group| group.len() > 1)
            .collect()
    }
}
