//! The server's source of time, replaceable so that tests can drive expiry.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// Where the server reads the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The current time of `clock` at the precision records store (whole
/// milliseconds), so that an answer shows exactly what a later read returns.
pub fn now_ms(clock: &dyn Clock) -> SystemTime {
    let now = clock.now();
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => now - Duration::from_nanos(u64::from(since.subsec_nanos() % 1_000_000)),
        Err(_) => now,
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is moved: for tests of expiry.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// The time it shows; shared by every clone.
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
