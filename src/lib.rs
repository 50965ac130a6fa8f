//! wgformer: train and run Transformers on any GPU through hand-written WGSL compute shaders.
//!
//! The layers, bottom up (ARCHITECTURE.md in the repository tells the whole design): [`graph`]
//! describes a model as ops on shaped tensors; [`reference`](mod@reference) runs every op on the CPU,
//! the oracle of the tests; [`Gpu`] opens an adapter and holds tensors; [`kernels`] builds each
//! WGSL kernel's pipelines once per device and prepares [`kernels::Dispatch`]es that only record
//! into a pass; [`graph::autodiff`] and [`graph::plan`] differentiate and plan graphs;
//! [`runtime`] executes and trains them (over the ranks of a [`dist`] group when there are
//! several); [`models`] builds the Transformer and the ViT; [`bench`](mod@bench) times kernels and steps,
//! [`info`] reports the adapter, [`verify`] runs the reference cases.

// The layers, bottom up; a module imports only from layers below its own (tests/cpu/layers.rs).
pub mod bench;
pub mod data;
pub mod dist;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod info;
pub mod kernels;
pub mod models;
pub mod reference;
pub mod runtime;
pub mod settings;
pub mod shaders;
pub mod text;
pub mod train;
pub mod util;
pub mod verify;

pub use error::{Error, Result};
pub use gpu::{list_adapters, Caps, DType, Gpu, GpuOptions, Tensor};
pub use settings::Settings;
/// The wgpu this crate is built on, for apps that share a device with [`Gpu::from_device`].
pub use wgpu;
