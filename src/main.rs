//! The `wgformer` command line: `info` and `bench` (training and inference commands come with
//! the models). Logs go to stderr; `--json` output is one JSON value on stdout.

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
    /// Kernel timings: median ms and GFLOP/s or GB/s.
    Bench {
        /// Kernels to run (matmul, layernorm, gelu, softmax, add); all when empty.
        kernels: Vec<String>,
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
        Command::Bench { kernels, json, runs } => bench(&kernels, json, runs),
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

fn bench(kernels: &[String], json: bool, runs: usize) -> Result<()> {
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", gpu.describe());
    let results = wgformer::bench::run_kernels(&gpu, kernels, runs, &mut |line| eprintln!("{line}"))?;
    if json {
        println!("{}", serde_json::to_string(&results).unwrap_or_default());
    } else {
        print!("{}", wgformer::bench::table(&results));
    }
    Ok(())
}
