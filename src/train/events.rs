//! What a run reports to the app that drives it. A run never prints; the CLI renders these as
//! progress bars and lines, the browser page as a chart.

/// One thing that happened in a run (serialised for the browser page as
/// `{"kind": "step", ...}`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The run is set up: a one-line description of the model, the data and the plan.
    Started { description: String },
    /// A note about the run's plan (a measured time budget, a replanned schedule, data left out).
    Note { text: String },
    /// A round (epoch) begins: `round` counts from 1, `steps` is how many it should take.
    RoundStarted { round: usize, rounds: usize, steps: u64, label: String },
    /// A training step ended.
    Step { report: StepReport },
    /// An evaluation after `round` rounds: named values (`test_accuracy`, `valid_loss`, ...).
    Evaluated { round: usize, step: u32, values: Vec<(String, f64)>, summary: String },
    /// A checkpoint was written (`place` says where: a directory, or "memory").
    Checkpoint { step: u32, round: usize, place: String },
    /// The run took all its steps (or its time): `summary` says how it ended.
    Done { summary: String },
}

impl Event {
    /// A [`Event::Note`].
    pub fn note(text: String) -> Self {
        Event::Note { text }
    }

    /// A [`Event::Step`].
    pub fn step(report: StepReport) -> Self {
        Event::Step { report }
    }
}

/// One training step, as the progress display and the metrics need it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// The step's number (from 1).
    pub step: u32,
    /// Its loss (not finite for a step mixed precision skipped on an overflow).
    pub loss: f32,
    /// The loss smoothed over recent steps (for display).
    pub smoothed: f32,
    /// The learning rate it used.
    pub lr: f32,
    /// Examples (images, target tokens) a second in this round so far.
    pub per_second: f64,
    /// The unit of `per_second`: "img" or "tok".
    pub unit: &'static str,
    /// Mixed precision's loss scale and the steps it skipped (`None` in f32).
    pub loss_scale: Option<(f32, u32)>,
    /// The step's position in its round, and the round's length.
    pub in_round: (u64, u64),
    /// Anything else worth showing (data-parallel communication, budget left).
    pub extra: String,
}

/// Receives a run's events.
pub trait Observer {
    fn event(&mut self, event: &Event);
}

/// A closure is an observer.
impl<F: FnMut(&Event)> Observer for F {
    fn event(&mut self, event: &Event) {
        self(event)
    }
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &Event) {}
}
