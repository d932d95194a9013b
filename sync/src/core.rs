//! [`SyncCore`]: the sans-IO sync state machine.
//!
//! Inputs: [`SyncCore::handle_connected`], [`SyncCore::handle_disconnected`],
//! [`SyncCore::handle_message`], [`SyncCore::handle_outbox_changed`] and
//! [`SyncCore::handle_timeout`], each with the current [`Instant`]. Outputs:
//! [`SyncCore::poll_publish`] (MQTT publishes to send, in order),
//! [`SyncCore::poll_event`] (what happened, for logs and tests) and
//! [`SyncCore::poll_timeout`] (when to call `handle_timeout` next). The hub's
//! data, outbox and doors are reached through [`LocalState`]. The core never
//! blocks, sleeps or reads a clock.
//!
//! Rules (the contract is `docs/mqtt-api.md`):
//!
//! - Only messages on this hub's own `desired`, `snapshot`, `cmd` and `ack`
//!   topics are read; anything else is ignored. A payload over
//!   [`MAX_PAYLOAD`] bytes or one that does not decode is rejected with a
//!   `REJECTED` status on `status` and changes nothing.
//! - A revision applies when its `base_revision` is the hub's revision; one
//!   at or below the hub's revision is a repeat and is ignored; any other is
//!   a gap: rejected, and the hub asks for a snapshot on `resync`. A hub
//!   without data asks for a snapshot as soon as it is connected. Requests
//!   are repeated every [`SyncConfig::resync_retry`] until a snapshot
//!   arrives.
//! - Snapshot chunks are taken in order; a repeat of the previous chunk is
//!   ignored, a missing chunk or a stall longer than
//!   [`SyncConfig::snapshot_timeout`] drops the snapshot (the old data set
//!   stays) and asks again.
//! - Outbox events go out in sequence order, in batches of at most
//!   [`SyncConfig::max_batch_events`] events and [`MAX_PAYLOAD`] bytes, with
//!   at most [`SyncConfig::max_inflight_batches`] batches unacknowledged.
//!   `Ack { through_seq }` deletes events up to there (never past what was
//!   sent). Without an ack for [`SyncConfig::ack_timeout`], and after every
//!   reconnect, sending starts again after the last acknowledged event: the
//!   same events, with the same `(hub_id, seq)` keys.
//! - Commands are carried out once per correlation id: the results of the
//!   last [`RECENT_COMMANDS`] commands are kept, and a command whose id is
//!   among them (a QoS 1 redelivery, a cloud retrying) gets the same result
//!   again without being carried out a second time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hub_proto::v1::{
    command, AccessEvent, Ack, Command, CommandResult, EntityStatus, ErrorCode, EventBatch,
    Presence, PresenceState, ResultCode, ResyncRequest, Revision, SnapshotChunk, StatusKind,
    StatusReport,
};
use prost::Message;

use crate::local::{LocalError, LocalState};
use crate::topics::{Kind, Topics};

/// Largest payload either side sends or takes: 128 KiB.
pub const MAX_PAYLOAD: usize = 128 * 1024;

/// Longest snapshot id or command correlation id, in bytes.
pub const MAX_ID: usize = 128;

/// How many recent command results are kept to answer a repeated
/// correlation id without carrying the command out again.
pub const RECENT_COMMANDS: usize = 256;

/// Outbox wakes check statuses at most once in this window; a later
/// change in the window goes out at its end.
pub const STATUS_CHECK_EVERY: Duration = Duration::from_millis(100);

