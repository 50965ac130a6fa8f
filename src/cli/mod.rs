//! The command line's own modules (not part of the library).

pub mod bench;
pub mod blas;
pub mod dist;
pub mod progress;
pub mod train_options;
pub mod translate;
pub mod translation;
pub mod vit;

/// Where a `train` command's run keeps its checkpoint (`out`, reading `resume` first when
/// given), on the system clock, over the job's ranks.
pub fn run_context(
    out: &std::path::Path,
    resume: Option<&std::path::Path>,
    dist: &dist::Dist,
) -> wgformer::train::RunContext {
    use wgformer::train::{DirStorage, SystemClock};
    let storage = match resume {
        Some(from) => DirStorage::resuming(from, out),
        None => DirStorage::new(out),
    };
    wgformer::train::RunContext { storage: Box::new(storage), clock: Box::new(SystemClock::new()), ranks: dist.ranks() }
}
