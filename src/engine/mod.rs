//! The training pipeline, in the order a step is made: a graph is differentiated
//! ([`autodiff`]), its tensors are given buffers ([`plan`]), the executor lowers every node to
//! kernel dispatches and runs a whole step in one submit ([`exec`]), with Adam and its
//! schedules ([`optim`]); [`trainer`] drives steps, [`checkpoint`] saves and restores them.
//! Data-parallel training sums gradients over a [`collective`] group (MPI with feature `mpi`).

pub mod attention_choice;
pub mod autodiff;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod collective;
pub mod exec;
pub mod fault;
pub mod loss_scale;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
pub mod mpi;
pub mod optim;
pub mod plan;
pub mod trainer;
