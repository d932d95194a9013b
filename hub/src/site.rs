//! The site controller: readers, doors and decisions wired together, with no
//! I/O.
//!
//! It takes what the buses report ([`osdp::cp::Event`]s, tagged with the bus
//! number), runs each reader's credential input ([`crate::access_input`]),
//! asks [`decide_entry()`](crate::access::decide_entry()) about every complete presentation, drives
//! each [`crate::door::Door`], and hands back [`Effect`]s for the caller to
//! apply: OSDP commands (strike relay, LED, buzzer) to submit on a bus,
//! decisions to log (and send to the cloud), alarms and device events.
//!
//! ```text
//! site.handle_bus_event(bus, &event, now, wall);
//! site.refresh_modes(wall);                 // schedules, lockdown (each second)
//! while let Some(effect) = site.poll_effect() { apply(effect) }
//! sleep until site.poll_timeout(); site.handle_timeout(now, wall);
//! ```
//!
//! `now` is the monotonic clock (timers), `wall` the wall clock (schedules,
//! validity windows); both are passed in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use osdp::card::CardFormatTable;
use osdp::command::{
    BuzzerControl, Command, LedColor, LedControl, OutputControl, OutputControlCode, ToneCode,
};
use osdp::cp::Event;
use osdp::reply::Reply;
use thiserror::Error;

use crate::access::{self, decide_entry, CardNumber, Decision, Direction, Request, View};
use crate::access_input::{InputConfig, InputConfigError, InputStates, Presentation, ReaderId};
use crate::door::{Door, DoorAction, DoorAlarm, DoorConfig, DoorInput, DoorMode, Indication};

/// An input or output point on a device: bus, device address, point number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Point {
    /// Bus number.
    pub bus: u16,
    /// Device address on that bus.
    pub pd: u8,
    /// Input or output number on the device.
    pub no: u8,
}

/// How one door is wired.
#[derive(Debug, Clone)]
pub struct DoorWiring {
    /// The door's id in the access model.
    pub door: String,
    /// Reader outside the door (direction in).
    pub entry: ReaderId,
    /// Reader inside the door (direction out), if any.
    pub exit: Option<ReaderId>,
    /// Relay output that releases the strike.
    pub strike: Point,
    /// Door position switch (input active = open).
    pub position: Option<Point>,
    /// Request-to-exit button (input active = pressed).
    pub rex: Option<Point>,
    /// Timing and behaviour.
    pub config: DoorConfig,
}

/// Problems with the site wiring.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SiteError {
    /// A reader is wired to two doors (or twice to one).
    #[error("reader bus {bus} address {pd} reader {reader} is wired twice")]
    ReaderTwice {
        /// Bus number.
        bus: u16,
        /// Device address.
        pd: u8,
        /// Reader number.
        reader: u8,
    },
    /// The input configuration is invalid.
    #[error(transparent)]
    Input(#[from] InputConfigError),
    /// No door with this id is wired.
    #[error("no door {0:?} is wired to this hub")]
    UnknownDoor(String),
}

/// Something a device reported that is not a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The device answers again.
    Online,
    /// The device stopped answering.
    Offline,
    /// Tamper switch opened (`true`) or closed.
    Tamper(bool),
    /// Power failure reported (`true`) or restored.
    PowerFailure(bool),
}

/// What the caller should do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Submit this command to device `pd` on bus `bus`.
    Command {
        /// Bus number.
        bus: u16,
        /// Device address.
        pd: u8,
        /// The command.
        command: Command,
    },
    /// A decision was made at a reader: log it (outbox) and show it.
    Decided {
        /// Where it was presented.
        reader: ReaderId,
        /// The card presented, masked (`****4567`); `None` for a PIN alone.
        credential: Option<String>,
        /// The decision, with its reason and message.
        decision: Box<Decision>,
    },
    /// A presentation could not be decided (bad read, PIN timeout, wrong
    /// input for the reader's mode): log it as a denial with this text.
    Refused {
        /// Where it happened.
        reader: ReaderId,
        /// The door the reader is wired to; `None` for a reader wired to
        /// none.
        door: Option<String>,
        /// Why, for people (card numbers masked, PINs never shown).
        why: String,
    },
    /// A one-time access code was used (already marked in the view this
    /// site decided on): persist it and mark it in the current view.
    CodeUsed {
        /// The code.
        code: access::AccessCodeId,
        /// When.
        at: Timestamp,
    },
    /// A door alarm started or ended.
    Alarm {
        /// The door.
        door: String,
        /// Which alarm.
        alarm: DoorAlarm,
        /// Started (`true`) or ended.
        raised: bool,
    },
    /// A device event worth logging.
    Device {
        /// Bus number.
        bus: u16,
        /// Device address.
        pd: u8,
        /// What happened.
        event: DeviceEvent,
    },
}

