//! Progress of a training round: a bar on a terminal; elsewhere (a log file, a pipe, CI) a
//! plain line every `--log-every` steps, or about every 30 s when not given, with the step,
//! the round's message (loss, learning rate, throughput), the elapsed and the remaining time.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A plain line at least this often when stderr is not a terminal and no step count is given.
const PLAIN_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: ProgressBar,
    plain: Option<Plain>,
}

/// The state of plain-line progress.
struct Plain {
    every_steps: Option<u64>,
    prefix: String,
    len: u64,
    pos: u64,
    start: Instant,
    last: Instant,
}

impl Progress {
    /// Progress over `len` steps, shown where `visible` (rank 0 of a job): a bar on a terminal,
    /// else plain lines every `every_steps` steps (about every 30 s when `None`).
    pub fn new(len: u64, prefix: String, visible: bool, every_steps: Option<u64>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = match visible && terminal {
            true => ProgressBar::new(len),
            false => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(prefix.clone());
        let now = Instant::now();
        let plain = (visible && !terminal).then_some(Plain { every_steps, prefix, len, pos: 0, start: now, last: now });
        Progress { bar, plain }
    }

    /// One step done; `message` says how it went.
    pub fn step(&mut self, message: String) {
        let Some(p) = &mut self.plain else {
            self.bar.set_message(message);
            self.bar.inc(1);
            return;
        };
        p.pos += 1;
        let due = match p.every_steps {
            Some(n) => p.pos % n.max(1) == 0,
            None => p.last.elapsed() >= PLAIN_EVERY,
        };
        if due || p.pos == p.len {
            p.last = Instant::now();
            let elapsed = p.start.elapsed().as_secs_f64();
            let left = elapsed / p.pos as f64 * p.len.saturating_sub(p.pos) as f64;
            eprintln!("{} {}/{}: {message}, {elapsed:.0} s elapsed, {left:.0} s left", p.prefix, p.pos, p.len);
        }
    }

    /// The round is over: the bar goes away.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Renders a training run's events on stderr: the run's notes and evaluations as lines, each
/// round's steps as a [`Progress`].
pub struct Console {
    /// Whether this process shows anything (rank 0 of a job).
    visible: bool,
    log_every: Option<u64>,
    bar: Option<Progress>,
}

impl Console {
    pub fn new(visible: bool, log_every: Option<u64>) -> Self {
        Console { visible, log_every, bar: None }
    }

    fn line(&mut self, text: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if self.visible {
            eprintln!("{text}");
        }
    }
}

impl wgformer::train::Observer for Console {
    fn event(&mut self, event: &wgformer::train::Event) {
        use wgformer::train::Event;
        match event {
            Event::Started { description } => self.line(description),
            Event::Note { text } => self.line(text),
            Event::RoundStarted { steps, label, .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
                self.bar = Some(Progress::new(*steps, label.clone(), self.visible, self.log_every));
            }
            Event::Step { report: s } => {
                if let Some(bar) = &mut self.bar {
                    let scale = s.loss_scale.map_or(String::new(), |(v, n)| format!(", loss scale {v}, {n} skipped"));
                    bar.step(format!(
                        "loss {:.4} lr {:.2e} {:.0} {}/s{scale}{}",
                        s.smoothed, s.lr, s.per_second, s.unit, s.extra
                    ));
                }
            }
            Event::Evaluated { summary, .. } => self.line(summary),
            Event::Checkpoint { .. } => {}
            Event::Done { summary } => self.line(summary),
        }
    }
}
