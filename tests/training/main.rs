//! Whole graphs on the GPU: the executor against the reference, data-parallel steps over
//! threads, mixed precision (the rewrite, f16 operands, training that tracks f32), and both
//! models built, trained and saved.

#[path = "../common/mod.rs"]
mod common;

mod data_parallel;
mod exec;
mod fusion;
mod library_runs;
mod marian_finetune;
mod mixed_precision;
mod mixed_precision_f16_operands;
mod mixed_precision_graph;
mod models_transformer;
mod models_vit;
