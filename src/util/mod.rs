//! Small helpers with no GPU and no model knowledge: safetensors and atomic file writes, the
//! random number generator, a one-shot channel.

pub mod io;
pub(crate) mod oneshot;
pub mod rng;
