//! Training as a library: a recipe per model (a config whose defaults are the CLI's) and a run
//! object that an app drives — start or resume, advance a step or a round at a time, evaluate,
//! checkpoint, finish. The CLI, the examples and the browser page all train through it.
//!
//! A run never prints: it reports [`Event`]s to the caller's [`Observer`]. It reads time from a
//! [`Clock`] and keeps its checkpoint in a [`Storage`] (a directory natively, bytes in memory in
//! a browser), both given to it. Advancing is `async` (a browser cannot block on the GPU);
//! natively, wrap the call in [`block_on`].

pub mod clock;
pub mod events;
pub mod ranks;
pub mod storage;
#[cfg(not(target_arch = "wasm32"))]
pub mod translate;
pub mod vit;
pub mod vit_run;

pub use clock::Clock;
#[cfg(not(target_arch = "wasm32"))]
pub use clock::SystemClock;
pub use events::{Event, Observer, Quiet, StepReport};
pub use ranks::Ranks;
pub use storage::{DirStorage, MemoryStorage, Storage};
pub use vit::{VitData, VitRecipe};
pub use vit_run::VitRun;

/// Runs a future to completion on this thread (native apps; a browser awaits instead).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// What one call to a run's `advance` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Took a training step (or retried one skipped by the loss scale); the round goes on.
    Step,
    /// Finished a round (an epoch): evaluated and checkpointed where this rank does that.
    Round,
    /// The run has taken all its steps; nothing was done.
    Finished,
}

/// What a run is given besides its recipe and data: where it keeps its checkpoint, where it
/// reads the time, and the ranks it trains with.
pub struct RunContext {
    pub storage: Box<dyn Storage>,
    pub clock: Box<dyn Clock>,
    pub ranks: Ranks,
}

impl RunContext {
    /// A run of one process.
    pub fn new(storage: impl Storage + 'static, clock: impl Clock + 'static) -> Self {
        RunContext { storage: Box::new(storage), clock: Box::new(clock), ranks: Ranks::default() }
    }

    /// A native run of one process checkpointing to the directory `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn in_dir(dir: impl Into<std::path::PathBuf>) -> Self {
        Self::new(DirStorage::new(dir), SystemClock::new())
    }
}

/// ", comm X ms, Y% hidden" for a data-parallel step (the last step's gradient sums and the
/// share hidden behind the backward); empty otherwise.
pub(crate) fn comm_note(trainer: &crate::runtime::trainer::Trainer) -> String {
    #[cfg(not(target_arch = "wasm32"))]
    if trainer.ranks() >= 2 {
        let c = trainer.exec.last_comm();
        return format!(", comm {:.0} ms, {:.0}% hidden", c.comm_seconds * 1e3, 100.0 * c.hidden_share());
    }
    let _ = trainer;
    String::new()
}
