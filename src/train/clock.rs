//! Where a run reads the time: throughput, time budgets and progress need seconds, and a
//! browser has no `std::time::Instant`.

/// A monotonic clock in seconds from an arbitrary origin.
pub trait Clock {
    fn seconds(&self) -> f64;
}

/// The system's monotonic clock (native).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy, Debug)]
pub struct SystemClock(std::time::Instant);

#[cfg(not(target_arch = "wasm32"))]
impl SystemClock {
    pub fn new() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Clock for SystemClock {
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// Any `Fn() -> f64` is a clock (a page's `performance.now() / 1000`, a test's counter).
impl<F: Fn() -> f64> Clock for F {
    fn seconds(&self) -> f64 {
        self()
    }
}
