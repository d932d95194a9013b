//! Door control: one door's strike, position switch, exit button and alarms
//! as a deterministic state machine.
//!
//! The caller feeds what happens at the door and applies what comes out:
//!
//! ```text
//! door.handle(DoorInput::Granted { extended }, now);   // a decision said yes
//! door.handle(DoorInput::Position { open: true }, now); // DPS input changed
//! while let Some(action) = door.poll_action() { ... }   // strike, LED, beep, alarm
//! sleep until door.poll_timeout(); door.handle_timeout(now);
//! ```
//!
//! Actions are device-neutral ([`DoorAction::Strike`], [`DoorAction::Led`],
//! ...); the hub turns them into osdp_OUT / osdp_LED / osdp_BUZ for the
//! door's reader and relay. Timers live in a small table indexed by
//! [`Timer`].
//!
//! Rules:
//! - Granted: strike released for the pulse time (the extended time for
//!   users who need it), green LED, short beep. The strike locks again when
//!   the door closes after opening, or when the pulse ends unopened.
//! - Denied: red LED, two short beeps; the strike is not touched.
//! - Exit button (REX): strike released for the pulse time when configured,
//!   otherwise only the door opening is excused (mechanical egress).
//! - The door opening while locked and not excused: **forced open** alarm,
//!   cleared when it closes. Open longer than the held-open time after an
//!   authorised opening: **held open** alarm, cleared when it closes.
//! - Modes: `Normal`; `Unlocked` (a lock/unlock schedule or an operator keeps
//!   the strike released; no forced-open alarm); `Lockdown` (no grants are
//!   honoured, the strike stays locked; the exit button still works for
//!   egress, as life safety requires).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Door settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorConfig {
    /// Strike release after a grant.
    pub pulse: Duration,
    /// Strike release for users with extended time (accessibility).
    pub extended_pulse: Duration,
    /// Open this long after an authorised opening: held-open alarm.
    pub held_open_after: Duration,
    /// The exit button releases the strike (otherwise it only excuses the
    /// opening, for doors with mechanical egress).
    pub rex_releases_strike: bool,
    /// The door has a position switch (without one there are no alarms).
    pub has_position_switch: bool,
}

impl Default for DoorConfig {
    fn default() -> Self {
        DoorConfig {
            pulse: Duration::from_secs(5),
            extended_pulse: Duration::from_secs(15),
            held_open_after: Duration::from_secs(30),
            rex_releases_strike: true,
            has_position_switch: true,
        }
    }
}

/// Operating mode of a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorMode {
    /// Locked; opens for grants and the exit button.
    Normal,
    /// Strike released until the mode changes (schedule or operator).
    Unlocked,
    /// Nobody gets in; egress by the exit button still works.
    Lockdown,
}

/// Something that happened at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorInput {
    /// A credential was granted at one of the door's readers.
    Granted {
        /// Use the extended pulse.
        extended: bool,
    },
    /// A credential was denied.
    Denied,
    /// The exit button was pressed.
    ExitButton,
    /// The door position switch changed.
    Position {
        /// The door is open.
        open: bool,
    },
    /// An operator released the strike once (momentary unlock), for
    /// `pulse` or the door's normal pulse time.
    MomentaryUnlock {
        /// How long; `None`: [`DoorConfig::pulse`].
        pulse: Option<Duration>,
    },
    /// The mode changed (schedule, operator, lockdown command).
    Mode(DoorMode),
}

/// LED colours the door asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indication {
    /// Access granted.
    Green,
    /// Access denied or refused in lockdown.
    Red,
}

/// Door alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorAlarm {
    /// Opened while locked without a grant or exit request.
    ForcedOpen,
    /// Left open longer than allowed after an authorised opening.
    HeldOpen,
}

/// What the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorAction {
    /// Release (`true`) or lock (`false`) the strike relay.
    Strike(bool),
    /// Show a colour at the door's readers for a while.
    Led(Indication, Duration),
    /// Beep `count` times.
    Beep {
        /// Number of beeps.
        count: u8,
    },
    /// An alarm started.
    AlarmRaised(DoorAlarm),
    /// An alarm ended (the door closed).
    AlarmCleared(DoorAlarm),
    /// A grant was not honoured because the door is in lockdown.
    RefusedInLockdown,
}

/// The door's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// End of the strike release.
    Relock = 0,
    /// Held-open alarm deadline.
    HeldOpen = 1,
}

/// What the door is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorState {
    /// Operating mode.
    pub mode: DoorMode,
    /// The strike is released.
    pub strike_released: bool,
    /// The position switch says open.
    pub open: bool,
    /// Forced-open alarm active.
    pub forced_open: bool,
    /// Held-open alarm active.
    pub held_open: bool,
}

