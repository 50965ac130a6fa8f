//! `train translate`: the library's translation recipe with the console as its observer.

use super::progress::Console;
use std::path::PathBuf;
use std::sync::Arc;
use wgformer::train::block_on;
use wgformer::train::translate::{TranslateData, TranslateRecipe, TranslateRun};
use wgformer::Result;

/// Options of `train translate`.
pub struct TrainArgs {
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    /// The recipe (a resumed run keeps its own, but for `epochs`, `average` and `max_minutes`).
    pub recipe: TranslateRecipe,
    pub data: PathBuf,
    /// Train on the first N pairs only (a quick run).
    pub train_pairs: Option<usize>,
    pub stop_after: Option<usize>,
    /// A plain progress line every N steps when stderr is not a terminal (else about every 30 s).
    pub log_every: Option<u64>,
    /// The data-parallel job this process is a rank of (a job of one without MPI).
    pub dist: super::dist::Dist,
}

pub fn train(args: &TrainArgs) -> Result<()> {
    args.recipe.validate()?;
    let gpu = Arc::new(args.dist.gpu()?);
    let data = TranslateData::load(&args.data, args.train_pairs)?;
    let ctx = super::run_context(&args.out, args.resume.as_deref(), &args.dist);
    let mut console = Console::new(args.dist.is_main(), args.log_every);
    let mut run = match &args.resume {
        Some(_) => TranslateRun::resume(gpu, &args.recipe, data, ctx, &mut console)?,
        None => TranslateRun::start(gpu, &args.recipe, data, ctx, &mut console)?,
    };
    let mut rounds = 0;
    while !run.is_finished() && args.stop_after.is_none_or(|n| rounds < n) {
        block_on(run.round(&mut console))?;
        rounds += 1;
    }
    run.finish(&mut console)
}