struct DoorSlot {
    wiring: DoorWiring,
    door: Door,
    /// An operator (cloud door mode command) holds the door unlocked,
    /// whatever its schedule says; lockdown still wins.
    held_unlocked: bool,
    /// The reader to show feedback on (the last one a credential came from).
    feedback_at: ReaderId,
}

/// The site controller.
pub struct Site {
    doors: Vec<DoorSlot>,
    readers: HashMap<ReaderId, (usize, Direction)>,
    inputs: InputStates,
    formats: CardFormatTable,
    view: Arc<View>,
    /// Last input states per device, to see edges.
    input_bits: HashMap<(u16, u8), Vec<u8>>,
    effects: VecDeque<Effect>,
}

impl Site {
    /// A site with these doors, the default reader input settings, and the
    /// access data in `view`.
    pub fn new(
        doors: Vec<DoorWiring>,
        input: InputConfig,
        formats: CardFormatTable,
        view: Arc<View>,
    ) -> Result<Site, SiteError> {
        let mut readers = HashMap::new();
        for (i, w) in doors.iter().enumerate() {
            let pairs = std::iter::once((w.entry, Direction::In))
                .chain(w.exit.map(|r| (r, Direction::Out)));
            for (r, dir) in pairs {
                if readers.insert(r, (i, dir)).is_some() {
                    return Err(SiteError::ReaderTwice {
                        bus: r.bus,
                        pd: r.pd,
                        reader: r.reader,
                    });
                }
            }
        }
        Ok(Site {
            doors: doors
                .into_iter()
                .map(|w| DoorSlot {
                    door: Door::new(w.config.clone()),
                    held_unlocked: false,
                    feedback_at: w.entry,
                    wiring: w,
                })
                .collect(),
            readers,
            inputs: InputStates::new(input)?,
            formats,
            view,
            input_bits: HashMap::new(),
            effects: VecDeque::new(),
        })
    }

    /// Gives one reader its own input settings (mode, PIN lengths) instead
    /// of the site's default.
    pub fn configure_reader(
        &mut self,
        reader: ReaderId,
        input: InputConfig,
    ) -> Result<(), SiteError> {
        Ok(self.inputs.configure(reader, input)?)
    }

    /// Replaces the access data (a new snapshot or revision was applied).
    pub fn set_view(&mut self, view: Arc<View>) {
        self.view = view;
    }

