//! The site task's side of the technician's web page: it builds the
//! [`HubStatus`] snapshots the page, `/metrics` and (later) health reports
//! show, and carries out the page's [`Action`]s.
//!
//! Both run inside the site task ([`super::site_loop`]), which owns the
//! doors and the bus clients, so an action never races a card read: the
//! loop publishes a full snapshot once a second (bus status and counters
//! asked from every bus) and a cheaper one (doors, events, counters) after
//! anything changed. Each action is logged as an [`EventKind::Action`]
//! event naming the technician, and counted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use osdp::card::{CardFormatTable, H10301};
use osdp::command::{
    BuzzerControl, Command, LedColor, LedControl, TextCommand, TextControl, ToneCode,
};
use osdp::reply::{Keypad, RawCard, RawFormat, Reply};
use tracing::{info, warn};

use super::SiteTask;
use crate::access::{self, CardNumber, CheckQuery, Request};
use crate::access_input::ReaderId;
use crate::config::Config;
use crate::door::DoorMode;
use crate::events::{EventKind, HubEvent};
use crate::status::{
    self, CacheCounts, Counters, DoorStatus, EventLine, HubStatus, ReaderStatus, SyncStatus,
    SystemStatus,
};
use crate::store::Store;
use crate::web::{Action, ActionOutcome, ActionRequest, DoorModeCommand, ReaderOutput};

/// What the status needs beyond the site, and the counters.
pub(super) struct Panel {
    site_id: String,
    started: (Instant, Timestamp),
    storage: PathBuf,
    store: Arc<Store>,
    mqtt: bool,
    demo: bool,
    /// Bus names by bus number.
    buses: Vec<String>,
    /// Configured readers: id, name.
    readers: Vec<(ReaderId, String)>,
    /// Doors with a position switch.
    with_position: HashSet<String>,
    /// The newest reader snapshots (asked from the buses once a second).
    reader_status: Vec<ReaderStatus>,
    /// Counters since start; OSDP ones are summed from the buses.
    pub(super) counters: Counters,
    formats: CardFormatTable,
    /// The cloud link's state, when `[mqtt]` is configured.
    pub(super) link: Option<Arc<hub_sync::LinkState>>,
    /// The outbox's alarm edges.
    outbox_alarm: super::commands::OutboxAlarm,
}

impl Panel {
    pub(super) fn new(config: &Config, started: (Instant, Timestamp), store: Arc<Store>) -> Self {
        Panel {
            site_id: config.site.id.clone(),
            started,
            storage: config.storage.path.clone(),
            store,
            mqtt: config.mqtt.is_some(),
            demo: config.buses.iter().any(|b| b.config.is_simulated()),
            buses: config.buses.iter().map(|b| b.name.clone()).collect(),
            readers: config
                .readers
                .iter()
                .map(|r| (r.id, r.name.clone()))
                .collect(),
            with_position: config
                .doors
                .iter()
                .filter(|d| d.position.is_some())
                .map(|d| d.door.clone())
                .collect(),
            reader_status: Vec::new(),
            counters: Counters::default(),
            formats: CardFormatTable::builtin(),
            link: None,
            outbox_alarm: super::commands::OutboxAlarm::default(),
        }
    }

    fn reader(&self, name: &str) -> Option<ReaderId> {
        self.readers
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
    }
}

/// One outbox event as a line for people.
fn event_line(seq: u64, e: &HubEvent) -> EventLine {
    let kind = match (e.kind, e.granted) {
        (EventKind::Decision, Some(true)) => "granted",
        (EventKind::Decision, _) | (EventKind::Refused, _) => "denied",
        (EventKind::AlarmRaised, _) => "alarm",
        (EventKind::AlarmCleared, _) => "alarm_cleared",
        (EventKind::Device, _) => "device",
        (EventKind::Action, _) => "action",
        (EventKind::CodeUsed, _) => "code_used",
        (EventKind::HubStarted, _) | (EventKind::HubStopped, _) => "hub",
        (EventKind::StoreRecovered, _) => "alarm",
        (EventKind::DataSeeded, _) => "data",
    };
    let mut message = e.message.clone();
    if let Some(card) = e
        .credential
        .as_ref()
        .filter(|c| !message.contains(c.as_str()))
    {
        // Masked before it was logged.
        message.push_str(&format!(", card {card}"));
    }
    if let (EventKind::Decision | EventKind::Refused, Some(reader)) = (e.kind, &e.reader) {
        message.push_str(&format!(", reader {reader}"));
    }
    EventLine {
        seq,
        time: Timestamp::from_millisecond(e.at_ms).ok(),
        kind: kind.to_owned(),
        door: e.door.clone(),
        message,
    }
}