/// MQTT quality of service (the contract uses 0 and 1 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// At most once.
    AtMostOnce,
    /// At least once.
    AtLeastOnce,
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Full topic.
    pub topic: String,
    /// Quality of service.
    pub qos: Qos,
    /// Retained flag.
    pub retain: bool,
    /// Encoded protobuf message.
    pub payload: Vec<u8>,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// This hub's topics (tenant and hub id).
    pub topics: Topics,
    /// Software version reported in presence.
    pub version: String,
    /// Most events in one batch. Default 500.
    pub max_batch_events: usize,
    /// Most batches sent and not yet acknowledged. Default 4.
    pub max_inflight_batches: usize,
    /// Resend from the last acknowledged event after this long without an
    /// ack. Default 30 s.
    pub ack_timeout: Duration,
    /// Repeat a resync request this often until a snapshot arrives.
    /// Default 30 s.
    pub resync_retry: Duration,
    /// Drop a snapshot whose next chunk has not come for this long.
    /// Default 60 s.
    pub snapshot_timeout: Duration,
    /// Publish health this often. Default 60 s.
    pub health_interval: Duration,
    /// Look for status changes (codes becoming set or removed with time)
    /// this often. Default 10 s.
    pub status_interval: Duration,
    /// Look for new outbox events this often (besides
    /// [`SyncCore::handle_outbox_changed`]). Default 1 s.
    pub outbox_poll: Duration,
}

impl SyncConfig {
    /// The defaults for `topics`.
    pub fn new(topics: Topics) -> Self {
        Self {
            topics,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_batch_events: 500,
            max_inflight_batches: 4,
            ack_timeout: Duration::from_secs(30),
            resync_retry: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(60),
            health_interval: Duration::from_secs(60),
            status_interval: Duration::from_secs(10),
            outbox_poll: Duration::from_secs(1),
        }
    }
}

/// What the engine did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Connected and subscribed.
    Connected,
    /// The connection was lost.
    Disconnected,
    /// A revision was applied; the hub is at `revision`.
    RevisionApplied {
        /// The new revision.
        revision: u64,
    },
    /// A snapshot was applied; the hub is at `revision`.
    SnapshotApplied {
        /// The new revision.
        revision: u64,
    },
    /// A message was rejected and changed nothing.
    Rejected {
        /// The topic level it came on.
        topic: Kind,
        /// Why, as in the status sent.
        error: ErrorCode,
        /// Explanation (no secrets).
        reason: String,
    },
    /// The hub asked for a snapshot.
    ResyncRequested {
        /// Why ("no_data", "revision_gap", ...).
        reason: &'static str,
    },
    /// The cloud acknowledged events through `through_seq`.
    EventsAcked {
        /// Highest acknowledged sequence number.
        through_seq: u64,
    },
    /// A command was carried out (or refused).
    CommandDone {
        /// Its correlation id.
        correlation_id: String,
        /// Its result.
        code: ResultCode,
    },
    /// A command whose correlation id was already carried out: its earlier
    /// result was sent again, nothing was done.
    CommandRepeated {
        /// Its correlation id.
        correlation_id: String,
    },
    /// A message on a topic that is not one of this hub's inputs.
    Ignored {
        /// The topic.
        topic: String,
    },
}

#[derive(Debug)]
struct Assembly {
    id: String,
    revision: u64,
    count: u32,
    next: u32,
    deadline: Instant,
}

