//! Model graphs built from the graph ops, with standard parameter names.

pub mod vit;