    /// The next effect to apply.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`Site::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.doors
            .iter()
            .filter_map(|d| d.door.poll_timeout())
            .chain(self.inputs.poll_timeout())
            .min()
    }

    /// Door states, for status pages.
    pub fn door_states(&self) -> Vec<(String, crate::door::DoorState)> {
        self.doors
            .iter()
            .map(|d| (d.wiring.door.clone(), d.door.state()))
            .collect()
    }

    /// Whether `door` is wired to this hub.
    pub fn has_door(&self, door: &str) -> bool {
        self.doors.iter().any(|d| d.wiring.door == door)
    }

    fn door_slot(&self, door: &str) -> Result<usize, SiteError> {
        self.doors
            .iter()
            .position(|d| d.wiring.door == door)
            .ok_or_else(|| SiteError::UnknownDoor(door.to_owned()))
    }

    /// An operator's momentary unlock of `door` (the technician's web page,
    /// a cloud command): the strike is released for `pulse` (`None`: the
    /// door's normal pulse), exactly as for a grant but without a
    /// credential, so the opening is excused (no forced-open alarm).
    /// Returns `Ok(false)`, releasing nothing, when the door is in
    /// lockdown. The caller logs who asked.
    pub fn momentary_unlock(
        &mut self,
        door: &str,
        pulse: Option<Duration>,
        now: Instant,
    ) -> Result<bool, SiteError> {
        let i = self.door_slot(door)?;
        if self.doors[i].door.state().mode == DoorMode::Lockdown {
            return Ok(false);
        }
        self.doors[i]
            .door
            .handle(DoorInput::MomentaryUnlock { pulse }, now);
        self.drain_door(i);
        Ok(true)
    }

    /// Holds `door` unlocked (`true`) or gives it back to its schedule
    /// (`false`): the cloud's door mode command. A lockdown (site or door,
    /// in the view) still wins. Takes effect at once.
    pub fn hold_unlocked(
        &mut self,
        door: &str,
        on: bool,
        wall: Timestamp,
        now: Instant,
    ) -> Result<(), SiteError> {
        let i = self.door_slot(door)?;
        self.doors[i].held_unlocked = on;
        self.refresh_modes(wall, now);
        Ok(())
    }

    /// Whether an operator holds `door` unlocked ([`Site::hold_unlocked`]).
    pub fn is_held_unlocked(&self, door: &str) -> bool {
        self.doors
            .iter()
            .any(|d| d.wiring.door == door && d.held_unlocked)
    }

    /// Runs expired timers (strike relock, held-open, PIN entry).
    pub fn handle_timeout(&mut self, now: Instant, wall: Timestamp) {
        for i in 0..self.doors.len() {
            self.doors[i].door.handle_timeout(now);
            self.drain_door(i);
        }
        self.inputs.handle_timeout(now);
        self.drain_inputs(now, wall);
    }

    /// Applies each door's mode from the schedules and lockdown state.
    pub fn refresh_modes(&mut self, wall: Timestamp, now: Instant) {
        for i in 0..self.doors.len() {
            let mode = access::door_mode(&self.view, &self.doors[i].wiring.door, wall);
            let mode = match mode {
                Some(access::DoorMode::Lockdown) => DoorMode::Lockdown,
                _ if self.doors[i].held_unlocked => DoorMode::Unlocked,
                Some(access::DoorMode::Unlocked) => DoorMode::Unlocked,
                // First-card periods start locked; a grant with
                // `first_card_unlock` switches the door (see `decided`).
                Some(access::DoorMode::UnlockAfterFirstCard)
                    if self.doors[i].door.state().mode == DoorMode::Unlocked =>
                {
                    DoorMode::Unlocked
                }
                _ => DoorMode::Normal,
            };
            self.doors[i].door.handle(DoorInput::Mode(mode), now);
            self.drain_door(i);
        }
    }

    /// Handles one event of bus `bus`.
    pub fn handle_bus_event(&mut self, bus: u16, event: &Event, now: Instant, wall: Timestamp) {
        match event {
            Event::Reply { pd, reply } => {
                if self
                    .inputs
                    .handle_reply(bus, *pd, reply, &self.formats, now)
                {
                    self.drain_inputs(now, wall);
                    return;
                }
                match reply {
                    Reply::InputStatus(bits) => self.inputs_changed(bus, *pd, bits, now),
                    Reply::LocalStatus(l) => {
                        self.effects.push_back(Effect::Device {
                            bus,
                            pd: *pd,
                            event: DeviceEvent::Tamper(l.tamper != 0),
                        });
                        self.effects.push_back(Effect::Device {
                            bus,
                            pd: *pd,
                            event: DeviceEvent::PowerFailure(l.power != 0),
                        });
                    }
                    Reply::ReaderStatus(r) => self.effects.push_back(Effect::Device {
                        bus,
                        pd: *pd,
                        event: DeviceEvent::Tamper(r.iter().any(|&t| t != 0)),
                    }),
                    _ => {}
                }
            }
            Event::Online { pd, .. } => self.effects.push_back(Effect::Device {
                bus,
                pd: *pd,
                event: DeviceEvent::Online,
            }),
            Event::Offline { pd } => self.effects.push_back(Effect::Device {
                bus,
                pd: *pd,
                event: DeviceEvent::Offline,
            }),
            _ => {}
        }
    }

    fn inputs_changed(&mut self, bus: u16, pd: u8, bits: &[u8], now: Instant) {
        let before = self.input_bits.insert((bus, pd), bits.to_vec());
        let was = |no: u8| {
            before
                .as_ref()
                .and_then(|b| b.get(usize::from(no)))
                .is_some_and(|&v| v != 0)
        };
        let is = |no: u8| bits.get(usize::from(no)).is_some_and(|&v| v != 0);
        for i in 0..self.doors.len() {
            let w = &self.doors[i].wiring;
            let mut inputs = Vec::new();
            if let Some(p) = w.position.filter(|p| p.bus == bus && p.pd == pd) {
                if before.is_none() || was(p.no) != is(p.no) {
                    inputs.push(DoorInput::Position { open: is(p.no) });
                }
            }
            if let Some(p) = w.rex.filter(|p| p.bus == bus && p.pd == pd) {
                if !was(p.no) && is(p.no) {
                    inputs.push(DoorInput::ExitButton);
                }
            }
            for input in inputs {
                self.doors[i].door.handle(input, now);
            }
            self.drain_door(i);
        }
    }

    fn drain_inputs(&mut self, now: Instant, wall: Timestamp) {
        // Reader feedback (prompt for PIN, digit beeps) is the reader's UI;
        // it is not logged.
        while self.inputs.poll_feedback().is_some() {}
        while let Some((reader, presentation)) = self.inputs.poll_presentation() {
            self.presented(reader, presentation, now, wall);
        }
    }

    fn presented(&mut self, reader: ReaderId, p: Presentation, now: Instant, wall: Timestamp) {
        let Some(&(i, direction)) = self.readers.get(&reader) else {
            self.effects.push_back(Effect::Refused {
                reader,
                door: None,
                why: "reader is not wired to a door".into(),
            });
            return;
        };
        self.doors[i].feedback_at = reader;
        let door_id = self.doors[i].wiring.door.clone();
        let lockout = p.lockout().map(|l| access::Lockout {
            until: wall
                .checked_add(l.until.saturating_duration_since(now))
                .unwrap_or(wall),
            failed_attempts: l.wrong_pins,
        });
        let card_number = |c: &crate::access_input::Card| {
            let facility = c.facility.and_then(|f| u32::try_from(f).ok());
            let n = CardNumber::new(facility, c.number);
            n.with_raw(&c.data).unwrap_or(n)
        };
        let credential = p.card().map(|c| card_number(c).to_string());
        let with_pin = matches!(
            p,
            Presentation::Pin { .. } | Presentation::CardAndPin { .. }
        );
        let request = match p {
            Presentation::Card { card, .. } => {
                Request::card(&door_id, direction, card_number(&card))
            }
            Presentation::Pin { pin, .. } => Request::pin(&door_id, direction, pin),
            Presentation::CardAndPin { card, pin, .. } => {
                Request::card_and_pin(&door_id, direction, card_number(&card), pin)
            }
            other => {
                self.effects.push_back(Effect::Refused {
                    reader,
                    door: Some(door_id),
                    why: other.to_string(),
                });
                self.doors[i].door.handle(DoorInput::Denied, now);
                self.drain_door(i);
                return;
            }
        };
        let request = match lockout {
            Some(l) => request.with_lockout(l),
            None => request,
        };
        // Marks a one-time code used in the shared view at once (a racing
        // decision elsewhere loses); the CodeUsed effect persists it.
        let decision = decide_entry(&request, &self.view, wall);
        if with_pin {
            self.inputs
                .report_outcome(&reader, decision.is_wrong_pin(), now);
        }
        let input = if decision.granted {
            DoorInput::Granted {
                extended: decision.extended_unlock,
            }
        } else {
            DoorInput::Denied
        };
        if decision.code_consumed {
            if let Some(code) = &decision.access_code {
                self.effects.push_back(Effect::CodeUsed {
                    code: code.clone(),
                    at: wall,
                });
            }
        }
        let first_card = decision.granted && decision.first_card_unlock;
        self.effects.push_back(Effect::Decided {
            reader,
            credential,
            decision: Box::new(decision),
        });
        self.doors[i].door.handle(input, now);
        if first_card {
            self.doors[i]
                .door
                .handle(DoorInput::Mode(DoorMode::Unlocked), now);
        }
        self.drain_door(i);
    }

    /// Turns the door's actions into effects.
    fn drain_door(&mut self, i: usize) {
        let slot = &mut self.doors[i];
        while let Some(action) = slot.door.poll_action() {
            let at = slot.feedback_at;
            let effect = match action {
                DoorAction::Strike(release) => Effect::Command {
                    bus: slot.wiring.strike.bus,
                    pd: slot.wiring.strike.pd,
                    command: Command::Output(vec![OutputControl {
                        output: slot.wiring.strike.no,
                        control: if release {
                            OutputControlCode::PermanentOnAbortTimed
                        } else {
                            OutputControlCode::PermanentOffAbortTimed
                        },
                        timer: 0,
                    }]),
                },
                DoorAction::Led(colour, for_) => Effect::Command {
                    bus: at.bus,
                    pd: at.pd,
                    command: Command::Led(vec![LedControl {
                        reader: at.reader,
                        ..LedControl::temporary(
                            match colour {
                                Indication::Green => LedColor::Green,
                                Indication::Red => LedColor::Red,
                            },
                            tenths(for_),
                        )
                    }]),
                },
                DoorAction::Beep { count } => Effect::Command {
                    bus: at.bus,
                    pd: at.pd,
                    command: Command::Buzzer(BuzzerControl {
                        reader: at.reader,
                        tone: ToneCode::Default,
                        on_time: 2,
                        off_time: 1,
                        count,
                    }),
                },
                DoorAction::AlarmRaised(alarm) => Effect::Alarm {
                    door: slot.wiring.door.clone(),
                    alarm,
                    raised: true,
                },
                DoorAction::AlarmCleared(alarm) => Effect::Alarm {
                    door: slot.wiring.door.clone(),
                    alarm,
                    raised: false,
                },
                DoorAction::RefusedInLockdown => continue,
            };
            self.effects.push_back(effect);
        }
    }
}

