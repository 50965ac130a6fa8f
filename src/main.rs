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
    /// Tests only: inject a fault into training, `device-lost:STEP`, `oom:STEP` or
    /// `crash:STEP`, optionally `@RANK`.
    #[arg(long, global = true, hide = true)]
    inject_fault: Option<String>,
}

// Parsed once per process, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// vit or transformer (sentences of 32 tokens, a 37000-entry vocabulary).
        model: String,
        /// A preset (vit-tiny, vit-small, vit-base; transformer: small, base) or a config.json path.
        /// (default: vit-base, or base for the transformer)
        #[arg(long)]
        config: Option<String>,
        /// Images (or sentence pairs) per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// f32, or f16: mixed precision as a GPU with f16 shaders runs it (products read f16
        /// copies of their operands; tensors whose writer and readers have f16 kernels, the
        /// gradients between products among them, are kept in f16).
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train a model on the bundled data: `vit` (Fashion-MNIST) or `translate` (the
    /// Transformer on German-English pairs).
    Train {
        #[command(subcommand)]
        model: cli::train_options::TrainCommand,
    },
    /// Translate German to English with a `train translate` checkpoint: TEXT, or each line of
    /// stdin to stdout (beam search, 4 hypotheses, length penalty 0.6 unless told otherwise).
    Translate {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        text: Option<String>,
        /// Greedy decoding instead of beam search.
        #[arg(long)]
        greedy: bool,
        /// Hypotheses kept per sentence in beam search.
        #[arg(long, default_value_t = 4)]
        beam: usize,
        /// Length penalty exponent of beam search: scores divided by ((5 + length) / 6)^alpha.
        #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
        alpha: f32,
    },
    /// ViT: the top-5 classes of image files (PNG, JPEG).
    Predict {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        images: Vec<std::path::PathBuf>,
    },
    /// Test-set score of a checkpoint. ViT: accuracy on Fashion-MNIST (--out: a CSV of
    /// index,predicted,label). Transformer: BLEU on test.tsv (--out: the translations).
    Eval {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Transformer: the length penalty exponent of the beam search (default 0.6).
        #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
        alpha: f32,
        /// Score the first N test images (or pairs) only.
        #[arg(long)]
        test_images: Option<usize>,
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
        /// Kernels to run (matmul, layernorm, gelu, softmax, cross_entropy, add, dispatch;
        /// attention, which takes minutes, and matmul_f16, f16 operands on matrix units where
        /// there are some, only when named), or `step` for whole training steps; all but those two when empty.
        /// Under mpirun (feature mpi): `step` steps data-parallel on every rank (--batch is the
        /// global batch) and reports the communication; `allreduce` times the gradient sums.
        kernels: Vec<String>,
        /// The model `step` trains: vit-tiny, vit-small, vit-base, vit-cifar, transformer-small or
        /// transformer-base (pairs of 32 tokens).
        #[arg(long, default_value = "vit-tiny")]
        model: String,
        /// Images (or sentence pairs) per step for `step`.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Timed runs per case (median reported), after one warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also time each matmul shape as a CPU sgemm on every core, and print the ratio.
        #[arg(long)]
        compare_blas: bool,
        /// Sequence lengths `attention` times (comma-separated; default 256,1024).
        #[arg(long, value_delimiter = ',')]
        tokens: Vec<usize>,
        /// Matmul shapes to time instead of the standard ones: MxNxK (plain products, no
        /// transposes), comma-separated.
        #[arg(long, value_delimiter = ',', value_parser = parse_mnk)]
        shapes: Vec<[usize; 3]>,
        /// The head dimension `attention` times (16, 32, 64 or 128).
        #[arg(long, default_value_t = 64)]
        head_dim: usize,
        /// The precision `step` runs its products in: f32, or f16 (mixed precision: f16
        /// operands, f32 accumulation, a loss scale of 1024).
        #[arg(long, default_value = "f32")]
        precision: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Under mpirun, `train` joins the job's ranks; dropping `dist` at the end finalizes MPI.
    let dist = match &cli.command {
        Command::Train { .. } => cli::dist::init(),
        _ => Ok(cli::dist::Dist::default()),
    };
    let dist = dist.and_then(|mut d| {
        d.faults = cli.inject_fault.as_deref().map(wgformer::runtime::fault::FaultPlan::parse).transpose()?;
        Ok(d)
    });
    let result = match cli.command {
        Command::Info { json } => info(json),
        Command::Bench { kernels, json, runs, model, batch, compare_blas, tokens, shapes, head_dim, precision } => {
            cli::bench::run(&cli::bench::BenchArgs {
                kernels,
                json,
                runs,
                model,
                batch,
                compare_blas,
                precision,
                shapes,
                attention: wgformer::bench::attention::AttentionCases { tokens, head_dim },
            })
        }
        Command::Plan { model, config, batch, precision, json } => {
            plan(&model, config.as_deref(), batch, &precision, json)
        }
        Command::Verify { case_dir, out } => verify(&case_dir, &out),
        Command::Train { model } => {
            use cli::train_options::TrainCommand;
            shared(&dist).and_then(|dist| match model {
                TrainCommand::Vit(o) => o.into_args(dist).and_then(|a| cli::vit::train(&a)),
                TrainCommand::Translate(o) => o.into_args(dist).and_then(|a| cli::translate::train(&a)),
            })
        }
        Command::Translate { checkpoint, text, greedy, beam, alpha } => cli::translation::search(greedy, beam, alpha)
            .and_then(|search| cli::translation::translate(&checkpoint, text.as_deref(), search)),
        Command::Predict { checkpoint, images } => cli::vit::predict(&checkpoint, &images),
        Command::Eval { checkpoint, out, data, alpha, test_images: n } => {
            match cli::translation::model_type(&checkpoint).as_deref() {
                Some("transformer" | "marian") => cli::translation::search(false, 4, alpha).and_then(|search| {
                    let data = cli::train_options::translation_data(data);
                    cli::translation::eval(&checkpoint, out.as_deref(), &data, search, n)
                }),
                _ => {
                    let data = data.unwrap_or_else(wgformer::data::mnist::default_dir);
                    cli::vit::eval(&checkpoint, out.as_deref(), &data, n)
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // On a rank of a data-parallel job: print with the rank and end every rank.
            if let Ok(d) = &dist {
                d.abort_on_error(&e);
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A clone of the job's `Dist` for one command (the error, when joining the job failed).
fn shared(dist: &Result<cli::dist::Dist>) -> Result<cli::dist::Dist> {
    match dist {
        Ok(d) => Ok(d.clone()),
        Err(e) => Err(wgformer::Error::Distributed(e.to_string())),
    }
}

fn info(json: bool) -> Result<()> {
    let adapters = wgformer::gpu::adapter_summaries();
    let gpu = Gpu::from_env()?;
    let report = wgformer::info::report(&adapters, &gpu)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", wgformer::info::report_text(&report));
    }
    Ok(())
}

/// Parses MxNxK (each at least 1) for `bench --shapes`.
fn parse_mnk(s: &str) -> std::result::Result<[usize; 3], String> {
    let dims: Vec<usize> =
        s.split('x').map(|d| d.trim().parse().ok().filter(|&d| d > 0)).collect::<Option<_>>().unwrap_or_default();
    match dims[..] {
        // Each operand's element count must fit the kernels' 32-bit sizes.
        [m, n, k]
            if [(m, k), (k, n), (m, n)]
                .iter()
                .all(|&(a, b)| a.checked_mul(b).is_some_and(|e| e <= u32::MAX as usize)) =>
        {
            Ok([m, n, k])
        }
        [_, _, _] => Err(format!("{s}: an operand of over 2^32 elements")),
        _ => Err(format!("{s}: expected MxNxK with each at least 1, e.g. 1024x128x512")),
    }
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

fn plan(model: &str, config: Option<&str>, batch: usize, precision: &str, json: bool) -> Result<()> {
    let config = config.unwrap_or(if model == "transformer" { "base" } else { "vit-base" });
    if batch == 0 {
        return Err(wgformer::Error::Config("--batch must be at least 1".into()));
    }
    let (mut graph, loss) = match model {
        "vit" => {
            let v = wgformer::models::vit::build(&vit_config(config)?, batch, true)?;
            (v.graph, v.loss)
        }
        "transformer" => {
            use wgformer::models::transformer::{build, TransformerConfig};
            // Sentences of 32 tokens on both sides, a 37000-entry vocabulary as in the paper.
            let cfg = match config {
                "base" | "transformer-base" => TransformerConfig::base(37000),
                other => TransformerConfig::preset_or_file(other, 37000)?,
            };
            let t = build(&cfg, batch, 32, 32, true)?;
            (t.graph, t.loss)
        }
        other => {
            return Err(wgformer::Error::Config(format!("unknown model {other:?}: plan vit, or plan transformer")))
        }
    };
    let precision = wgformer::graph::Precision::parse(precision)?;
    let grads = wgformer::graph::autodiff::backward(&mut graph, loss)?;
    // Parameters cast as the executor would in this environment (WGFORMER_F16_WEIGHT_CASTS).
    let weights = wgformer::settings::Settings::from_env()?.kernels.f16_weight_casts;
    if precision == wgformer::graph::Precision::F16 {
        let table = &wgformer::kernels::f16_forms::HalfTable;
        graph.cast_products_to_f16_with(wgformer::graph::F16Storage::Half, weights, table);
    }
    let unfused = wgformer::graph::plan::report(&graph, loss, &grads);
    let pinned = wgformer::graph::plan::training_pinned(Some(loss), Some(&grads));
    wgformer::graph::fuse::fuse(&mut graph, &pinned);
    let r = wgformer::graph::plan::report(&graph, loss, &grads);
    // GPUs run the weight gradients' long K in splits (the tiled matmul's untuned rule).
    let splits = wgformer::kernels::matmul::default_gpu_splits;
    let on_gpus = wgformer::graph::plan::report_with_splits(&graph, loss, &grads, splits);
    if json {
        println!("{}", serde_json::json!({ "cpu_adapters": r, "gpus": on_gpus }));
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut what = format!("{model} {config}, batch {batch}, {}", precision.name());
    if precision == wgformer::graph::Precision::F16 {
        what += match weights {
            wgformer::settings::F16WeightCasts::PerProduct => " (parameters cast before each product)",
            wgformer::settings::F16WeightCasts::OncePerStep => " (parameters cast once per step)",
        };
    }
    println!("{what}: one training step (forward, backward, clipping, Adam)");
    println!("  nodes                  {}", r.nodes);
    println!("  dispatches per step    {}", r.dispatches_per_step);
    let by_op: Vec<String> = r.dispatches_by_op.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!(
        "    forward+backward     {} ({}); {} before fusion; optimizer {}",
        r.forward_backward_dispatches,
        by_op.join(", "),
        unfused.forward_backward_dispatches,
        r.dispatches_per_step - r.forward_backward_dispatches
    );
    println!(
        "  bytes moved per step   {:.1} MiB forward+backward ({:.1} before fusion), {:.1} MiB optimizer",
        mib(r.forward_backward_bytes),
        mib(unfused.forward_backward_bytes),
        mib(r.optimizer_bytes_moved)
    );
    println!(
        "  on GPUs                {} forward+backward: {} products with K in splits (a sum each), {:.1} MiB of partials",
        on_gpus.forward_backward_dispatches,
        on_gpus.split_k_products,
        mib(on_gpus.split_k_scratch_bytes)
    );
    println!("  submits per step       {}", r.submits_per_step);
    println!("  parameters             {:.1} MiB", mib(r.param_bytes));
    println!("  Adam moments           {:.1} MiB", mib(r.optimizer_bytes));
    println!("  parameter gradients    {:.1} MiB", mib(r.gradient_bytes));
    println!("  activations, planned   {:.1} MiB", mib(r.peak_activation_bytes));
    println!("  activations, live peak {:.1} MiB (the least any plan needs)", mib(r.live_activation_bytes));
    println!("  activations, no reuse  {:.1} MiB", mib(r.naive_activation_bytes));
    Ok(())
}

fn verify(case_dir: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let gpu = Gpu::from_env()?;
    let tensors = wgformer::verify::verify(&gpu, case_dir)?;
    let views: Vec<(String, Vec<usize>, &[f32])> =
        tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), &v[..])).collect();
    wgformer::util::io::write_atomic(out, &wgformer::util::io::safetensors_bytes(&views)?)?;
    eprintln!("wrote {} tensors to {}", tensors.len(), out.display());
    Ok(())
}
