//! Tools on top of the engine and models: kernel and step benchmarks, and the adapter report.

pub mod bench;
pub mod info;