fn tenths(d: Duration) -> u16 {
    u16::try_from(d.as_millis() / 100).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::fixture;
    use crate::access_input::InputMode;
    use osdp::reply::{Keypad, LocalStatus, RawCard, RawFormat};

    const READER: ReaderId = ReaderId {
        bus: 0,
        pd: 1,
        reader: 0,
    };

    fn site() -> Site {
        let wiring = DoorWiring {
            door: "front".into(),
            entry: READER,
            exit: None,
            strike: Point {
                bus: 0,
                pd: 1,
                no: 0,
            },
            position: Some(Point {
                bus: 0,
                pd: 1,
                no: 0,
            }),
            rex: Some(Point {
                bus: 0,
                pd: 1,
                no: 1,
            }),
            config: DoorConfig::default(),
        };
        let view = View::build(fixture::data()).unwrap();
        Site::new(
            vec![wiring],
            InputConfig::with_mode(InputMode::CardOrPin),
            CardFormatTable::builtin(),
            Arc::new(view),
        )
        .unwrap()
    }

    fn card_event(facility: u64, number: u64) -> Event {
        let table = CardFormatTable::builtin();
        let (bits, data) = table
            .get(osdp::card::H10301)
            .unwrap()
            .encode(Some(facility), number)
            .unwrap();
        Event::Reply {
            pd: 1,
            reply: Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: bits,
                data,
            }),
        }
    }

    fn effects(s: &mut Site) -> Vec<Effect> {
        std::iter::from_fn(|| s.poll_effect()).collect()
    }

    fn decision(e: &[Effect]) -> &Decision {
        e.iter()
            .find_map(|e| match e {
                Effect::Decided { decision, .. } => Some(&**decision),
                _ => None,
            })
            .expect("a decision")
    }

    fn commands(e: &[Effect]) -> Vec<(u8, &Command)> {
        e.iter()
            .filter_map(|e| match e {
                Effect::Command { pd, command, .. } => Some((*pd, command)),
                _ => None,
            })
            .collect()
    }

    fn strike(e: &[Effect]) -> Option<bool> {
        commands(e).into_iter().find_map(|(_, c)| match c {
            Command::Output(r) => Some(r[0].control == OutputControlCode::PermanentOnAbortTimed),
            _ => None,
        })
    }

    fn led(e: &[Effect]) -> Option<LedColor> {
        commands(e).into_iter().find_map(|(_, c)| match c {
            Command::Led(r) => Some(r[0].temporary.on_color),
            _ => None,
        })
    }

    #[test]
    fn valid_card_releases_the_strike_with_green_and_relocks() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        s.handle_bus_event(0, &card_event(12, 34567), t0, wall);
        let e = effects(&mut s);
        let d = decision(&e);
        assert!(d.granted, "{}", d.message());
        assert_eq!(strike(&e), Some(true));
        assert_eq!(led(&e), Some(LedColor::Green));
        // Ann needs extended time: 15 s, not 5.
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        s.handle_timeout(t0 + Duration::from_secs(15), wall);
        assert_eq!(strike(&effects(&mut s)), Some(false));
    }

    #[test]
    fn unknown_card_is_denied_with_red_and_no_strike() {
        let mut s = site();
        s.handle_bus_event(0, &card_event(99, 4242), Instant::now(), fixture::now());
        let e = effects(&mut s);
        assert!(!decision(&e).granted);
        assert_eq!(strike(&e), None);
        assert_eq!(led(&e), Some(LedColor::Red));
        assert!(!format!("{e:?}").contains("4242"), "card number masked");
    }

    #[test]
    fn pin_at_the_keypad_opens() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        s.handle_bus_event(
            0,
            &Event::Reply {
                pd: 1,
                reply: Reply::Keypad(Keypad {
                    reader: 0,
                    digits: b"4321#".to_vec(),
                }),
            },
            t0,
            wall,
        );
        let e = effects(&mut s);
        assert!(decision(&e).granted, "{}", decision(&e).message());
        assert_eq!(strike(&e), Some(true));
        assert!(!format!("{e:?}").contains("4321"), "PIN never shown");
    }

    #[test]
    fn wrong_pins_lock_the_reader() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        let keys = |digits: &[u8]| Event::Reply {
            pd: 1,
            reply: Reply::Keypad(Keypad {
                reader: 0,
                digits: digits.to_vec(),
            }),
        };
        for _ in 0..5 {
            s.handle_bus_event(0, &keys(b"0000#"), t0, wall);
        }
        effects(&mut s);
        s.handle_bus_event(0, &keys(b"4321#"), t0, wall);
        let e = effects(&mut s);
        let d = decision(&e);
        assert!(!d.granted);
        assert!(d.message().contains("5 wrong"), "{}", d.message());
        assert_eq!(strike(&e), None);
    }

    fn inputs(bits: &[u8]) -> Event {
        Event::Reply {
            pd: 1,
            reply: Reply::InputStatus(bits.to_vec()),
        }
    }

    #[test]
    fn door_forced_and_held_open_alarms_come_from_inputs() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        s.handle_bus_event(0, &inputs(&[0, 0]), t0, wall);
        effects(&mut s);
        s.handle_bus_event(0, &inputs(&[1, 0]), t0, wall);
        let e = effects(&mut s);
        assert!(matches!(
            e.as_slice(),
            [Effect::Alarm {
                alarm: DoorAlarm::ForcedOpen,
                raised: true,
                ..
            }]
        ));
        s.handle_bus_event(0, &inputs(&[0, 0]), t0, wall);
        assert!(matches!(
            effects(&mut s).as_slice(),
            [Effect::Alarm {
                alarm: DoorAlarm::ForcedOpen,
                raised: false,
                ..
            }]
        ));

        // Granted, opened, left open: held open after 30 s.
        s.handle_bus_event(0, &card_event(12, 34567), t0, wall);
        s.handle_bus_event(0, &inputs(&[1, 0]), t0 + Duration::from_secs(1), wall);
        effects(&mut s);
        let mut t = t0;
        while let Some(next) = s.poll_timeout() {
            if next > t0 + Duration::from_secs(40) {
                break;
            }
            t = next;
            s.handle_timeout(t, wall);
        }
        assert!(effects(&mut s).iter().any(|e| matches!(
            e,
            Effect::Alarm {
                alarm: DoorAlarm::HeldOpen,
                raised: true,
                ..
            }
        )));
        assert!(t >= t0 + Duration::from_secs(31));
    }

    #[test]
    fn exit_button_releases_the_strike() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        s.handle_bus_event(0, &inputs(&[0, 0]), t0, wall);
        s.handle_bus_event(0, &inputs(&[0, 1]), t0, wall);
        assert_eq!(strike(&effects(&mut s)), Some(true));
        // Releasing the button does nothing more.
        s.handle_bus_event(0, &inputs(&[0, 0]), t0, wall);
        assert!(effects(&mut s).is_empty());
    }

    #[test]
    fn device_events_are_reported() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        s.handle_bus_event(0, &Event::Offline { pd: 1 }, t0, wall);
        s.handle_bus_event(
            0,
            &Event::Reply {
                pd: 1,
                reply: Reply::LocalStatus(LocalStatus {
                    tamper: 1,
                    power: 0,
                }),
            },
            t0,
            wall,
        );
        let e = effects(&mut s);
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::Device {
                event: DeviceEvent::Offline,
                ..
            }
        )));
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::Device {
                event: DeviceEvent::Tamper(true),
                ..
            }
        )));
    }

    #[test]
    fn a_reader_wired_twice_is_refused() {
        let view = Arc::new(View::build(fixture::data()).unwrap());
        let w = |door: &str| DoorWiring {
            door: door.into(),
            entry: READER,
            exit: None,
            strike: Point {
                bus: 0,
                pd: 1,
                no: 0,
            },
            position: None,
            rex: None,
            config: DoorConfig::default(),
        };
        assert!(matches!(
            Site::new(
                vec![w("front"), w("back")],
                InputConfig::default(),
                CardFormatTable::builtin(),
                view
            ),
            Err(SiteError::ReaderTwice { .. })
        ));
    }

    #[test]
    fn an_operator_momentary_unlock_pulses_the_strike_without_an_alarm() {
        let mut site = site();
        let t0 = Instant::now();
        assert_eq!(site.momentary_unlock("front", None, t0), Ok(true));
        let strikes: Vec<bool> = std::iter::from_fn(|| site.poll_effect())
            .filter_map(|e| match e {
                Effect::Command {
                    command: Command::Output(o),
                    ..
                } => Some(o[0].control == OutputControlCode::PermanentOnAbortTimed),
                _ => None,
            })
            .collect();
        assert_eq!(strikes, vec![true], "the strike is released once");
        assert!(site.door_states()[0].1.strike_released);
        // The door relocks after its pulse.
        let relock = site.poll_timeout().unwrap();
        site.handle_timeout(relock, Timestamp::now());
        assert!(!site.door_states()[0].1.strike_released);
        assert_eq!(
            site.momentary_unlock("garage", None, t0),
            Err(SiteError::UnknownDoor("garage".into()))
        );
    }

    #[test]
    fn a_door_held_unlocked_stays_released_until_given_back_and_lockdown_wins() {
        let mut site = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        site.refresh_modes(wall, t0);
        effects(&mut site);
        assert_eq!(site.door_states()[0].1.mode, DoorMode::Normal);
        site.hold_unlocked("front", true, wall, t0).unwrap();
        assert_eq!(strike(&effects(&mut site)), Some(true));
        assert!(site.is_held_unlocked("front"));
        // The per-second refresh keeps it so, hours later.
        let later = t0 + Duration::from_secs(3600);
        site.handle_timeout(later, wall);
        site.refresh_modes(wall, later);
        assert_eq!(site.door_states()[0].1.mode, DoorMode::Unlocked);
        assert!(site.door_states()[0].1.strike_released);
        // A lockdown in the view beats it.
        let mut data = fixture::data();
        data.site.lockdown = true;
        site.set_view(Arc::new(View::build(data).unwrap()));
        site.refresh_modes(wall, later);
        assert_eq!(site.door_states()[0].1.mode, DoorMode::Lockdown);
        assert_eq!(strike(&effects(&mut site)), Some(false));
        // Lockdown lifted: held unlocked again; then back to normal.
        site.set_view(Arc::new(View::build(fixture::data()).unwrap()));
        site.refresh_modes(wall, later);
        assert_eq!(site.door_states()[0].1.mode, DoorMode::Unlocked);
        site.hold_unlocked("front", false, wall, later).unwrap();
        assert_eq!(site.door_states()[0].1.mode, DoorMode::Normal);
        assert_eq!(
            site.hold_unlocked("garage", true, wall, later),
            Err(SiteError::UnknownDoor("garage".into()))
        );
    }

    #[test]
    fn refusals_name_the_door() {
        let mut s = site();
        let (t0, wall) = (Instant::now(), fixture::now());
        // A card at a PIN-only reader cannot be decided.
        s.configure_reader(READER, InputConfig::with_mode(InputMode::PinOnly))
            .unwrap();
        s.handle_bus_event(0, &card_event(12, 34567), t0, wall);
        let e = effects(&mut s);
        let door = e.iter().find_map(|e| match e {
            Effect::Refused { door, .. } => Some(door.clone()),
            _ => None,
        });
        assert_eq!(door, Some(Some("front".to_owned())), "{e:?}");
    }
}
