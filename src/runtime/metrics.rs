//! A run's metrics as JSON lines (`metrics.jsonl` in its checkpoint directory): one object per
//! training step and one per evaluation, in order. They are written with each checkpoint, as
//! part of it, so that the file always agrees with the saved state; a resumed run starts from
//! the records up to its checkpoint's step and goes on appending.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in a checkpoint directory.
pub const FILE: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A training step: its number (from 1), its loss (`None` for a step mixed precision
    /// skipped on an overflow), the learning rate it used and the throughput so far in the
    /// run's unit (images or target tokens a second).
    Step { step: u32, loss: Option<f32>, lr: f32, per_second: f64 },
    /// An evaluation after `step` steps, at the end of `round` (an epoch, or a round of a
    /// time-budgeted run): named values such as `test_accuracy` or `valid_loss`.
    Eval { step: u32, round: usize, values: BTreeMap<String, f64> },
}

impl Record {
    /// The step the record belongs to.
    pub fn step(&self) -> u32 {
        match self {
            Record::Step { step, .. } | Record::Eval { step, .. } => *step,
        }
    }
}

/// The records of a run so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub records: Vec<Record>,
}

impl Metrics {
    /// The records in `dir`'s `metrics.jsonl` up to `step` (a resumed run's checkpoint step);
    /// none where the file is missing (a checkpoint from before metrics were written).
    pub fn resume(dir: &Path, step: u32) -> Result<Self> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Metrics::default()),
            Err(source) => return Err(Error::Io { path: path.display().to_string(), source }),
        };
        let mut m = Self::parse(&text, &path)?;
        m.records.retain(|r| r.step() <= step);
        Ok(m)
    }

    /// [`Metrics::resume`] of a resumed run's directory, or a new run's empty records.
    pub fn of_run(resume: Option<&Path>, step: u32) -> Result<Self> {
        resume.map_or(Ok(Metrics::default()), |dir| Self::resume(dir, step))
    }

    /// The records of `metrics.jsonl` text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let records = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| Error::Format {
                    path: path.display().to_string(),
                    msg: format!("line {}: {e}", i + 1),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Metrics { records })
    }

    /// Appends a training step.
    pub fn step(&mut self, step: u32, loss: f32, lr: f32, per_second: f64) {
        let loss = loss.is_finite().then_some(loss);
        self.records.push(Record::Step { step, loss, lr, per_second });
    }

    /// Appends an evaluation.
    pub fn eval(&mut self, step: u32, round: usize, values: &[(&str, f64)]) {
        let values = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.records.push(Record::Eval { step, round, values });
    }

    /// The losses of the steps, in order (skipped steps left out).
    pub fn losses(&self) -> Vec<(u32, f32)> {
        let loss = |r: &Record| match r {
            Record::Step { step, loss: Some(l), .. } => Some((*step, *l)),
            _ => None,
        };
        self.records.iter().filter_map(loss).collect()
    }

    /// The file's bytes: one JSON object a line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for r in &self.records {
            out += &serde_json::to_string(r).unwrap_or_default();
            out.push('\n');
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_resume_drops_what_came_after_the_checkpoint() {
        let mut m = Metrics::default();
        m.step(1, 2.5, 1e-3, 100.0);
        m.step(2, f32::NAN, 1e-3, 110.0);
        m.eval(2, 1, &[("test_accuracy", 0.5)]);
        m.step(3, 1.25, 9e-4, 120.0);
        let bytes = m.to_bytes();
        let back = Metrics::parse(std::str::from_utf8(&bytes).unwrap(), Path::new("m")).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.losses(), [(1, 2.5), (3, 1.25)]);
        let mut cut = back.clone();
        cut.records.retain(|r| r.step() <= 2);
        assert_eq!(cut.records.len(), 3);
        assert!(Metrics::parse("{\"kind\":\"step\"}\n", Path::new("m")).is_err());
    }
}
