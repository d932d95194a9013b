//! systemd's service notifications for `hub run` under `Type=notify` (see
//! `systemd/hub.service`), through the `sd-notify` crate (no `unsafe` here).
//!
//! The daemon calls [`ready`] once it serves, [`Watchdog::tick`] from its
//! site loop, and [`stopping`] when SIGTERM arrives. Every call is a no-op
//! when `NOTIFY_SOCKET` is unset (started by hand, in tests, in the demo).
//!
//! The watchdog ping comes from the site loop on purpose, not from a timer
//! task of its own: if the loop that runs the doors gets stuck, the pings
//! stop and systemd restarts the hub after `WatchdogSec`.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::debug;

fn send(state: NotifyState<'_>) {
    // A failed notification must not stop the hub; systemd notices the
    // missing message on its own (start timeout, watchdog).
    if let Err(e) = sd_notify::notify(false, &[state]) {
        debug!("systemd notification not sent: {e}");
    }
}

/// `READY=1`: the hub serves.
pub fn ready() {
    send(NotifyState::Ready);
}

/// `STOPPING=1`: the hub is shutting down.
pub fn stopping() {
    send(NotifyState::Stopping);
}

/// The watchdog pings of one loop: `WATCHDOG=1` at half of systemd's
/// `WATCHDOG_USEC`, or nothing when systemd asked for no watchdog.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`) from the environment.
    pub fn from_env(now: Instant) -> Self {
        let mut usec = 0;
        let every = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec / 2))
            .filter(|d| !d.is_zero());
        Watchdog { every, next: now }
    }

    /// When the next ping is due (`None`: no watchdog).
    pub fn due(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }

    /// Pings systemd when a ping is due; call it on every turn of the loop.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.every else {
            return;
        };
        if now >= self.next {
            send(NotifyState::Watchdog);
            self.next = now + every;
        }
    }
}