/// One door.
#[derive(Debug, Clone)]
pub struct Door {
    config: DoorConfig,
    state: DoorState,
    /// The current opening is authorised (grant, exit button, unlocked mode).
    excused: bool,
    timers: [Option<Instant>; 2],
    actions: VecDeque<DoorAction>,
}

impl Door {
    /// A closed, locked door in normal mode.
    pub fn new(config: DoorConfig) -> Door {
        Door {
            config,
            state: DoorState {
                mode: DoorMode::Normal,
                strike_released: false,
                open: false,
                forced_open: false,
                held_open: false,
            },
            excused: false,
            timers: [None; 2],
            actions: VecDeque::new(),
        }
    }

    /// Current state (for status pages and health reports).
    pub fn state(&self) -> DoorState {
        self.state
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<DoorAction> {
        self.actions.pop_front()
    }

    /// When [`Door::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Handles an input.
    pub fn handle(&mut self, input: DoorInput, now: Instant) {
        match input {
            DoorInput::Granted { extended } => {
                if self.state.mode == DoorMode::Lockdown {
                    self.actions.push_back(DoorAction::RefusedInLockdown);
                    self.indicate(Indication::Red, 2);
                    return;
                }
                let pulse = if extended {
                    self.config.extended_pulse
                } else {
                    self.config.pulse
                };
                self.release_for(pulse, now);
                self.indicate(Indication::Green, 1);
            }
            DoorInput::Denied => self.indicate(Indication::Red, 2),
            DoorInput::ExitButton => {
                if self.config.rex_releases_strike {
                    self.release_for(self.config.pulse, now);
                } else {
                    self.excused = true;
                    self.set_timer(Timer::Relock, Some(now + self.config.pulse));
                }
            }
            DoorInput::MomentaryUnlock { pulse } => {
                if self.state.mode != DoorMode::Lockdown {
                    self.release_for(pulse.unwrap_or(self.config.pulse), now);
                }
            }
            DoorInput::Position { open } => self.position(open, now),
            DoorInput::Mode(mode) => self.set_mode(mode, now),
        }
    }

    /// Handles expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.due(Timer::Relock, now) {
            self.set_timer(Timer::Relock, None);
            // The release window ended. An open door relocks when it closes.
            if !self.state.open {
                self.excused = self.state.mode == DoorMode::Unlocked;
                if self.state.mode != DoorMode::Unlocked {
                    self.strike(false);
                }
            }
        }
        if self.due(Timer::HeldOpen, now) {
            self.set_timer(Timer::HeldOpen, None);
            if self.state.open && !self.state.held_open && self.state.mode != DoorMode::Unlocked {
                self.state.held_open = true;
                self.actions
                    .push_back(DoorAction::AlarmRaised(DoorAlarm::HeldOpen));
            }
        }
    }

    fn due(&self, t: Timer, now: Instant) -> bool {
        self.timers[t as usize].is_some_and(|at| now >= at)
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    fn strike(&mut self, released: bool) {
        if self.state.strike_released != released {
            self.state.strike_released = released;
            self.actions.push_back(DoorAction::Strike(released));
        }
    }

    fn indicate(&mut self, colour: Indication, beeps: u8) {
        self.actions
            .push_back(DoorAction::Led(colour, Duration::from_secs(2)));
        self.actions.push_back(DoorAction::Beep { count: beeps });
    }

    fn release_for(&mut self, pulse: Duration, now: Instant) {
        self.excused = true;
        self.strike(true);
        if self.state.mode != DoorMode::Unlocked {
            // A later, longer grant extends the window; never shortens it.
            let until = now + pulse;
            let current = self.timers[Timer::Relock as usize];
            self.set_timer(Timer::Relock, Some(current.map_or(until, |c| c.max(until))));
        }
    }

    fn position(&mut self, open: bool, now: Instant) {
        if !self.config.has_position_switch || open == self.state.open {
            return;
        }
        self.state.open = open;
        if open {
            if self.excused || self.state.mode == DoorMode::Unlocked {
                if self.state.mode != DoorMode::Unlocked {
                    self.set_timer(Timer::HeldOpen, Some(now + self.config.held_open_after));
                }
            } else if !self.state.forced_open {
                self.state.forced_open = true;
                self.actions
                    .push_back(DoorAction::AlarmRaised(DoorAlarm::ForcedOpen));
            }
            return;
        }
        // Closed: alarms end; relock at once unless the mode keeps it open.
        self.set_timer(Timer::HeldOpen, None);
        if self.state.forced_open {
            self.state.forced_open = false;
            self.actions
                .push_back(DoorAction::AlarmCleared(DoorAlarm::ForcedOpen));
        }
        if self.state.held_open {
            self.state.held_open = false;
            self.actions
                .push_back(DoorAction::AlarmCleared(DoorAlarm::HeldOpen));
        }
        if self.state.mode != DoorMode::Unlocked {
            self.excused = false;
            self.set_timer(Timer::Relock, None);
            self.strike(false);
        }
    }

    fn set_mode(&mut self, mode: DoorMode, now: Instant) {
        if mode == self.state.mode {
            return;
        }
        self.state.mode = mode;
        match mode {
            DoorMode::Unlocked => {
                self.excused = true;
                self.set_timer(Timer::Relock, None);
                self.set_timer(Timer::HeldOpen, None);
                self.strike(true);
            }
            DoorMode::Normal | DoorMode::Lockdown => {
                self.set_timer(Timer::Relock, None);
                if mode == DoorMode::Lockdown || !self.state.open {
                    self.excused = false;
                    self.strike(false);
                }
                if self.state.open && mode == DoorMode::Normal {
                    // Left open when the unlocked period ended: give it the
                    // held-open time to close.
                    self.set_timer(Timer::HeldOpen, Some(now + self.config.held_open_after));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door() -> (Door, Instant) {
        (Door::new(DoorConfig::default()), Instant::now())
    }

    fn actions(d: &mut Door) -> Vec<DoorAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn run_timers(d: &mut Door, until: Instant) {
        while let Some(t) = d.poll_timeout() {
            if t > until {
                break;
            }
            d.handle_timeout(t);
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn grant_releases_strike_for_the_pulse_with_green_and_beep() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Granted { extended: false }, t0);
        assert_eq!(
            actions(&mut d),
            vec![
                DoorAction::Strike(true),
                DoorAction::Led(Indication::Green, 2 * S),
                DoorAction::Beep { count: 1 }
            ]
        );
        assert_eq!(d.poll_timeout(), Some(t0 + 5 * S));
        run_timers(&mut d, t0 + 5 * S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(false)]);
        assert!(!d.state().strike_released);
    }

    #[test]
    fn extended_time_for_users_who_need_it() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Granted { extended: true }, t0);
        assert_eq!(d.poll_timeout(), Some(t0 + 15 * S));
        // A normal grant meanwhile does not shorten it.
        d.handle(DoorInput::Granted { extended: false }, t0 + S);
        assert_eq!(d.poll_timeout(), Some(t0 + 15 * S));
    }

    #[test]
    fn deny_shows_red_and_leaves_the_strike_alone() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Denied, t0);
        assert_eq!(
            actions(&mut d),
            vec![
                DoorAction::Led(Indication::Red, 2 * S),
                DoorAction::Beep { count: 2 }
            ]
        );
        assert!(!d.state().strike_released);
    }

    #[test]
    fn authorised_opening_relocks_on_close_without_alarm() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Granted { extended: false }, t0);
        d.handle(DoorInput::Position { open: true }, t0 + S);
        d.handle(DoorInput::Position { open: false }, t0 + 3 * S);
        let a = actions(&mut d);
        assert_eq!(a.last(), Some(&DoorAction::Strike(false)));
        assert!(!a.iter().any(|x| matches!(x, DoorAction::AlarmRaised(_))));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn forced_open_raises_and_clears() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Position { open: true }, t0);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmRaised(DoorAlarm::ForcedOpen)]
        );
        assert!(d.state().forced_open);
        d.handle(DoorInput::Position { open: false }, t0 + S);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmCleared(DoorAlarm::ForcedOpen)]
        );
    }

    #[test]
    fn opening_after_the_pulse_ended_is_forced() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Granted { extended: false }, t0);
        run_timers(&mut d, t0 + 6 * S);
        actions(&mut d);
        d.handle(DoorInput::Position { open: true }, t0 + 7 * S);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmRaised(DoorAlarm::ForcedOpen)]
        );
    }

    #[test]
    fn held_open_after_the_configured_time() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Granted { extended: false }, t0);
        d.handle(DoorInput::Position { open: true }, t0 + S);
        actions(&mut d);
        run_timers(&mut d, t0 + 30 * S);
        assert!(!d.state().held_open, "not yet: 29 s open");
        run_timers(&mut d, t0 + 31 * S);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmRaised(DoorAlarm::HeldOpen)]
        );
        d.handle(DoorInput::Position { open: false }, t0 + 40 * S);
        assert_eq!(
            actions(&mut d),
            vec![
                DoorAction::AlarmCleared(DoorAlarm::HeldOpen),
                DoorAction::Strike(false)
            ]
        );
    }

    #[test]
    fn exit_button_releases_or_only_excuses() {
        let (mut d, t0) = door();
        d.handle(DoorInput::ExitButton, t0);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(true)]);
        d.handle(DoorInput::Position { open: true }, t0 + S);
        assert!(actions(&mut d).is_empty(), "no forced-open alarm");

        let mut d = Door::new(DoorConfig {
            rex_releases_strike: false,
            ..DoorConfig::default()
        });
        d.handle(DoorInput::ExitButton, t0);
        assert!(actions(&mut d).is_empty(), "mechanical egress: no strike");
        d.handle(DoorInput::Position { open: true }, t0 + S);
        assert!(actions(&mut d).is_empty(), "excused");
        d.handle(DoorInput::Position { open: false }, t0 + 2 * S);
        run_timers(&mut d, t0 + 10 * S);
        d.handle(DoorInput::Position { open: true }, t0 + 11 * S);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmRaised(DoorAlarm::ForcedOpen)]
        );
    }

    #[test]
    fn unlocked_mode_keeps_the_strike_released_without_alarms() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Mode(DoorMode::Unlocked), t0);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(true)]);
        d.handle(DoorInput::Position { open: true }, t0 + S);
        run_timers(&mut d, t0 + 3600 * S);
        d.handle(DoorInput::Position { open: false }, t0 + 3601 * S);
        assert!(actions(&mut d).is_empty());
        assert!(d.state().strike_released);
        // Back to normal while closed: locks.
        d.handle(DoorInput::Mode(DoorMode::Normal), t0 + 3602 * S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(false)]);
    }

    #[test]
    fn unlocked_period_ending_with_the_door_open_gives_time_to_close() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Mode(DoorMode::Unlocked), t0);
        d.handle(DoorInput::Position { open: true }, t0 + S);
        actions(&mut d);
        d.handle(DoorInput::Mode(DoorMode::Normal), t0 + 2 * S);
        assert!(actions(&mut d).is_empty(), "strike stays until it closes");
        run_timers(&mut d, t0 + 40 * S);
        assert_eq!(
            actions(&mut d),
            vec![DoorAction::AlarmRaised(DoorAlarm::HeldOpen)]
        );
        d.handle(DoorInput::Position { open: false }, t0 + 41 * S);
        assert_eq!(
            actions(&mut d),
            vec![
                DoorAction::AlarmCleared(DoorAlarm::HeldOpen),
                DoorAction::Strike(false)
            ]
        );
    }

    #[test]
    fn lockdown_refuses_grants_but_not_egress() {
        let (mut d, t0) = door();
        d.handle(DoorInput::Mode(DoorMode::Lockdown), t0);
        d.handle(DoorInput::Granted { extended: false }, t0 + S);
        assert_eq!(
            actions(&mut d),
            vec![
                DoorAction::RefusedInLockdown,
                DoorAction::Led(Indication::Red, 2 * S),
                DoorAction::Beep { count: 2 }
            ]
        );
        d.handle(DoorInput::MomentaryUnlock { pulse: None }, t0 + 2 * S);
        assert!(actions(&mut d).is_empty());
        d.handle(DoorInput::ExitButton, t0 + 3 * S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(true)]);
        // Lockdown while unlocked locks at once.
        let (mut d, t0) = door();
        d.handle(DoorInput::Mode(DoorMode::Unlocked), t0);
        actions(&mut d);
        d.handle(DoorInput::Mode(DoorMode::Lockdown), t0 + S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(false)]);
    }

    #[test]
    fn momentary_unlock_is_a_pulse() {
        let (mut d, t0) = door();
        d.handle(DoorInput::MomentaryUnlock { pulse: None }, t0);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(true)]);
        run_timers(&mut d, t0 + 5 * S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(false)]);
        // A cloud unlock may ask for its own time.
        let t1 = t0 + 10 * S;
        d.handle(
            DoorInput::MomentaryUnlock {
                pulse: Some(20 * S),
            },
            t1,
        );
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(true)]);
        run_timers(&mut d, t1 + 19 * S);
        assert!(actions(&mut d).is_empty(), "still released after 19 s");
        run_timers(&mut d, t1 + 20 * S);
        assert_eq!(actions(&mut d), vec![DoorAction::Strike(false)]);
    }

    #[test]
    fn no_position_switch_no_alarms() {
        let mut d = Door::new(DoorConfig {
            has_position_switch: false,
            ..DoorConfig::default()
        });
        let t0 = Instant::now();
        d.handle(DoorInput::Position { open: true }, t0);
        assert!(actions(&mut d).is_empty());
        assert!(!d.state().open);
    }
}
