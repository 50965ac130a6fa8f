//! The command line's own modules (not part of the library).

pub mod bench;
pub mod blas;
pub mod dist;
pub mod progress;
pub mod train_options;
pub mod translate;
mod translate_exec;
mod translate_finish;
pub mod translate_plan;
pub mod translate_state;
pub mod translation;
pub mod vit;

/// Reads a checkpoint's trainer_state.json.
pub fn read_trainer_state<T: serde::de::DeserializeOwned>(dir: &std::path::Path) -> wgformer::Result<T> {
    // A run killed while it replaced the checkpoint left the previous one as DIR.old.
    wgformer::util::io::recover_dir(dir)?;
    let path = dir.join("trainer_state.json");
    let format = |msg: String| wgformer::Error::Format { path: path.display().to_string(), msg };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| wgformer::Error::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|e| format(e.to_string()))
}

/// ", loss scale S, N skipped" for the progress line of a mixed-precision run; empty in f32.
pub fn scale_note(trainer: &wgformer::runtime::trainer::Trainer) -> String {
    trainer.scaler.map_or(String::new(), |s| format!(", loss scale {}, {} skipped", s.scale, s.skipped))
}

/// ", comm X ms, Y% hidden" for the progress line of a data-parallel run (the last step's
/// gradient sums and the share of them hidden behind the backward); empty otherwise.
pub fn comm_note(trainer: &wgformer::runtime::trainer::Trainer) -> String {
    if trainer.ranks() < 2 {
        return String::new();
    }
    let c = trainer.exec.last_comm();
    format!(", comm {:.0} ms, {:.0}% hidden", c.comm_seconds * 1e3, 100.0 * c.hidden_share())
}
