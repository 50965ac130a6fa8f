//! The `wgformer` binary as a user runs it: bench, train and translate, train vit, and runs
//! killed at random moments or hit by injected faults.

#[path = "../common/mod.rs"]
mod common;

mod cli_bench;
mod cli_marian;
mod cli_translate;
mod cli_vit;
mod crash_safety;
mod examples;
mod reference_losses;
