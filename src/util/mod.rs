//! Small helpers with no GPU and no model knowledge: safetensors, atomic and durable file writes, the
//! random number generator, a one-shot channel.

pub mod atomic;
pub mod io;
pub(crate) mod oneshot;
pub mod rng;
pub mod torch_pickle;
pub mod zip;