/// The sync state machine; see the [module documentation](self).
#[derive(Debug)]
pub struct SyncCore {
    cfg: SyncConfig,
    connected: bool,
    out: VecDeque<Publish>,
    events: VecDeque<SyncEvent>,
    /// A resync is wanted: when to ask (again), and why.
    resync: Option<(Instant, &'static str)>,
    snapshot: Option<Assembly>,
    /// The last snapshot completed or given up, whose late chunks are
    /// ignored.
    finished_snapshot: Option<String>,
    /// Highest seq the cloud acknowledged (this process).
    acked_through: u64,
    /// Highest seq published since the last (re)start of sending.
    sent_through: u64,
    /// Highest seq ever published by this process: acks are clamped to it.
    max_sent: u64,
    /// Last seq of each batch in flight.
    inflight: VecDeque<u64>,
    ack_deadline: Option<Instant>,
    next_health: Option<Instant>,
    next_status: Option<Instant>,
    /// When an outbox wake last checked statuses (bursts are coalesced).
    last_status_check: Option<Instant>,
    next_outbox_poll: Option<Instant>,
    /// Results of the last [`RECENT_COMMANDS`] commands, oldest first.
    recent_commands: VecDeque<CommandResult>,
}

impl SyncCore {
    /// A disconnected engine.
    pub fn new(cfg: SyncConfig) -> Self {
        Self {
            cfg,
            connected: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            resync: None,
            snapshot: None,
            finished_snapshot: None,
            acked_through: 0,
            sent_through: 0,
            max_sent: 0,
            inflight: VecDeque::new(),
            ack_deadline: None,
            next_health: None,
            next_status: None,
            last_status_check: None,
            next_outbox_poll: None,
            recent_commands: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// The topics to subscribe to (QoS 1) on every connection.
    pub fn subscriptions(&self) -> Vec<String> {
        Kind::DOWN
            .into_iter()
            .map(|k| self.cfg.topics.topic(k))
            .collect()
    }

    /// The last will to register when connecting: presence OFFLINE,
    /// retained. `local` gives the time stamp.
    pub fn last_will(&self, local: &impl LocalState) -> Publish {
        self.presence(PresenceState::Offline, local)
    }

    fn presence(&self, state: PresenceState, local: &impl LocalState) -> Publish {
        let msg = Presence {
            hub_id: self.cfg.topics.hub_id().to_owned(),
            state: state as i32,
            since: Some(local.now()),
            version: self.cfg.version.clone(),
        };
        self.publish(Kind::Presence, Qos::AtLeastOnce, msg.encode_to_vec())
    }

    fn publish(&self, kind: Kind, qos: Qos, payload: Vec<u8>) -> Publish {
        Publish {
            topic: self.cfg.topics.topic(kind),
            qos,
            retain: kind.retained(),
            payload,
        }
    }

    fn emit(&mut self, kind: Kind, qos: Qos, payload: Vec<u8>) {
        let p = self.publish(kind, qos, payload);
        self.out.push_back(p);
    }

    /// Whether the engine believes it is connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The connection is up and subscribed: announce presence and health,
    /// ask for a snapshot when there is no data, start sending events.
    pub fn handle_connected(&mut self, local: &mut impl LocalState, now: Instant) {
        self.connected = true;
        self.events.push_back(SyncEvent::Connected);
        let p = self.presence(PresenceState::Online, local);
        self.out.push_back(p);
        self.publish_health(local, now);
        if local.revision().is_none() && self.snapshot.is_none() {
            self.want_resync("no_data", now);
        }
        if let Some((at, reason)) = self.resync {
            if at > now {
                self.resync = Some((now, reason));
            }
        }
        self.retry_resync(local, now);
        self.next_status = Some(now + self.cfg.status_interval);
        self.restart_sending();
        self.pump_outbox(local, now);
    }

    /// The connection is gone: stop sending; events stay in the outbox.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.connected = false;
        self.events.push_back(SyncEvent::Disconnected);
        self.restart_sending();
        self.next_health = None;
        self.next_status = None;
        self.next_outbox_poll = None;
    }

    fn restart_sending(&mut self) {
        self.sent_through = self.acked_through;
        self.inflight.clear();
        self.ack_deadline = None;
    }

    /// New events were appended to the outbox: send them when the window
    /// allows, and report the status changes that came with them at once
    /// rather than at the next status pass (a one-time access code used
    /// at a door: the hub records the use before it appends the event).
    ///
    /// The status check walks the local state's codes and accesses, so a
    /// burst of events checks once at its start and once at the end of
    /// [`STATUS_CHECK_EVERY`], not once an event.
    pub fn handle_outbox_changed(&mut self, local: &mut impl LocalState, now: Instant) {
        if self.connected {
            match self.last_status_check {
                Some(last) if now < last + STATUS_CHECK_EVERY => {
                    let at = last + STATUS_CHECK_EVERY;
                    self.next_status = Some(self.next_status.map_or(at, |d| d.min(at)));
                }
                _ => {
                    self.last_status_check = Some(now);
                    let statuses = local.statuses(false);
                    self.publish_statuses(local, statuses);
                }
            }
        }
        self.pump_outbox(local, now);
    }

    /// A message arrived on `topic`.
    pub fn handle_message(
        &mut self,
        local: &mut impl LocalState,
        topic: &str,
        payload: &[u8],
        now: Instant,
    ) {
        let kind = match self.cfg.topics.parse(topic) {
            Some(k) if Kind::DOWN.contains(&k) => k,
            _ => {
                self.events.push_back(SyncEvent::Ignored {
                    topic: topic.to_owned(),
                });
                return;
            }
        };
        if payload.len() > MAX_PAYLOAD {
            let reason = format!(
                "payload of {} bytes is over the limit of {MAX_PAYLOAD}",
                payload.len()
            );
            self.reject(local, kind, ErrorCode::TooLarge, None, reason, 0);
            return;
        }
        match kind {
            Kind::Desired => match Revision::decode(payload) {
                Ok(r) => self.on_revision(local, r, now),
                Err(e) => self.reject_decode(local, kind, &e),
            },
            Kind::Snapshot => match SnapshotChunk::decode(payload) {
                Ok(c) => self.on_chunk(local, c, now),
                Err(e) => self.reject_decode(local, kind, &e),
            },
            Kind::Cmd => match Command::decode(payload) {
                Ok(c) => self.on_command(local, c, now),
                Err(e) => self.reject_decode(local, kind, &e),
            },
            Kind::Ack => match Ack::decode(payload) {
                Ok(a) => self.on_ack(local, a.through_seq, a.resend, now),
                Err(e) => self.reject_decode(local, kind, &e),
            },
            _ => {}
        }
    }

    /// Timers: resync retries, snapshot stalls, ack timeouts, health,
    /// status changes, outbox polling. Call at [`Self::poll_timeout`] (or
    /// any time: nothing happens before it is due).
    pub fn handle_timeout(&mut self, local: &mut impl LocalState, now: Instant) {
        if self.snapshot.as_ref().is_some_and(|a| a.deadline <= now) {
            if let Some(a) = self.snapshot.take() {
                local.snapshot_abort();
                let reason = format!(
                    "snapshot {} stalled at chunk {} of {}",
                    a.id, a.next, a.count
                );
                self.finished_snapshot = Some(a.id);
                self.reject(
                    local,
                    Kind::Snapshot,
                    ErrorCode::SnapshotBroken,
                    None,
                    reason,
                    a.revision,
                );
                self.want_resync("snapshot_broken", now);
            }
        }
        self.retry_resync(local, now);
        if !self.connected {
            return;
        }
        if self.ack_deadline.is_some_and(|d| d <= now) {
            self.restart_sending();
        }
        if self.next_health.is_some_and(|d| d <= now) {
            self.publish_health(local, now);
        }
        if self.next_status.is_some_and(|d| d <= now) {
            self.last_status_check = Some(now);
            let statuses = local.statuses(false);
            self.publish_statuses(local, statuses);
            self.next_status = Some(now + self.cfg.status_interval);
        }
        self.pump_outbox(local, now);
    }

    /// The next publish to send, in order.
    pub fn poll_publish(&mut self) -> Option<Publish> {
        self.out.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<SyncEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.snapshot.as_ref().map(|a| a.deadline);
        let mut take = |d: Option<Instant>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t| t.min(d)));
            }
        };
        if self.connected {
            take(self.resync.map(|(at, _)| at));
            take(self.ack_deadline);
            take(self.next_health);
            take(self.next_status);
            take(self.next_outbox_poll);
        }
        t
    }

    // ---- desired state ------------------------------------------------------------

    fn on_revision(&mut self, local: &mut impl LocalState, r: Revision, now: Instant) {
        if r.revision <= r.base_revision {
            let reason = format!(
                "revision {} is not above its base {}",
                r.revision, r.base_revision
            );
            self.reject(
                local,
                Kind::Desired,
                ErrorCode::Invalid,
                None,
                reason,
                r.revision,
            );
            return;
        }
        if let Some(i) = r.changes.iter().position(|c| c.op.is_none()) {
            let reason = format!("change {i} has neither upsert nor delete");
            self.reject(
                local,
                Kind::Desired,
                ErrorCode::Invalid,
                None,
                reason,
                r.revision,
            );
            return;
        }
        let current = local.revision();
        if current.is_some_and(|c| r.revision <= c) {
            // A repeat (QoS 1 redelivery, or already in a snapshot).
            return;
        }
        if current != Some(r.base_revision) {
            let reason = match current {
                Some(c) => format!(
                    "revision {}→{} does not apply to revision {c}",
                    r.base_revision, r.revision
                ),
                None => format!(
                    "revision {}→{} does not apply: the hub has no data",
                    r.base_revision, r.revision
                ),
            };
            self.reject(
                local,
                Kind::Desired,
                ErrorCode::RevisionGap,
                None,
                reason,
                r.revision,
            );
            if self.snapshot.is_none() {
                self.want_resync(
                    if current.is_some() {
                        "revision_gap"
                    } else {
                        "no_data"
                    },
                    now,
                );
                self.retry_resync(local, now);
            }
            return;
        }
        match local.apply_revision(&r) {
            Ok(mut statuses) => {
                statuses.insert(0, applied(r.revision));
                self.publish_statuses(local, statuses);
                self.events.push_back(SyncEvent::RevisionApplied {
                    revision: r.revision,
                });
            }
            Err(e) => self.reject_local(local, Kind::Desired, e, r.revision),
        }
    }

    fn on_chunk(&mut self, local: &mut impl LocalState, c: SnapshotChunk, now: Instant) {
        let invalid = if c.snapshot_id.is_empty() || c.snapshot_id.len() > MAX_ID {
            Some(format!("snapshot_id must have 1 to {MAX_ID} bytes"))
        } else if c.chunk_count == 0 || c.chunk_index >= c.chunk_count {
            Some(format!(
                "chunk_index {} is not below chunk_count {}",
                c.chunk_index, c.chunk_count
            ))
        } else {
            None
        };
        if let Some(reason) = invalid {
            self.reject(
                local,
                Kind::Snapshot,
                ErrorCode::Invalid,
                None,
                reason,
                c.revision,
            );
            return;
        }
        let same = self
            .snapshot
            .as_ref()
            .is_some_and(|a| a.id == c.snapshot_id);
        if same {
            let Some(a) = self.snapshot.as_ref() else {
                return;
            };
            if a.revision != c.revision || a.count != c.chunk_count || c.chunk_index > a.next {
                let reason = format!(
                    "snapshot {}: chunk {} of {} (revision {}) while expecting chunk {} of {} (revision {})",
                    a.id, c.chunk_index, c.chunk_count, c.revision, a.next, a.count, a.revision
                );
                self.snapshot_broken(local, reason, c.revision, now);
                return;
            }
            if c.chunk_index < a.next {
                return; // a repeat
            }
        } else {
            if self.finished_snapshot.as_deref() == Some(c.snapshot_id.as_str()) {
                return; // a late repeat of a finished or abandoned snapshot
            }
            if c.chunk_index != 0 {
                let reason = format!(
                    "snapshot {}: chunk {} arrived without chunk 0",
                    c.snapshot_id, c.chunk_index
                );
                self.finished_snapshot = Some(c.snapshot_id.clone());
                self.snapshot_broken(local, reason, c.revision, now);
                return;
            }
            if let Some(current) = local.revision() {
                if c.revision < current {
                    let reason = format!(
                        "snapshot {} has revision {}, the hub is at {current}",
                        c.snapshot_id, c.revision
                    );
                    self.finished_snapshot = Some(c.snapshot_id.clone());
                    self.reject(
                        local,
                        Kind::Snapshot,
                        ErrorCode::Stale,
                        None,
                        reason,
                        c.revision,
                    );
                    return;
                }
            }
            if self.snapshot.take().is_some() {
                local.snapshot_abort();
            }
            if let Err(e) = local.snapshot_begin(c.revision) {
                self.finished_snapshot = Some(c.snapshot_id.clone());
                self.reject_local(local, Kind::Snapshot, e, c.revision);
                return;
            }
            self.snapshot = Some(Assembly {
                id: c.snapshot_id.clone(),
                revision: c.revision,
                count: c.chunk_count,
                next: 0,
                deadline: now + self.cfg.snapshot_timeout,
            });
        }
        let id = c.snapshot_id;
        if let Err(e) = local.snapshot_chunk(c.entities) {
            self.snapshot = None;
            local.snapshot_abort();
            self.finished_snapshot = Some(id);
            self.reject_local(local, Kind::Snapshot, e, c.revision);
            return;
        }
        let Some(a) = self.snapshot.as_mut() else {
            return;
        };
        a.next += 1;
        a.deadline = now + self.cfg.snapshot_timeout;
        if a.next < a.count {
            return;
        }
        let revision = a.revision;
        self.snapshot = None;
        self.finished_snapshot = Some(id);
        match local.snapshot_commit() {
            Ok(mut statuses) => {
                self.resync = None;
                statuses.insert(0, applied(revision));
                self.publish_statuses(local, statuses);
                self.events
                    .push_back(SyncEvent::SnapshotApplied { revision });
            }
            Err(e) => {
                self.reject_local(local, Kind::Snapshot, e, revision);
                if local.revision().is_none() {
                    self.want_resync("no_data", now);
                }
            }
        }
    }

    fn snapshot_broken(
        &mut self,
        local: &mut impl LocalState,
        reason: String,
        revision: u64,
        now: Instant,
    ) {
        if let Some(a) = self.snapshot.take() {
            local.snapshot_abort();
            self.finished_snapshot = Some(a.id);
        }
        self.reject(
            local,
            Kind::Snapshot,
            ErrorCode::SnapshotBroken,
            None,
            reason,
            revision,
        );
        self.want_resync("snapshot_broken", now);
        self.retry_resync(local, now);
    }

    fn want_resync(&mut self, reason: &'static str, now: Instant) {
        if self.resync.is_none() {
            self.resync = Some((now, reason));
        }
    }

    fn retry_resync(&mut self, local: &mut impl LocalState, now: Instant) {
        let Some((at, reason)) = self.resync else {
            return;
        };
        if !self.connected || at > now || self.snapshot.is_some() {
            return;
        }
        let msg = ResyncRequest {
            hub_id: self.cfg.topics.hub_id().to_owned(),
            have_revision: local.revision(),
            reason: reason.to_owned(),
        };
        self.emit(Kind::Resync, Qos::AtLeastOnce, msg.encode_to_vec());
        self.events.push_back(SyncEvent::ResyncRequested { reason });
        self.resync = Some((now + self.cfg.resync_retry, reason));
    }

    // ---- commands -----------------------------------------------------------------

    fn on_command(&mut self, local: &mut impl LocalState, c: Command, now: Instant) {
        if c.correlation_id.is_empty() || c.correlation_id.len() > MAX_ID {
            let reason = format!("correlation_id must have 1 to {MAX_ID} bytes");
            self.reject(local, Kind::Cmd, ErrorCode::Invalid, None, reason, 0);
            return;
        }
        if let Some(done) = self
            .recent_commands
            .iter()
            .find(|r| r.correlation_id == c.correlation_id)
        {
            // Redelivered (QoS 1) or retried: answer again, act once.
            let payload = done.encode_to_vec();
            self.events.push_back(SyncEvent::CommandRepeated {
                correlation_id: c.correlation_id,
            });
            self.emit(Kind::Result, Qos::AtLeastOnce, payload);
            return;
        }
        let mut result = match &c.action {
            None => CommandResult {
                code: ResultCode::Invalid as i32,
                message: "no action in the command".into(),
                ..CommandResult::default()
            },
            Some(command::Action::Resync(_)) => {
                self.resync = Some((now, "command"));
                self.retry_resync(local, now);
                ok_result("snapshot requested")
            }
            Some(command::Action::StatusRequest(_)) => {
                self.publish_health(local, now);
                let statuses = local.statuses(true);
                self.publish_statuses(local, statuses);
                ok_result("health and statuses published")
            }
            Some(_) => local.command(&c),
        };
        result.hub_id = self.cfg.topics.hub_id().to_owned();
        result.correlation_id = c.correlation_id;
        result.time = Some(local.now());
        if result.code == ResultCode::Unspecified as i32 {
            result.code = ResultCode::Failed as i32;
        }
        self.events.push_back(SyncEvent::CommandDone {
            correlation_id: result.correlation_id.clone(),
            code: result.code(),
        });
        self.emit(Kind::Result, Qos::AtLeastOnce, result.encode_to_vec());
        if self.recent_commands.len() >= RECENT_COMMANDS {
            self.recent_commands.pop_front();
        }
        self.recent_commands.push_back(result);
    }

    // ---- events -------------------------------------------------------------------

    fn on_ack(&mut self, local: &mut impl LocalState, through: u64, resend: bool, now: Instant) {
        // Never delete what this process has not sent.
        let through = through.min(self.max_sent);
        if resend {
            // Apply what the ack covers, then start again after it.
            if through > self.acked_through && local.outbox_ack(through).is_ok() {
                self.acked_through = through;
                self.events.push_back(SyncEvent::EventsAcked {
                    through_seq: through,
                });
            }
            self.sent_through = self.acked_through;
            self.inflight.clear();
            self.ack_deadline = None;
            self.pump_outbox(local, now);
            return;
        }
        if through <= self.acked_through {
            return;
        }
        if let Err(e) = local.outbox_ack(through) {
            tracing::warn!("outbox acknowledgement failed: {e}");
            return;
        }
        self.acked_through = through;
        if self.sent_through < through {
            self.sent_through = through;
        }
        while self.inflight.front().is_some_and(|&s| s <= through) {
            self.inflight.pop_front();
        }
        self.ack_deadline = (!self.inflight.is_empty()).then(|| now + self.cfg.ack_timeout);
        self.events.push_back(SyncEvent::EventsAcked {
            through_seq: through,
        });
        self.pump_outbox(local, now);
    }

    fn pump_outbox(&mut self, local: &mut impl LocalState, now: Instant) {
        if !self.connected {
            return;
        }
        self.next_outbox_poll = Some(now + self.cfg.outbox_poll);
        while self.inflight.len() < self.cfg.max_inflight_batches.max(1) {
            let events = match local.outbox_peek(
                self.sent_through.saturating_add(1),
                self.cfg.max_batch_events.max(1),
            ) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("reading the outbox failed: {e}");
                    return;
                }
            };
            let Some(batch) = self.batch(events) else {
                return;
            };
            let Some(last) = batch.events.last().map(|e| e.seq) else {
                return;
            };
            self.emit(Kind::Events, Qos::AtLeastOnce, batch.encode_to_vec());
            self.sent_through = last;
            self.max_sent = self.max_sent.max(last);
            self.inflight.push_back(last);
            if self.ack_deadline.is_none() {
                self.ack_deadline = Some(now + self.cfg.ack_timeout);
            }
        }
    }

    /// The longest prefix of `events` (in seq order, above what was sent)
    /// that fits in one payload.
    fn batch(&self, events: Vec<AccessEvent>) -> Option<EventBatch> {
        let hub_id = self.cfg.topics.hub_id().to_owned();
        // hub_id field plus slack for the length prefixes.
        let mut size = hub_id.len() + 16;
        let mut out = Vec::with_capacity(events.len());
        let mut last = self.sent_through;
        for mut e in events {
            if e.seq <= last {
                continue;
            }
            let mut len = e.encoded_len() + 6;
            if len + hub_id.len() + 16 > MAX_PAYLOAD {
                // An event too large on its own: send it without its text.
                e.message = "(message dropped: event too large)".into();
                len = e.encoded_len() + 6;
            }
            if size + len > MAX_PAYLOAD && !out.is_empty() {
                break;
            }
            size += len;
            last = e.seq;
            out.push(e);
        }
        (!out.is_empty()).then_some(EventBatch {
            hub_id,
            events: out,
        })
    }

    // ---- statuses and health --------------------------------------------------------

    fn publish_health(&mut self, local: &mut impl LocalState, now: Instant) {
        let mut h = local.health();
        h.hub_id = self.cfg.topics.hub_id().to_owned();
        self.emit(Kind::Health, Qos::AtMostOnce, h.encode_to_vec());
        self.next_health = Some(now + self.cfg.health_interval);
    }

    /// Publishes statuses in reports of at most [`MAX_PAYLOAD`] bytes.
    fn publish_statuses(&mut self, local: &impl LocalState, statuses: Vec<EntityStatus>) {
        if statuses.is_empty() {
            return;
        }
        let hub_id = self.cfg.topics.hub_id().to_owned();
        let time = Some(local.now());
        let base = StatusReport {
            hub_id: hub_id.clone(),
            time,
            statuses: Vec::new(),
        }
        .encoded_len()
            + 16;
        let mut size = base;
        let mut report = Vec::new();
        for s in statuses {
            let len = s.encoded_len() + 6;
            if size + len > MAX_PAYLOAD && !report.is_empty() {
                let msg = StatusReport {
                    hub_id: hub_id.clone(),
                    time,
                    statuses: std::mem::take(&mut report),
                };
                self.emit(Kind::Status, Qos::AtLeastOnce, msg.encode_to_vec());
                size = base;
            }
            size += len;
            report.push(s);
        }
        let msg = StatusReport {
            hub_id,
            time,
            statuses: report,
        };
        self.emit(Kind::Status, Qos::AtLeastOnce, msg.encode_to_vec());
    }

    fn reject_decode(&mut self, local: &impl LocalState, kind: Kind, e: &prost::DecodeError) {
        let reason = format!("not a valid {} message: {e}", message_name(kind));
        self.reject(local, kind, ErrorCode::Decode, None, reason, 0);
    }

    fn reject_local(&mut self, local: &impl LocalState, kind: Kind, e: LocalError, revision: u64) {
        match e {
            LocalError::Rejected { error, key, reason } => {
                self.reject(local, kind, error, key, reason, revision)
            }
            LocalError::Store(reason) => {
                self.reject(local, kind, ErrorCode::Store, None, reason, revision)
            }
        }
    }

    fn reject(
        &mut self,
        local: &impl LocalState,
        kind: Kind,
        error: ErrorCode,
        key: Option<hub_proto::v1::EntityKey>,
        reason: String,
        revision: u64,
    ) {
        tracing::warn!(topic = %kind, ?error, "rejected: {reason}");
        let status = EntityStatus {
            key,
            kind: StatusKind::Rejected as i32,
            reason: reason.clone(),
            error: error as i32,
            revision,
            topic: kind.level().to_owned(),
        };
        self.publish_statuses(local, vec![status]);
        self.events.push_back(SyncEvent::Rejected {
            topic: kind,
            error,
            reason,
        });
    }
}

fn applied(revision: u64) -> EntityStatus {
    EntityStatus {
        kind: StatusKind::Applied as i32,
        revision,
        ..EntityStatus::default()
    }
}

fn ok_result(message: &str) -> CommandResult {
    CommandResult {
        code: ResultCode::Ok as i32,
        message: message.into(),
        ..CommandResult::default()
    }
}

fn message_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Desired => "Revision",
        Kind::Snapshot => "SnapshotChunk",
        Kind::Cmd => "Command",
        Kind::Ack => "Ack",
        _ => "hub.v1",
    }
}

#[cfg(test)]
mod tests;
