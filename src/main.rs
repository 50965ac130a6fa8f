//! The `wgformer` command line: `info` and `bench` (training and inference commands come with
//! the models). Logs go to stderr; `--json` output is one JSON value on stdout.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use wgformer::{Gpu, Result};

#[derive(Parser)]
#[command(name = "wgformer", version, about = "Train and run Transformers on any GPU with WGSL kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Adapters found, the one chosen, its backend, driver, features and compute limits.
    Info {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The cost of one training step: nodes, dispatches, submits, parameter and activation memory.
    Plan {
        /// vit (transformer comes with the translation model).
        model: String,
        /// A preset (vit-tiny, vit-small, vit-base) or a config.json path.
        #[arg(long, default_value = "vit-base")]
        config: String,
        /// Images per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train a model on the bundled data: `vit` (Fashion-MNIST).
    Train {
        /// vit
        model: String,
        /// The checkpoint directory (replaced atomically after every epoch).
        #[arg(long, default_value = "runs/vit")]
        out: std::path::PathBuf,
        /// Continue the run saved in this checkpoint directory.
        #[arg(long)]
        resume: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Peak learning rate (linear warmup, then cosine decay).
        #[arg(long, default_value_t = 2e-3)]
        lr: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The Fashion-MNIST directory (default: the bundled copy).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Train on the first N training images only (a quick run).
        #[arg(long)]
        train_images: Option<usize>,
        /// Evaluate on the first N test images only (a quick run).
        #[arg(long)]
        test_images: Option<usize>,
        /// Stop after this many epochs (with a checkpoint); --resume continues the run.
        #[arg(long)]
        stop_after: Option<usize>,
    },
    /// ViT: the top-5 classes of image files (PNG, JPEG).
    Predict {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        images: Vec<std::path::PathBuf>,
    },
    /// ViT: accuracy on the Fashion-MNIST test set; --out writes index,predicted,label per image.
    Eval {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[arg(long)]
        data: Option<std::path::PathBuf>,
    },
    /// Forward and backward on a reference case (config.json, model.safetensors,
    /// inputs.safetensors); writes logits, loss and grad.* to FILE as safetensors.
    Verify {
        case_dir: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Kernel timings: median ms and GFLOP/s or GB/s.
    Bench {
        /// Kernels to run (matmul, layernorm, gelu, softmax, add, dispatch), or `step` for
        /// whole training steps; all kernels when empty.
        kernels: Vec<String>,
        /// The model `step` trains: vit-tiny, vit-small or vit-base.
        #[arg(long, default_value = "vit-tiny")]
        model: String,
        /// Images per step for `step`.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Timed runs per case (median reported), after one warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => info(json),
        Command::Bench { kernels, json, runs, model, batch } => bench(&kernels, json, runs, &model, batch),
        Command::Plan { model, config, batch, json } => plan(&model, &config, batch, json),
        Command::Verify { case_dir, out } => verify(&case_dir, &out),
        Command::Train { model, out, resume, epochs, batch, lr, seed, data, train_images, test_images, stop_after } => {
            match model.as_str() {
                "vit" => cli::vit::train(&cli::vit::TrainArgs {
                    out,
                    resume,
                    epochs,
                    batch,
                    lr,
                    seed,
                    data: data.unwrap_or_else(wgformer::data::mnist::default_dir),
                    train_images,
                    test_images,
                    stop_after,
                }),
                other => Err(wgformer::Error::Config(format!(
                    "unknown model {other:?}: train vit (translate comes with the Transformer)"
                ))),
            }
        }
        Command::Predict { checkpoint, images } => cli::vit::predict(&checkpoint, &images),
        Command::Eval { checkpoint, out, data } => {
            cli::vit::eval(&checkpoint, out.as_deref(), &data.unwrap_or_else(wgformer::data::mnist::default_dir))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info(json: bool) -> Result<()> {
    let adapters = wgformer::list_adapters();
    let gpu = Gpu::new()?;
    let report = wgformer::info::report(&adapters, &gpu);
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", wgformer::info::report_text(&report));
    }
    Ok(())
}

fn bench(kernels: &[String], json: bool, runs: usize, model: &str, batch: usize) -> Result<()> {
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", gpu.describe());
    let (steps, kernels): (Vec<String>, Vec<String>) = kernels.iter().cloned().partition(|k| k == "step");
    let mut results = Vec::new();
    if !kernels.is_empty() || steps.is_empty() {
        results = wgformer::bench::run_kernels(&gpu, &kernels, runs, &mut |line| eprintln!("{line}"))?;
    }
    if !steps.is_empty() {
        results.push(wgformer::bench::run_step(&gpu, model, batch, runs, &mut |line| eprintln!("{line}"))?);
    }
    if json {
        println!("{}", serde_json::to_string(&results).unwrap_or_default());
    } else {
        print!("{}", wgformer::bench::table(&results));
    }
    Ok(())
}

/// A ViT config from a preset name or a config.json path.
fn vit_config(config: &str) -> Result<wgformer::models::vit::VitConfig> {
    use wgformer::models::vit::VitConfig;
    if let Some(cfg) = VitConfig::preset(config) {
        return Ok(cfg);
    }
    let text =
        std::fs::read_to_string(config).map_err(|source| wgformer::Error::Io { path: config.to_string(), source })?;
    VitConfig::from_json(&text)
}

fn plan(model: &str, config: &str, batch: usize, json: bool) -> Result<()> {
    if batch == 0 {
        return Err(wgformer::Error::Config("--batch must be at least 1".into()));
    }
    let mut built = match model {
        "vit" => wgformer::models::vit::build(&vit_config(config)?, batch, true)?,
        other => {
            return Err(wgformer::Error::Config(format!(
                "unknown model {other:?}: plan supports vit (transformer comes with the translation model)"
            )))
        }
    };
    let grads = wgformer::autodiff::backward(&mut built.graph, built.loss)?;
    let r = wgformer::plan::report(&built.graph, built.loss, &grads);
    if json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("{model} {config}, batch {batch}: one training step (forward, backward, clipping, Adam)");
    println!("  nodes                  {}", r.nodes);
    println!("  dispatches per step    {}", r.dispatches_per_step);
    println!("  submits per step       {}", r.submits_per_step);
    println!("  parameters             {:.1} MiB", mib(r.param_bytes));
    println!("  Adam moments           {:.1} MiB", mib(r.optimizer_bytes));
    println!("  activations, planned   {:.1} MiB", mib(r.peak_activation_bytes));
    println!("  activations, no reuse  {:.1} MiB", mib(r.naive_activation_bytes));
    Ok(())
}

fn verify(case_dir: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let gpu = Gpu::new()?;
    let tensors = wgformer::models::golden::verify(&gpu, case_dir)?;
    let views: Vec<(String, Vec<usize>, &[f32])> =
        tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), &v[..])).collect();
    wgformer::io::write_atomic(out, &wgformer::io::safetensors_bytes(&views)?)?;
    eprintln!("wrote {} tensors to {}", tensors.len(), out.display());
    Ok(())
}
