//! Data-parallel training's groups of ranks: what a step needs from them ([`collective`]: the
//! `Collective` trait, gradient sums, `LocalGroup` of threads for tests) and the same over MPI
//! (`mpi`, feature `mpi`). The bucketed step that uses them is the executor's
//! (`runtime::exec::data_parallel`). No GPU here.

#[cfg(not(target_arch = "wasm32"))]
pub mod collective;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
pub mod mpi;
