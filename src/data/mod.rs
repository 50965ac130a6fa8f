//! Data sets bundled with wgformer and their batching.

pub mod mnist;