/// A card value with all but its last two characters hidden.
fn mask_text(value: &str) -> String {
    let n = value.chars().count();
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 2 < n { '*' } else { c })
        .collect()
}

/// `FACILITY:NUMBER` or `NUMBER` (facility 1, as the demo's lines).
fn parse_card(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    match text.split_once(':') {
        Some((f, n)) => Some((f.parse().ok()?, n.parse().ok()?)),
        None => Some((1, text.parse().ok()?)),
    }
}

impl SiteTask {
    /// Builds and publishes a snapshot; with `buses`, asks every bus for its
    /// devices and counters first (about once a second).
    pub(super) async fn publish_status(&mut self, buses: bool) {
        if buses {
            self.refresh_buses().await;
        }
        self.check_outbox();
        let panel = &self.panel;
        let view = self.hub.view.load_full();
        let data = view.data();
        let now = Instant::now();
        let (disk_free, disk_total) = status::disk_space(&panel.storage).unwrap_or_default();
        let system = SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            site: panel.site_id.clone(),
            started_at: Some(panel.started.1),
            uptime_s: now.saturating_duration_since(panel.started.0).as_secs(),
            clock: Some(Timestamp::now()),
            memory_rss_bytes: status::process_rss_bytes().unwrap_or(0),
            memory_available_bytes: status::memory_available_bytes().unwrap_or(0),
            disk_free_bytes: disk_free,
            disk_total_bytes: disk_total,
            store_bytes: if buses {
                panel.store.size_on_disk().unwrap_or(0)
            } else {
                self.status.subscribe().borrow().system.store_bytes
            },
            demo: panel.demo,
        };
        let doors = self
            .site
            .door_states()
            .into_iter()
            .map(|(id, s)| {
                let mut alarms = Vec::new();
                if s.forced_open {
                    alarms.push("forced_open".to_owned());
                }
                if s.held_open {
                    alarms.push("held_open".to_owned());
                }
                DoorStatus {
                    name: view
                        .door(&id)
                        .map(|d| d.name.clone())
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| id.clone()),
                    mode: match s.mode {
                        DoorMode::Normal => "normal",
                        DoorMode::Unlocked => "unlocked",
                        DoorMode::Lockdown => "lockdown",
                    }
                    .to_owned(),
                    locked: !s.strike_released,
                    open: panel.with_position.contains(&id).then_some(s.open),
                    alarms,
                    id,
                }
            })
            .collect();
        let outbox = panel.store.outbox();
        // From memory: the cloud's acknowledgement deletes events from the
        // outbox, the page still shows them.
        let events: Vec<EventLine> = self
            .hub
            .log
            .recent()
            .iter()
            .rev()
            .map(|(seq, e)| event_line(*seq, e))
            .collect();
        let cache = CacheCounts {
            users: data.users.len() as u64,
            credentials: data.credentials.len() as u64,
            accesses: data.accesses.len() as u64,
            access_codes: data.access_codes.len() as u64,
            doors: data.doors.len() as u64,
        };
        let mut readers = panel.reader_status.clone();
        for (r, (id, _)) in readers.iter_mut().zip(&panel.readers) {
            r.tamper = self.devices.tamper(id.bus, id.pd);
        }
        let status = HubStatus {
            system,
            doors,
            readers,
            sync: SyncStatus {
                configured: panel.mqtt,
                connected: panel.link.as_ref().is_some_and(|l| l.connected()),
                revision: panel.store.revision(),
                outbox_depth: outbox.depth(),
                last_contact: panel
                    .link
                    .as_ref()
                    .and_then(|l| l.last_contact())
                    .and_then(|t| Timestamp::try_from(t).ok()),
                outbox_alarm: panel.outbox_alarm.active().map(str::to_owned),
            },
            cache,
            events,
            counters: panel.counters,
        };
        self.status.publish(status);
    }

    /// Raises or clears the outbox alarms as its level crosses them, each
    /// once per crossing, as alarm events.
    fn check_outbox(&mut self) {
        let status = self.panel.store.outbox().status();
        for (alarm, raised) in self.panel.outbox_alarm.update(status.level) {
            let message = match (alarm, raised) {
                (super::commands::OUTBOX_FULL, true) => format!(
                    "{alarm} raised: {} events ({} bytes) wait for the cloud; new events are refused",
                    status.depth, status.bytes
                ),
                (_, true) => format!(
                    "{alarm} raised: {} events ({} bytes) wait for the cloud",
                    status.depth, status.bytes
                ),
                (_, false) => format!("{alarm} cleared: {} events wait", status.depth),
            };
            warn!(
                alarm,
                raised,
                depth = status.depth,
                bytes = status.bytes,
                "outbox alarm"
            );
            let kind = if raised {
                EventKind::AlarmRaised
            } else {
                EventKind::AlarmCleared
            };
            let mut event = HubEvent::new(kind, message);
            event.reason = Some(alarm.to_owned());
            self.record(&event);
        }
    }

    async fn refresh_buses(&mut self) {
        let mut sent = 0;
        let mut timeouts = 0;
        let mut devices = Vec::new();
        for client in &self.clients {
            if let Ok(stats) = client.stats().await {
                sent += stats.sent;
                timeouts += stats.timeouts;
            }
            devices.push(client.status().await.unwrap_or_default());
        }
        self.panel.counters.osdp_sent = sent;
        self.panel.counters.osdp_timeouts = timeouts;
        let panel = &mut self.panel;
        panel.reader_status = panel
            .readers
            .iter()
            .map(|(id, name)| {
                let pd = devices
                    .get(usize::from(id.bus))
                    .and_then(|list| list.iter().find(|p| p.address == id.pd));
                let pdid = pd.and_then(|p| p.id.as_ref());
                ReaderStatus {
                    name: name.clone(),
                    bus: panel
                        .buses
                        .get(usize::from(id.bus))
                        .cloned()
                        .unwrap_or_default(),
                    address: id.pd,
                    online: pd.is_some_and(|p| p.online),
                    secure: pd.is_some_and(|p| p.secure),
                    default_key: pd.is_some_and(|p| p.default_key),
                    tamper: false,
                    vendor: pdid.map(|i| {
                        i.vendor_code
                            .iter()
                            .map(|b| format!("{b:02X}"))
                            .collect::<String>()
                    }),
                    model: pdid.map(|i| i.model),
                    serial: pdid.map(|i| i.serial),
                    firmware: pdid.map(|i| {
                        format!(
                            "{}.{}.{}",
                            i.firmware_major, i.firmware_minor, i.firmware_build
                        )
                    }),
                }
            })
            .collect();
    }

    /// Carries out one action, logs it naming the technician, answers.
    pub(super) async fn act(&mut self, request: ActionRequest) {
        let ActionRequest { action, by, reply } = request;
        let name = action.name();
        let (outcome, door, reader) = self.carry_out(&action).await;
        self.panel.counters.web_actions += 1;
        info!(action = name, by = %by, ok = outcome.ok, message = %outcome.message, "web action");
        let mut event = HubEvent::new(
            EventKind::Action,
            format!("{name} by {by}: {}", outcome.message),
        );
        event.door = door;
        event.reader = reader;
        event.reason = Some(name.to_owned());
        self.record(&event);
        // The page may have given up waiting; the action is logged anyway.
        let _ = reply.send(outcome);
    }

    async fn carry_out(
        &mut self,
        action: &Action,
    ) -> (ActionOutcome, Option<String>, Option<String>) {
        let answer = |ok: bool, message: String| ActionOutcome { ok, message };
        match action {
            Action::Unlock { door } => {
                let outcome = match self.site.momentary_unlock(door, None, Instant::now()) {
                    Ok(true) => answer(true, format!("door {door} released for its pulse time")),
                    Ok(false) => answer(false, format!("door {door} is in lockdown: not released")),
                    Err(e) => answer(false, e.to_string()),
                };
                (outcome, Some(door.clone()), None)
            }
            Action::CloudUnlock { door, pulse } => {
                let outcome = match self.site.momentary_unlock(door, *pulse, Instant::now()) {
                    Ok(true) => answer(
                        true,
                        match pulse {
                            Some(p) => format!("door {door} released for {} ms", p.as_millis()),
                            None => format!("door {door} released for its pulse time"),
                        },
                    ),
                    Ok(false) => answer(false, format!("door {door} is in lockdown: not released")),
                    Err(e) => answer(false, e.to_string()),
                };
                (outcome, Some(door.clone()), None)
            }
            Action::Lockdown { door, on } => {
                let outcome = self.lockdown(door.as_deref(), *on);
                (outcome, door.clone(), None)
            }
            Action::DoorMode { door, mode } => {
                let outcome = self.door_mode(door, *mode);
                (outcome, Some(door.clone()), None)
            }
            Action::ReaderOutput(output) => {
                let outcome = match self.panel.reader(&output.reader) {
                    None => answer(false, format!("no reader {:?}", output.reader)),
                    Some(id) => self.reader_output(id, output).await,
                };
                (outcome, None, Some(output.reader.clone()))
            }
            Action::Identify { reader } => {
                let outcome = match self.panel.reader(reader) {
                    None => answer(false, format!("no reader {reader:?}")),
                    Some(id) => self.identify(id, reader).await,
                };
                (outcome, None, Some(reader.clone()))
            }
            Action::Check {
                door,
                id,
                door_access_id,
                barcode_id,
            } => {
                let outcome = self.check(door, id, door_access_id, barcode_id);
                (outcome, Some(door.clone()), None)
            }
            Action::Present { reader, card, pin } => {
                let outcome = match self.panel.reader(reader) {
                    None => answer(false, format!("no reader {reader:?}")),
                    Some(id) => {
                        self.present(id, card.as_deref(), pin.as_ref().map(|p| p.0.as_str()))
                            .await
                    }
                };
                (outcome, None, Some(reader.clone()))
            }
        }
    }

    /// A cloud lockdown command: saved with the overrides, in force at once
    /// for the doors and the HTTP check.
    fn lockdown(&mut self, door: Option<&str>, on: bool) -> ActionOutcome {
        let saved = self.hub.update_overrides(|o| match door {
            None => o.site_lockdown = on,
            Some(d) if on => {
                o.door_lockdown.insert(d.to_owned());
            }
            Some(d) => {
                o.door_lockdown.remove(d);
            }
        });
        if let Err(e) = saved {
            return ActionOutcome {
                ok: false,
                message: format!("lockdown not saved, nothing changed: {e}"),
            };
        }
        self.site.set_view(self.hub.view.load_full());
        self.site.refresh_modes(Timestamp::now(), Instant::now());
        let what = door.map_or_else(|| "site".to_owned(), |d| format!("door {d}"));
        let still = if !on && self.hub.data_set_lockdown(door) {
            " (the data set still holds a lockdown)"
        } else {
            ""
        };
        ActionOutcome {
            ok: true,
            message: format!("{what} lockdown {}{still}", if on { "on" } else { "off" }),
        }
    }

    /// A cloud door mode command: `normal` clears the command's lockdown
    /// and hold, `unlocked` holds the door unlocked, `locked` is a door
    /// lockdown. Saved with the overrides.
    fn door_mode(&mut self, door: &str, mode: DoorModeCommand) -> ActionOutcome {
        let saved = self.hub.update_overrides(|o| {
            let (lockdown, held) = match mode {
                DoorModeCommand::Normal => (false, false),
                DoorModeCommand::Unlocked => (false, true),
                DoorModeCommand::Locked => (true, false),
            };
            if lockdown {
                o.door_lockdown.insert(door.to_owned());
            } else {
                o.door_lockdown.remove(door);
            }
            if held {
                o.held_unlocked.insert(door.to_owned());
            } else {
                o.held_unlocked.remove(door);
            }
        });
        let overrides = match saved {
            Ok(o) => o,
            Err(e) => {
                return ActionOutcome {
                    ok: false,
                    message: format!("door mode not saved, nothing changed: {e}"),
                }
            }
        };
        self.site.set_view(self.hub.view.load_full());
        let held = overrides.held_unlocked.contains(door);
        if let Err(e) = self
            .site
            .hold_unlocked(door, held, Timestamp::now(), Instant::now())
        {
            return ActionOutcome {
                ok: false,
                message: e.to_string(),
            };
        }
        let name = match mode {
            DoorModeCommand::Normal => "normal",
            DoorModeCommand::Unlocked => "unlocked",
            DoorModeCommand::Locked => "locked",
        };
        let note = if mode == DoorModeCommand::Unlocked && self.hub.data_set_lockdown(Some(door)) {
            " (a lockdown keeps it locked for now)"
        } else {
            ""
        };
        ActionOutcome {
            ok: true,
            message: format!("door {door} mode {name}{note}"),
        }
    }

    /// A cloud reader output command: LED, beeps, text on one reader. An
    /// offline reader fails before anything is sent.
    async fn reader_output(&self, id: ReaderId, output: &ReaderOutput) -> ActionOutcome {
        let fail = |message: String| ActionOutcome { ok: false, message };
        let name = &output.reader;
        let Some(client) = self.clients.get(usize::from(id.bus)) else {
            return fail(format!("reader {name} has no bus"));
        };
        match client.status().await {
            Ok(devices) if devices.iter().any(|p| p.address == id.pd && p.online) => {}
            Ok(_) => return fail(format!("reader {name} is offline")),
            Err(e) => return fail(format!("reader {name}: {e}")),
        }
        let tenths = u16::try_from(output.duration.as_millis() / 100).unwrap_or(u16::MAX);
        let secs = u8::try_from(output.duration.as_secs().max(1)).unwrap_or(u8::MAX);
        let mut commands = Vec::new();
        let mut done = Vec::new();
        if let Some(colour) = output.led {
            let mut led = LedControl::temporary(colour, tenths);
            led.reader = id.reader;
            commands.push(Command::Led(vec![led]));
            done.push(format!("LED {}", format!("{colour:?}").to_lowercase()));
        }
        if output.beeps > 0 {
            commands.push(Command::Buzzer(BuzzerControl {
                reader: id.reader,
                tone: ToneCode::Default,
                on_time: 2,
                off_time: 2,
                count: output.beeps,
            }));
            done.push(format!("{} beeps", output.beeps));
        }
        if let Some(text) = &output.text {
            commands.push(Command::Text(TextControl {
                reader: id.reader,
                command: TextCommand::TemporaryNoWrap,
                temp_time: secs,
                row: 1,
                column: 1,
                text: text.as_bytes().to_vec(),
            }));
            done.push("text".to_owned());
        }
        for command in commands {
            if let Err(e) = client.submit(id.pd, command).await {
                return fail(format!("reader {name}: {e}"));
            }
        }
        ActionOutcome {
            ok: true,
            message: format!(
                "reader {name}: {} for {} ms",
                done.join(", "),
                output.duration.as_millis()
            ),
        }
    }

    async fn identify(&self, id: ReaderId, name: &str) -> ActionOutcome {
        let Some(client) = self.clients.get(usize::from(id.bus)) else {
            return ActionOutcome {
                ok: false,
                message: format!("reader {name} has no bus"),
            };
        };
        let mut blink = LedControl::temporary(LedColor::Amber, 50);
        blink.reader = id.reader;
        blink.temporary.on_time = 3;
        blink.temporary.off_time = 3;
        blink.temporary.off_color = LedColor::Black;
        let beep = Command::Buzzer(BuzzerControl {
            reader: id.reader,
            tone: ToneCode::Default,
            on_time: 2,
            off_time: 2,
            count: 3,
        });
        for command in [Command::Led(vec![blink]), beep] {
            if let Err(e) = client.submit(id.pd, command).await {
                return ActionOutcome {
                    ok: false,
                    message: format!("reader {name}: {e}"),
                };
            }
        }
        ActionOutcome {
            ok: true,
            message: format!("reader {name} blinks amber and beeps 3 times"),
        }
    }

    fn check(
        &self,
        door: &str,
        id: &Option<String>,
        door_access_id: &Option<String>,
        barcode_id: &Option<String>,
    ) -> ActionOutcome {
        fn field(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let query = CheckQuery {
            id: field(id),
            door_access_id: field(door_access_id),
            barcode_id: field(barcode_id),
            // A question, not an entry: nothing opens, nothing is recorded
            // as an entry.
            check_only: true,
        };
        if query.id.is_none() && query.door_access_id.is_none() && query.barcode_id.is_none() {
            return ActionOutcome {
                ok: false,
                message: "give a user id, a card (door_access_id) or a barcode".into(),
            };
        }
        let asked = match (query.id, query.door_access_id, query.barcode_id) {
            (Some(user), _, _) => format!("user {user}"),
            (None, Some(card), _) => format!("card {}", mask_text(card)),
            (None, None, Some(code)) => format!("barcode {}", mask_text(code)),
            (None, None, None) => String::new(),
        };
        let view = self.hub.view.load();
        let decision = access::decide(&Request::check(door, query), &view, Timestamp::now());
        ActionOutcome {
            ok: decision.granted,
            message: format!("check for {asked}: {decision}"),
        }
    }

    async fn present(&self, id: ReaderId, card: Option<&str>, pin: Option<&str>) -> ActionOutcome {
        let fail = |message: String| ActionOutcome { ok: false, message };
        let (report, what) = match (card, pin) {
            (Some(card), None) => {
                let Some((facility, number)) = parse_card(card) else {
                    return fail("a card is NUMBER or FACILITY:NUMBER (decimal)".into());
                };
                let Some(format) = self.panel.formats.get(H10301) else {
                    return fail("the H10301 card format is missing".into());
                };
                let (bit_count, data) = match format.encode(Some(facility), number) {
                    Ok(x) => x,
                    Err(e) => return fail(format!("cannot encode card: {e}")),
                };
                (
                    Reply::Raw(RawCard {
                        reader: id.reader,
                        format: RawFormat::Wiegand,
                        bit_count,
                        data,
                    }),
                    // Masked the way decisions show it.
                    format!(
                        "card {}",
                        CardNumber::new(u32::try_from(facility).ok(), number)
                    ),
                )
            }
            (None, Some(pin)) => {
                if pin.is_empty()
                    || !pin
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    return fail("a PIN is digits (and * or #)".into());
                }
                let mut digits: Vec<u8> = pin
                    .bytes()
                    .map(|b| match b {
                        b'*' => 0x7F,
                        b'#' => 0x0D,
                        d => d,
                    })
                    .collect();
                if digits.last() != Some(&0x0D) {
                    digits.push(0x0D);
                }
                (
                    Reply::Keypad(Keypad {
                        reader: id.reader,
                        digits,
                    }),
                    // Never the digits themselves.
                    "PIN ****".to_owned(),
                )
            }
            _ => return fail("give either a card or a PIN".into()),
        };
        let Some(client) = self.clients.get(usize::from(id.bus)) else {
            return fail("the reader has no bus".into());
        };
        match client.present(id.pd, report).await {
            Ok(()) => ActionOutcome {
                ok: true,
                message: format!("{what} presented at {}", self.device_name(id.bus, id.pd)),
            },
            Err(e) => fail(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_parse_with_or_without_a_facility() {
        assert_eq!(parse_card("12:34567"), Some((12, 34567)));
        assert_eq!(parse_card(" 4567 "), Some((1, 4567)));
        assert_eq!(parse_card("12:"), None);
        assert_eq!(parse_card("card"), None);
    }

    #[test]
    fn checked_cards_are_masked() {
        assert_eq!(mask_text("12:34567"), "******67");
        assert_eq!(mask_text("7"), "7");
    }

    #[test]
    fn decisions_read_as_granted_or_denied_with_the_masked_card() {
        let mut e = HubEvent::new(EventKind::Decision, "granted at front (entry, card)");
        e.granted = Some(true);
        e.credential = Some("***67".into());
        e.reader = Some("front-in".into());
        e.door = Some("front".into());
        let line = event_line(7, &e);
        assert_eq!(line.kind, "granted");
        assert_eq!(
            line.message,
            "granted at front (entry, card), card ***67, reader front-in"
        );
        e.granted = Some(false);
        assert_eq!(event_line(7, &e).kind, "denied");
    }
}
