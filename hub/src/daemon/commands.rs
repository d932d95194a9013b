//! Cloud commands and health for `hub run`: the sync's [`crate::cloud::Hooks`]
//! `command` and `health`.
//!
//! - [`command_hook`] parses a `hub.v1.Command` into a site [`Action`]
//!   (unknown door or reader: `UNKNOWN_TARGET`, bad fields: `INVALID`,
//!   nothing sent to the site), then hands it to the site task through the
//!   same action queue the web page uses, and waits for the outcome (at
//!   most [`COMMAND_TIMEOUT`]). The site task logs it as an `action` event
//!   naming `cloud` and the correlation id. The sync engine calls the hook
//!   synchronously on its own task, so the wait is a
//!   [`tokio::task::block_in_place`] (the daemon's runtime is
//!   multi-threaded): the doors keep running meanwhile, the sync engine
//!   waits for the one command.
//! - [`Overrides`]: lockdowns and held-unlocked doors set by commands,
//!   kept in `commands.json` in the store's directory so they survive a
//!   restart. A command lockdown adds to the data set's own lockdown flags,
//!   set in place on the shared view ([`Overrides::apply`]); lifting it
//!   lifts only the command's.
//! - [`health_hook`] fills readers, doors and active alarms of a health
//!   report from the newest status snapshot (what the web page shows).
//! - [`OutboxAlarm`] turns the outbox's level into alarm events: raised
//!   once when it crosses its alarm level, cleared once when it drains.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hub_proto::v1 as pb;
use osdp::command::LedColor;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::access::View;
use crate::cloud::{OnCommand, OnHealth};
use crate::status::StatusWatch;
use crate::store::OutboxLevel;
use crate::web::{Action, ActionRequest, DoorModeCommand, ReaderOutput};

/// Longest a command may take in the site task before it is answered
/// `FAILED` (it may still complete; its action event says so).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest momentary unlock a command may ask for (the contract's limit).
pub const MAX_UNLOCK_MS: u32 = 60_000;

/// Most beeps a reader output command may ask for.
pub const MAX_BEEPS: u32 = 10;

/// Longest reader text, in characters.
pub const MAX_TEXT: usize = 32;

/// LED and text time when the command leaves it at 0.
pub const DEFAULT_OUTPUT_TIME: Duration = Duration::from_secs(3);

/// The file, in the store's directory, that keeps [`Overrides`].
pub const OVERRIDES_FILE: &str = "commands.json";

/// What cloud commands set on top of the data set; persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// Site-wide lockdown by command.
    #[serde(default)]
    pub site_lockdown: bool,
    /// Doors in lockdown by command (lockdown or door mode `locked`).
    #[serde(default)]
    pub door_lockdown: BTreeSet<String>,
    /// Doors held unlocked by a door mode command.
    #[serde(default)]
    pub held_unlocked: BTreeSet<String>,
}

impl Overrides {
    /// Puts the command lockdowns in force on `view`, in place (the view
    /// the process shares; see [`View::set_command_lockdown`]): no copy of
    /// the view, whatever its size. They add to the data set's own flags.
    pub fn apply(&self, view: &View) {
        view.set_command_lockdown(
            self.site_lockdown,
            self.door_lockdown.iter().map(String::as_str),
        );
    }

    /// The overrides kept in `dir`; none when the file does not exist. A
    /// file that cannot be read or parsed is reported and ignored (moved
    /// aside, so it is not lost).
    pub fn load(dir: &Path) -> Overrides {
        let path = dir.join(OVERRIDES_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Overrides::default(),
            Err(e) => {
                warn!(file = %path.display(), "command overrides not read: {e}");
                return Overrides::default();
            }
        };
        match serde_json::from_str(&text) {
            Ok(o) => o,
            Err(e) => {
                let aside = path.with_extension("json.bad");
                warn!(file = %path.display(), aside = %aside.display(), "command overrides unreadable, moved aside: {e}");
                let _ = std::fs::rename(&path, &aside);
                Overrides::default()
            }
        }
    }

