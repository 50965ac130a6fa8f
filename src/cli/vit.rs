//! `train vit`, `predict` and `eval`: the ViT on the bundled Fashion-MNIST.

use super::progress::Console;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wgformer::data::mnist::{self, Split};
use wgformer::models::Vit;
use wgformer::train::vit_run::accuracy_of;
use wgformer::train::{block_on, VitData, VitRecipe, VitRun};
use wgformer::{Error, Gpu, Result};

/// Options of `train vit`.
pub struct TrainArgs {
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    /// The recipe (a resumed run keeps its own, but for the precision).
    pub recipe: VitRecipe,
    pub data: PathBuf,
    /// Train on the first N training images only (quick runs).
    pub train_images: Option<usize>,
    /// Evaluate on the first N test images only (quick runs).
    pub test_images: Option<usize>,
    /// Stop (with a checkpoint) after this many epochs in this invocation; --resume continues.
    pub stop_after: Option<usize>,
    /// A plain progress line every N steps when stderr is not a terminal (else about every 30 s).
    pub log_every: Option<u64>,
    /// The data-parallel job this process is a rank of (a job of one without MPI).
    pub dist: super::dist::Dist,
}

const EVAL_BATCH: usize = 500;

/// `train vit`: the library's ViT recipe with the console as its observer.
pub fn train(args: &TrainArgs) -> Result<()> {
    let gpu = Arc::new(args.dist.gpu()?);
    let data = VitData::load(&args.data, args.train_images, args.test_images)?;
    let ctx = super::run_context(&args.out, args.resume.as_deref(), &args.dist);
    let mut console = Console::new(args.dist.is_main(), args.log_every);
    let mut run = match &args.resume {
        Some(_) => VitRun::resume(gpu, Some(args.recipe.precision), data, ctx, &mut console)?,
        None => VitRun::start(gpu, &args.recipe, data, ctx, &mut console)?,
    };
    let mut rounds = 0;
    while !run.is_finished() && args.stop_after.is_none_or(|n| rounds < n) {
        block_on(run.round(&mut console))?;
        rounds += 1;
    }
    run.finish(&mut console);
    Ok(())
}

/// Top-5 classes of each image file.
pub fn predict(checkpoint: &Path, images: &[PathBuf]) -> Result<()> {
    if images.is_empty() {
        return Err(Error::Config("give at least one image file".into()));
    }
    let gpu = Gpu::from_env()?;
    let vit = Vit::load(&gpu, checkpoint, 1)?;
    for path in images {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        let img = wgformer::models::vit_infer::decode_image(&bytes, path)?;
        let probs = vit.classify(&gpu, &img)?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        println!("{}", path.display());
        for &c in order.iter().take(5) {
            println!("  {:6.2}%  {}", 100.0 * probs[c], vit.config.label_name(c));
        }
    }
    Ok(())
}

/// Test-set accuracy; with `out`, a CSV of index,predicted,label.
pub fn eval(checkpoint: &Path, out: Option<&Path>, data: &Path, limit: Option<usize>) -> Result<()> {
    let gpu = Gpu::from_env()?;
    let vit = Vit::load(&gpu, checkpoint, EVAL_BATCH)?;
    let (size, channels) = (vit.config.image_size, vit.config.num_channels);
    if size != 28 || channels != 1 {
        return Err(Error::Config(format!(
            "{}: eval runs on Fashion-MNIST (28x28 grey); this model takes {size}x{size} images of {channels} channels",
            checkpoint.display()
        )));
    }
    let mut test = mnist::load(data, Split::Test)?;
    test.truncate(limit.unwrap_or(usize::MAX));
    let (accuracy, predicted) = block_on(accuracy_of(&gpu, &vit, &test))?;
    println!("test accuracy: {:.2}% ({} images)", 100.0 * accuracy, test.len());
    if let Some(out) = out {
        let mut csv = String::from("index,predicted,label\n");
        for (i, (p, l)) in predicted.iter().zip(&test.labels).enumerate() {
            csv += &format!("{i},{p},{l}\n");
        }
        wgformer::util::io::write_atomic(out, csv.as_bytes())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
