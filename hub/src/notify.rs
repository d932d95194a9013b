//! systemd's service notifications for `hub run` under `Type=notify` (see
//! `systemd/hub.service`), through the `sd-notify` crate (no `unsafe` here).
//!
//! The daemon calls [`ready`] once it serves, [`Watchdog::tick`] from its
//! site loop, and [`stopping`] when SIGTERM arrives. Every call is a no-op
//! when `NOTIFY_SOCKET` is unset (started by hand, in tests, in the demo).
//!
//! The watchdog ping comes from the site loop on purpose, not from a timer
//! task of its own: if the loop that runs the doors gets stuck, the pings
//! stop and systemd restarts the hub after `WatchdogSec`. Pings start once
//! [`ready`] has been sent: until then the start timeout is systemd's guard,
//! and a ping before `READY=1` would announce a hub that does not serve yet.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// Whether `READY=1` went out (the watchdog waits for it).
static READY_SENT: AtomicBool = AtomicBool::new(false);

/// `READY=1`: the hub serves.
pub fn ready() {
    send(NotifyState::Ready);
    READY_SENT.store(true, Ordering::Release);
}

/// `STOPPING=1`: the hub is shutting down.
pub fn stopping() {
    send(NotifyState::Stopping);
}

/// Half the watchdog timeout, as `sd_watchdog_enabled(3)` reads it: a
/// `WATCHDOG_PID` that is set must be ours (an unset one is fine, unlike
/// `sd_notify::watchdog_enabled`, which then says no).
fn interval(usec: Option<String>, pid: Option<String>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}

/// The watchdog pings of one loop: `WATCHDOG=1` at half of systemd's
/// `WATCHDOG_USEC`, or nothing when systemd asked for no watchdog.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env(now: Instant) -> Self {
        let var = |name| std::env::var(name).ok();
        Watchdog {
            every: interval(
                var("WATCHDOG_USEC"),
                var("WATCHDOG_PID"),
                std::process::id(),
            ),
            next: now,
        }
    }

    /// When the next ping is due (`None`: no watchdog).
    pub fn due(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }

    /// Pings systemd when a ping is due and [`ready`] was sent; call it on
    /// every turn of the loop.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.every else {
            return;
        };
        if now >= self.next && READY_SENT.load(Ordering::Acquire) {
            send(NotifyState::Watchdog);
            self.next = now + every;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_for_this_process_only() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            interval(s("10000000"), None, 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            interval(s("10000000"), s("7"), 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            interval(s("10000000"), s("8"), 7),
            None,
            "another process's"
        );
        assert_eq!(interval(None, s("7"), 7), None);
        assert_eq!(interval(s("soon"), None, 7), None);
        assert_eq!(interval(s("1"), None, 7), None);
    }
}
