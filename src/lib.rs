//! wgformer: train and run Transformers on any GPU through hand-written WGSL compute shaders.
//!
//! The layers, bottom up: [`Gpu`] opens an adapter and holds tensors; [`kernels`] builds each
//! WGSL kernel's pipelines once and prepares [`kernels::Dispatch`]es that only record into a
//! pass; [`reference`](mod@reference) holds the plain-loop CPU versions every kernel is tested against;
//! [`bench`](mod@bench) times kernels.

pub mod autodiff;
pub mod bench;
pub mod bench_attention;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod graph;
pub mod info;
pub mod io;
pub mod kernels;
pub mod models;
mod oneshot;
pub mod optim;
pub mod plan;
pub mod reference;
pub mod rng;
pub mod shaders;
pub mod text;
pub mod trainer;

pub use error::{Error, Result};
pub use gpu::{list_adapters, Caps, DType, Gpu, GpuOptions, Tensor};
/// The wgpu this crate is built on, for apps that share a device with [`Gpu::from_device`].
pub use wgpu;