    /// Writes the overrides to `dir` atomically (temporary file, fsync,
    /// rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let path = dir.join(OVERRIDES_FILE);
        let tmp: PathBuf = dir.join(format!("{OVERRIDES_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// What commands may name: the doors wired to this hub and the readers of
/// its config.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Door ids wired to this hub.
    pub doors: Vec<String>,
    /// Reader names.
    pub readers: Vec<String>,
}

fn result(code: pb::ResultCode, message: impl Into<String>) -> pb::CommandResult {
    pb::CommandResult {
        code: code as i32,
        message: message.into(),
        ..pb::CommandResult::default()
    }
}

/// The site action a door or reader command asks for, or the result that
/// refuses it (`INVALID`, `UNKNOWN_TARGET`). `view` knows the data set's
/// doors: a lockdown may name a door of the data set that is not wired
/// here (the HTTP check decides at it).
pub fn parse(
    command: &pb::Command,
    targets: &Targets,
    view: &View,
) -> Result<Action, pb::CommandResult> {
    use pb::command::Action as A;
    use pb::ResultCode as R;
    let wired = |door: &str| -> Result<String, pb::CommandResult> {
        if door.is_empty() {
            return Err(result(R::Invalid, "door is empty"));
        }
        if targets.doors.iter().any(|d| d == door) {
            Ok(door.to_owned())
        } else {
            Err(result(
                R::UnknownTarget,
                format!("no door {door:?} is wired to this hub"),
            ))
        }
    };
    match &command.action {
        Some(A::MomentaryUnlock(u)) => {
            if u.duration_ms > MAX_UNLOCK_MS {
                return Err(result(
                    R::Invalid,
                    format!("duration_ms {} is over {MAX_UNLOCK_MS}", u.duration_ms),
                ));
            }
            Ok(Action::CloudUnlock {
                door: wired(&u.door)?,
                pulse: (u.duration_ms > 0).then(|| Duration::from_millis(u.duration_ms.into())),
            })
        }
        Some(A::Lockdown(l)) => {
            let door = if l.door.is_empty() {
                None
            } else if targets.doors.contains(&l.door) || view.door(&l.door).is_some() {
                Some(l.door.clone())
            } else {
                return Err(result(
                    R::UnknownTarget,
                    format!("no door {:?} on this hub or in its data set", l.door),
                ));
            };
            Ok(Action::Lockdown { door, on: l.on })
        }
        Some(A::DoorMode(m)) => {
            let mode = match m.mode() {
                pb::DoorModeKind::Normal => DoorModeCommand::Normal,
                pb::DoorModeKind::Unlocked => DoorModeCommand::Unlocked,
                pb::DoorModeKind::Locked => DoorModeCommand::Locked,
                pb::DoorModeKind::Unspecified => {
                    return Err(result(R::Invalid, "door mode is unspecified or unknown"))
                }
            };
            Ok(Action::DoorMode {
                door: wired(&m.door)?,
                mode,
            })
        }
        Some(A::ReaderOutput(o)) => {
            if !targets.readers.contains(&o.reader) {
                return Err(result(
                    R::UnknownTarget,
                    format!("no reader {:?} on this hub", o.reader),
                ));
            }
            let led = match pb::LedColor::try_from(o.led) {
                Ok(pb::LedColor::Unspecified) => None,
                Ok(pb::LedColor::Off) => Some(LedColor::Black),
                Ok(pb::LedColor::Red) => Some(LedColor::Red),
                Ok(pb::LedColor::Green) => Some(LedColor::Green),
                Ok(pb::LedColor::Amber) => Some(LedColor::Amber),
                Ok(pb::LedColor::Blue) => Some(LedColor::Blue),
                Err(_) => return Err(result(R::Invalid, format!("unknown LED colour {}", o.led))),
            };
            let beeps = u8::try_from(o.beeps)
                .ok()
                .filter(|&b| u32::from(b) <= MAX_BEEPS)
                .ok_or_else(|| {
                    result(R::Invalid, format!("beeps {} is over {MAX_BEEPS}", o.beeps))
                })?;
            if o.text.chars().count() > MAX_TEXT {
                return Err(result(
                    R::Invalid,
                    format!("text is over {MAX_TEXT} characters"),
                ));
            }
            if o.text.chars().any(|c| !(' '..='~').contains(&c)) {
                return Err(result(
                    R::Invalid,
                    "text must be printable ASCII (a reader display's character set)",
                ));
            }
            if o.duration_ms > MAX_UNLOCK_MS {
                return Err(result(
                    R::Invalid,
                    format!("duration_ms {} is over {MAX_UNLOCK_MS}", o.duration_ms),
                ));
            }
            let text = (!o.text.is_empty()).then(|| o.text.clone());
            if led.is_none() && beeps == 0 && text.is_none() {
                return Err(result(R::Invalid, "nothing to show: no LED, beeps or text"));
            }
            Ok(Action::ReaderOutput(ReaderOutput {
                reader: o.reader.clone(),
                led,
                beeps,
                text,
                duration: if o.duration_ms == 0 {
                    DEFAULT_OUTPUT_TIME
                } else {
                    Duration::from_millis(o.duration_ms.into())
                },
            }))
        }
        Some(A::Resync(_)) | Some(A::StatusRequest(_)) => Err(result(
            R::Unsupported,
            "resync and status requests are the sync engine's",
        )),
        None => Err(result(R::Invalid, "no action in the command")),
    }
}

/// The sync's command hook: parse, hand to the site task through
/// `actions`, wait for its outcome. `view` gives the current data set.
pub fn command_hook(
    actions: mpsc::Sender<ActionRequest>,
    targets: Targets,
    view: crate::check_api::SharedView,
) -> OnCommand {
    Box::new(move |command| {
        let action = match parse(command, &targets, &view.load()) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        let (reply, answer) = oneshot::channel();
        let request = ActionRequest {
            action,
            by: format!("cloud (correlation id {:?})", command.correlation_id),
            reply,
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return result(pb::ResultCode::Failed, "no runtime to reach the doors");
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return result(
                pb::ResultCode::Unsupported,
                "door commands need the multi-threaded runtime",
            );
        }
        let actions = actions.clone();
        let outcome = tokio::task::block_in_place(|| {
            handle.block_on(async move {
                actions
                    .send(request)
                    .await
                    .map_err(|_| "the hub is stopping")?;
                match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(_)) => Err("the hub is stopping"),
                    Err(_) => Err("the doors did not answer in time"),
                }
            })
        });
        match outcome {
            Ok(o) if o.ok => result(pb::ResultCode::Ok, o.message),
            Ok(o) => result(pb::ResultCode::Failed, o.message),
            Err(why) => result(pb::ResultCode::Failed, why),
        }
    })
}

