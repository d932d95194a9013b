//! What the hub shows about itself: one [`HubStatus`] snapshot for the
//! technician's web page, `/metrics` and (later) the cloud's health message.
//!
//! The daemon owns a [`StatusPublisher`]: it rebuilds the snapshot from its
//! parts (doors, bus status, store, sync) about once a second and whenever
//! something visible changes, and publishes it with
//! [`StatusPublisher::publish`]. Readers hold a [`StatusWatch`] and see the
//! newest snapshot without locks; the web page streams it live.
//!
//! Nothing here carries a secret: recent events hold masked credentials
//! (the event log masks them before they get here) and never PINs.

use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

/// Everything the status page shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HubStatus {
    /// The machine and the process.
    pub system: SystemStatus,
    /// One entry per configured door.
    pub doors: Vec<DoorStatus>,
    /// One entry per configured reader.
    pub readers: Vec<ReaderStatus>,
    /// The link with the cloud.
    pub sync: SyncStatus,
    /// How many records of each kind the local cache holds.
    pub cache: CacheCounts,
    /// The newest events, newest first (masked credentials).
    pub events: Vec<EventLine>,
    /// Counters since the process started.
    pub counters: Counters,
}

/// The machine and the process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemStatus {
    /// The hub's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The site id from the config.
    pub site: String,
    /// When the process started.
    pub started_at: Option<Timestamp>,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// The wall clock when this snapshot was made.
    pub clock: Option<Timestamp>,
    /// Resident memory of the hub process, bytes.
    pub memory_rss_bytes: u64,
    /// Memory available on the machine, bytes (`MemAvailable`).
    pub memory_available_bytes: u64,
    /// Free space on the store's file system, bytes.
    pub disk_free_bytes: u64,
    /// Size of the store's file system, bytes.
    pub disk_total_bytes: u64,
    /// Size of the store on disk, bytes.
    pub store_bytes: u64,
    /// Running as the demo (virtual readers on a simulated bus).
    pub demo: bool,
}

/// One door.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DoorStatus {
    /// The door's id.
    pub id: String,
    /// Its name, when the data set has one.
    pub name: String,
    /// `normal`, `unlocked` or `lockdown`.
    pub mode: String,
    /// The strike is locked (not released).
    pub locked: bool,
    /// The position switch says open; `None` without a switch.
    pub open: Option<bool>,
    /// Active alarms (`forced_open`, `held_open`).
    pub alarms: Vec<String>,
}

/// One reader (an OSDP peripheral device).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReaderStatus {
    /// The reader's name from the config.
    pub name: String,
    /// The bus's name.
    pub bus: String,
    /// OSDP address.
    pub address: u8,
    /// Answering.
    pub online: bool,
    /// Secure channel established.
    pub secure: bool,
    /// The secure channel uses the default install key (SCBK-D).
    pub default_key: bool,
    /// Tamper switch open.
    pub tamper: bool,
    /// Vendor code from osdp_PDID, as hex.
    pub vendor: Option<String>,
    /// Model number from osdp_PDID.
    pub model: Option<u8>,
    /// Serial number from osdp_PDID.
    pub serial: Option<u32>,
    /// Firmware version from osdp_PDID (`major.minor.build`).
    pub firmware: Option<String>,
}

/// The link with the cloud.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncStatus {
    /// An MQTT broker is configured.
    pub configured: bool,
    /// Connected to the broker now.
    pub connected: bool,
    /// Revision of the data set the hub enforces.
    pub revision: Option<u64>,
    /// Events not yet acknowledged by the cloud.
    pub outbox_depth: u64,
    /// Last packet from the broker (a message, an ack, a ping response).
    pub last_contact: Option<Timestamp>,
    /// The outbox's alarm: `outbox_high` from 80 % of
    /// `storage.outbox_alarm_bytes`, `outbox_full` at `outbox_max_bytes`
    /// (new events are refused); `None` below.
    pub outbox_alarm: Option<String>,
}

/// Records in the local cache.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct CacheCounts {
    /// Users.
    pub users: u64,
    /// Credentials (cards, PINs, mobile keys).
    pub credentials: u64,
    /// Accesses.
    pub accesses: u64,
    /// Access codes.
    pub access_codes: u64,
    /// Doors.
    pub doors: u64,
}

/// One event for people, credentials masked.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventLine {
    /// Outbox sequence number.
    pub seq: u64,
    /// When.
    pub time: Option<Timestamp>,
    /// Kind (`granted`, `denied`, `alarm`, `device`, `action`...).
    pub kind: String,
    /// The door, if any.
    pub door: Option<String>,
    /// What happened, for people.
    pub message: String,
}

/// Counters since the process started (Prometheus counters).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Decisions that granted access.
    pub granted: u64,
    /// Decisions that denied access (and refused presentations).
    pub denied: u64,
    /// Door alarms raised.
    pub alarms: u64,
    /// OSDP packets sent, all buses.
    pub osdp_sent: u64,
    /// OSDP replies that timed out, all buses.
    pub osdp_timeouts: u64,
    /// Technician actions from the web page.
    pub web_actions: u64,
    /// Events that could not be stored (the outbox at its hard limit, or
    /// a store failure): the door acted, the log line is lost.
    pub events_dropped: u64,
}

/// The newest snapshot, for readers.
pub type StatusWatch = watch::Receiver<Arc<HubStatus>>;

/// The daemon's end: publishes snapshots.
#[derive(Debug)]
pub struct StatusPublisher {
    tx: watch::Sender<Arc<HubStatus>>,
}

impl StatusPublisher {
    /// A publisher whose watchers see `initial` first.
    pub fn new(initial: HubStatus) -> (Self, StatusWatch) {
        let (tx, rx) = watch::channel(Arc::new(initial));
        (Self { tx }, rx)
    }

    /// Replaces the snapshot; every watcher is woken.
    pub fn publish(&self, status: HubStatus) {
        // No watcher left (web page off) is fine: the snapshot is kept.
        self.tx.send_replace(Arc::new(status));
    }

    /// Another watcher.
    pub fn subscribe(&self) -> StatusWatch {
        self.tx.subscribe()
    }
}

/// Resident memory of this process, from `/proc/self/status` (`VmRSS`).
pub fn process_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&text, "VmRSS:")
}

/// Memory available on the machine, from `/proc/meminfo`.
pub fn memory_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemAvailable:")
}

/// Free and total bytes of the file system holding `path` (`statvfs`).
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let block = stat.f_frsize;
    Some((
        stat.f_bavail.saturating_mul(block),
        stat.f_blocks.saturating_mul(block),
    ))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_parse() {
        let text = "Name:\thub\nVmRSS:\t  12345 kB\nVmHWM:\t 2 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(12345 * 1024));
        assert_eq!(kib_field(text, "VmSwap:"), None);
        assert_eq!(kib_field("VmRSS: lots kB", "VmRSS:"), None);
    }

    #[test]
    fn this_process_has_memory_and_a_disk() {
        assert!(process_rss_bytes().is_some_and(|b| b > 0));
        let (free, total) = disk_space(std::path::Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
    }

    #[test]
    fn watchers_see_the_newest_snapshot() {
        let (publisher, watch) = StatusPublisher::new(HubStatus::default());
        let mut status = HubStatus::default();
        status.sync.revision = Some(7);
        publisher.publish(status);
        assert_eq!(watch.borrow().sync.revision, Some(7));
        assert_eq!(publisher.subscribe().borrow().sync.revision, Some(7));
    }
}
