//! `wgformer bench`: kernels, whole steps and, under mpirun, the gradient sums; only rank 0
//! reports.

use super::dist::Dist;
use wgformer::Result;

/// Options of `bench`.
pub struct BenchArgs {
    /// Kernels to run, `step`, or `allreduce`.
    pub kernels: Vec<String>,
    pub json: bool,
    pub runs: usize,
    /// The model `step` trains, and its (global) batch.
    pub model: String,
    pub batch: usize,
    pub compare_blas: bool,
    /// `--precision` of the step benches.
    pub precision: String,
    /// Matmul shapes (`--shapes`; empty for the standard ones).
    pub shapes: Vec<[usize; 3]>,
    pub attention: wgformer::bench::attention::AttentionCases,
}

/// Runs the benches `args` names and prints the table (or JSON).
pub fn run(args: &BenchArgs) -> Result<()> {
    // Under mpirun the step and allreduce benches run on every rank; only rank 0 reports.
    let dist = match args.kernels.iter().any(|k| k == "step" || k == "allreduce") {
        true => super::dist::init()?,
        false => Dist::default(),
    };
    let result = run_on(args, &dist);
    if let Err(e) = &result {
        dist.abort_on_error(e);
    }
    result
}

fn run_on(args: &BenchArgs, dist: &Dist) -> Result<()> {
    let (allreduce, kernels): (Vec<String>, Vec<String>) = args.kernels.iter().cloned().partition(|k| k == "allreduce");
    let group = dist.group.as_deref();
    let mut say = |line: &str| {
        if dist.is_main() {
            eprintln!("{line}")
        }
    };
    let mut results = Vec::new();
    if !allreduce.is_empty() {
        let Some(g) = group else {
            return Err(wgformer::Error::Config(
                "bench allreduce times sums between ranks: run it under mpirun with a build of feature mpi".into(),
            ));
        };
        results = wgformer::bench::allreduce::run_allreduce(g, args.runs, &mut say)?;
        if kernels.is_empty() {
            return report(&results, args.json, dist);
        }
    }
    let gpu = dist.gpu()?;
    let matmul = match args.shapes.is_empty() {
        true => wgformer::bench::matmul_shapes(&gpu),
        false => wgformer::bench::custom_matmul_shapes(&args.shapes),
    };
    let (steps, kernels): (Vec<String>, Vec<String>) = kernels.iter().cloned().partition(|k| k == "step");
    if !kernels.is_empty() || steps.is_empty() {
        results.extend(wgformer::bench::run_kernels(&gpu, &kernels, args.runs, &matmul, &args.attention, &mut say)?);
        if args.compare_blas {
            results = super::blas::compare(&matmul, results, args.runs, &mut |line| eprintln!("{line}"));
        }
    }
    if !steps.is_empty() {
        let precision = wgformer::graph::Precision::parse(&args.precision)?;
        results.push(wgformer::bench::run_step(&gpu, &args.model, args.batch, args.runs, precision, group, &mut say)?);
    }
    report(&results, args.json, dist)
}

/// The results on stdout (from rank 0 only under mpirun).
fn report(results: &[wgformer::bench::BenchResult], json: bool, dist: &Dist) -> Result<()> {
    if !dist.is_main() {
        return Ok(());
    }
    if json {
        println!("{}", serde_json::to_string(results).unwrap_or_default());
    } else {
        print!("{}", wgformer::bench::table(results));
    }
    Ok(())
}