/// The sync's health hook: readers, doors and alarms from the newest
/// status snapshot, plus `extra` alarms (the outbox's).
pub fn health_hook(
    status: StatusWatch,
    extra: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
) -> OnHealth {
    Box::new(move |health| {
        let snapshot = Arc::clone(&status.borrow());
        fill_health(health, &snapshot, extra());
    })
}

/// Fills `health` from a status snapshot.
pub fn fill_health(health: &mut pb::Health, status: &crate::status::HubStatus, extra: Vec<String>) {
    health.readers = status
        .readers
        .iter()
        .map(|r| pb::ReaderHealth {
            id: r.name.clone(),
            online: r.online,
            secure_channel: r.secure,
        })
        .collect();
    health.doors = status
        .doors
        .iter()
        .map(|d| pb::DoorHealth {
            id: d.id.clone(),
            open: d.open.unwrap_or(false),
            unlocked: !d.locked,
            lockdown: d.mode == "lockdown",
        })
        .collect();
    let mut alarms = Vec::new();
    for d in &status.doors {
        for a in &d.alarms {
            alarms.push(format!("{a}:{}", d.id));
        }
    }
    for r in &status.readers {
        if !r.online {
            alarms.push(format!("reader_offline:{}", r.name));
        }
        if r.tamper {
            alarms.push(format!("tamper:{}", r.name));
        }
    }
    alarms.extend(extra);
    health.alarms = alarms;
}

/// The outbox alarm raised from 80 % of `storage.outbox_alarm_bytes`
/// (events pile up: the cloud is not taking them).
pub const OUTBOX_HIGH: &str = "outbox_high";
/// The outbox alarm raised at `storage.outbox_max_bytes`: new events are
/// refused (and counted as dropped) until the cloud takes some.
pub const OUTBOX_FULL: &str = "outbox_full";

/// The active outbox alarms at `level`, for health.
pub fn outbox_alarms(level: OutboxLevel) -> Vec<String> {
    let (high, full) = outbox_flags(level);
    [(high, OUTBOX_HIGH), (full, OUTBOX_FULL)]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect()
}

fn outbox_flags(level: OutboxLevel) -> (bool, bool) {
    match level {
        OutboxLevel::Normal => (false, false),
        OutboxLevel::High | OutboxLevel::OverLimit => (true, false),
        OutboxLevel::Full => (true, true),
    }
}

/// Alarm edges of the outbox: [`OUTBOX_HIGH`] and [`OUTBOX_FULL`], each
/// raised once per crossing and cleared once when the level falls back.
#[derive(Debug, Default)]
pub struct OutboxAlarm {
    high: bool,
    full: bool,
}

impl OutboxAlarm {
    /// The edges for the outbox now at `level`: `(alarm, raised)`.
    pub fn update(&mut self, level: OutboxLevel) -> Vec<(&'static str, bool)> {
        let (high, full) = outbox_flags(level);
        let mut edges = Vec::new();
        if high != self.high {
            edges.push((OUTBOX_HIGH, high));
        }
        if full != self.full {
            edges.push((OUTBOX_FULL, full));
        }
        self.high = high;
        self.full = full;
        edges
    }

    /// The alarm the status page shows: the worse one.
    pub fn active(&self) -> Option<&'static str> {
        if self.full {
            Some(OUTBOX_FULL)
        } else if self.high {
            Some(OUTBOX_HIGH)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
