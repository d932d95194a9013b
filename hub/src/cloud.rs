//! The hub's side of the cloud sync: [`CloudState`] implements
//! [`hub_sync::LocalState`] over the real [`Store`], converting between the
//! contract's protobuf entities and the access model ([`convert`]).
//!
//! How the daemon plugs it in:
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<hub::store::Store>) -> anyhow::Result<()> {
//! use hub::cloud::{self, CloudConfig, Hooks};
//! let config = CloudConfig::plain("acme", "hub-1", "127.0.0.1", 1883);
//! let hooks = Hooks {
//!     // Called after every applied revision or snapshot with the new view
//!     // (the sync keeps the same `Arc`: one view in the process).
//!     on_new_data: Box::new(|view, revision| {
//!         let _doors = view.counts().doors;
//!         let _ = revision;
//!     }),
//!     ..Hooks::default()
//! };
//! let sync = cloud::run_sync(&config, store.clone(), hooks)?;
//! // After appending an access-log event to the outbox:
//! let log = hub::events::EventLog::new(store.clone());
//! log.append(&hub::events::HubEvent::new(hub::events::EventKind::HubStarted, "started"))?;
//! sync.outbox_changed();
//! sync.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - The data set lives in the store; the sync holds only the compact
//!   [`View`] built from it ([`site_data::load_view`]), the same `Arc<View>`
//!   it hands to the daemon ([`Hooks::on_new_data`]).
//! - A revision becomes one store [`ChangeSet`](crate::store::ChangeSet)
//!   (through [`site_data::DataChange`], which turns credential changes
//!   into changes of their chunks); the new view is built from the store
//!   with the change set laid over it
//!   ([`site_data::load_view_with_changes`]), which checks the whole data
//!   set (a change that would leave a reference to an unknown record, a
//!   duplicate card or PIN, an invalid schedule is rejected and changes
//!   nothing); only then is the change set applied (atomic, with its
//!   revision) and the view installed. Nothing copies the data set.
//! - Snapshot chunks go straight into a store snapshot
//!   ([`Store::begin_shared_snapshot`], invisible until its commit). At the
//!   last chunk the view is built from the staged records
//!   ([`site_data::staged_view`]); a bad snapshot (no site, a duplicate id,
//!   an unknown reference...) is dropped and the old data set stays in
//!   force, as it does when a snapshot stops midway.
//! - Outbox records are the daemon's [`HubEvent`]s; they are sent as
//!   `hub.v1.AccessEvent` ([`access_event`]) with the outbox's sequence
//!   number.
//! - Statuses: after each change, the status of every access code it
//!   touched; every [`hub_sync::SyncConfig::status_interval`], the codes
//!   whose status changed with time, and temporary accesses that expired;
//!   and the same look when an event is appended (a one-time code used at
//!   a door: the daemon marks it in the shared view before it logs the
//!   CodeUsed event, so its `used` status goes out with that event).
//! - One-time code uses are the hub's own ([`Store::record_code_use`]):
//!   every view built here is marked with them, and the uses of codes a
//!   revision or snapshot deleted are dropped ([`Store::forget_code_uses`]).

pub mod convert;
pub mod reference;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use hub_proto::v1 as pb;
use hub_sync::driver::{self, MqttSettings, SyncHandle, TlsFiles};
use hub_sync::{LocalError, LocalState, SyncConfig, Topics};
use jiff::Timestamp;

use crate::access::{CodeFailure, CodeStatus, ModelError, RemovedReason, View};
use crate::events::{EventKind, HubEvent};
use crate::site_data;
use crate::store::{SnapshotWriter, Store, StoreError};
use convert::{ChangeOp, ConvertError, Record};

/// Errors of starting the sync.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Tenant or hub id unusable in topics.
    #[error(transparent)]
    Topics(#[from] hub_sync::TopicError),
    /// The TLS files could not be used.
    #[error(transparent)]
    Driver(#[from] driver::DriverError),
    /// The `[mqtt]` settings cannot make a connection.
    #[error("mqtt: {0}")]
    Settings(String),
}

/// Where the cloud's broker is and who this hub is.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Tenant id (a topic level).
    pub tenant: String,
    /// Hub id (a topic level, the MQTT client id, the certificate's CN).
    pub hub_id: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// mTLS files; `None`: plain MQTT (tests only).
    pub tls: Option<TlsFiles>,
    /// MQTT keepalive.
    pub keepalive: std::time::Duration,
}

impl CloudConfig {
    /// Plain MQTT (tests only).
    pub fn plain(tenant: &str, hub_id: &str, host: &str, port: u16) -> Self {
        Self {
            tenant: tenant.into(),
            hub_id: hub_id.into(),
            host: host.into(),
            port,
            tls: None,
            keepalive: std::time::Duration::from_secs(30),
        }
    }

    /// From the config's `[mqtt]`: `mqtts://host[:port]` (default port
    /// 8883) needs the CA, certificate and key files; `mqtt://host[:port]`
    /// (default 1883) is plain MQTT, for a broker on the same machine or
    /// tests.
    pub fn from_settings(settings: &crate::config::MqttSettings) -> Result<Self, CloudError> {
        let (rest, tls) = if let Some(rest) = settings.url.strip_prefix("mqtts://") {
            (rest, true)
        } else if let Some(rest) = settings.url.strip_prefix("mqtt://") {
            (rest, false)
        } else {
            return Err(CloudError::Settings(format!(
                "url {} is not mqtts://host[:port] or mqtt://host[:port]",
                settings.url
            )));
        };
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal in brackets has colons of its own.
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>().map_err(|_| {
                    CloudError::Settings(format!("bad port in url {}", settings.url))
                })?,
            ),
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut config = Self::plain(&settings.tenant, &settings.hub_id, host, port);
        config.keepalive = settings.keepalive;
        if tls {
            match (&settings.ca_file, &settings.cert_file, &settings.key_file) {
                (Some(ca), Some(cert), Some(key)) => {
                    config.tls = Some(TlsFiles {
                        ca: ca.clone(),
                        cert: cert.clone(),
                        key: key.clone(),
                    });
                }
                _ => {
                    return Err(CloudError::Settings(
                        "mqtts needs ca_file, cert_file and key_file (mutual TLS)".into(),
                    ))
                }
            }
        }
        Ok(config)
    }

    /// mTLS with a CA file, client certificate and key.
    pub fn tls(
        tenant: &str,
        hub_id: &str,
        host: &str,
        port: u16,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    ) -> Self {
        Self {
            tls: Some(TlsFiles { ca, cert, key }),
            ..Self::plain(tenant, hub_id, host, port)
        }
    }
}

/// A callback for new data: the new view (shared with the sync) and its
/// revision.
pub type OnNewData = Box<dyn FnMut(Arc<View>, u64) + Send>;
/// A callback that carries out a door or reader command.
pub type OnCommand = Box<dyn FnMut(&pb::Command) -> pb::CommandResult + Send>;
/// A callback that fills in readers, doors and alarms of a health report.
pub type OnHealth = Box<dyn FnMut(&mut pb::Health) + Send>;

/// What the daemon plugs in.
pub struct Hooks {
    /// A revision or snapshot was applied: here is the new view.
    pub on_new_data: OnNewData,
    /// Door and reader commands. Default: `UNSUPPORTED`.
    pub command: OnCommand,
    /// Readers, doors and alarms for health reports. Default: none.
    pub health: OnHealth,
    /// The wall clock (tests set it). Default: the system clock.
    pub clock: Box<dyn Fn() -> Timestamp + Send>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            on_new_data: Box::new(|_, _| {}),
            command: Box::new(|_| pb::CommandResult {
                code: pb::ResultCode::Unsupported as i32,
                message: "no door control attached to the sync".into(),
                ..pb::CommandResult::default()
            }),
            health: Box::new(|_| {}),
            clock: Box::new(Timestamp::now),
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// Starts the sync engine on the store (inside a tokio runtime).
pub fn run_sync(
    config: &CloudConfig,
    store: Arc<Store>,
    hooks: Hooks,
) -> Result<SyncHandle<CloudState>, CloudError> {
    let (sync, mqtt) = settings(config)?;
    Ok(run_sync_with(sync, mqtt, store, hooks))
}

/// [`run_sync`] starting from a view the caller already built from the
/// store (with its revision; `None`: the store has no data set), so the
/// process holds one view, not two.
pub fn run_sync_sharing(
    config: &CloudConfig,
    store: Arc<Store>,
    current: Option<(Arc<View>, u64)>,
    hooks: Hooks,
) -> Result<SyncHandle<CloudState>, CloudError> {
    let (sync, mqtt) = settings(config)?;
    let state = CloudState::with_view(store, hooks, current);
    Ok(driver::spawn(sync, mqtt, state))
}

/// The engine's and the MQTT client's settings for `config`.
fn settings(config: &CloudConfig) -> Result<(SyncConfig, MqttSettings), CloudError> {
    let topics = Topics::new(&config.tenant, &config.hub_id)?;
    let mut mqtt = match &config.tls {
        Some(files) => MqttSettings::tls(
            config.host.clone(),
            config.port,
            config.hub_id.clone(),
            driver::tls_config(files)?,
        ),
        None => MqttSettings::plain(config.host.clone(), config.port, config.hub_id.clone()),
    };
    mqtt.keep_alive = config.keepalive;
    Ok((SyncConfig::new(topics), mqtt))
}

/// [`run_sync`] with every engine and MQTT setting given.
pub fn run_sync_with(
    sync: SyncConfig,
    mqtt: MqttSettings,
    store: Arc<Store>,
    hooks: Hooks,
) -> SyncHandle<CloudState> {
    let state = CloudState::new(store, hooks);
    driver::spawn(sync, mqtt, state)
}

/// The contract's form of an access-log event from the outbox (the
/// daemon's [`HubEvent`]), with its outbox sequence number.
pub fn access_event(seq: u64, event: &HubEvent) -> pb::AccessEvent {
    let reason_key = event.reason.clone().unwrap_or_default();
    let (kind, reason_key) = match event.kind {
        EventKind::Decision => (pb::EventKind::Access, reason_key),
        EventKind::Refused => (
            pb::EventKind::Access,
            if reason_key.is_empty() {
                "refused".to_owned()
            } else {
                reason_key
            },
        ),
        EventKind::AlarmRaised | EventKind::AlarmCleared => {
            let edge = if event.kind == EventKind::AlarmRaised {
                "raised"
            } else {
                "cleared"
            };
            match reason_key.as_str() {
                "held_open" => (pb::EventKind::DoorHeld, edge.to_owned()),
                "forced_open" => (pb::EventKind::DoorForced, edge.to_owned()),
                // The hub's own alarms (outbox_high, outbox_full): the name
                // and the edge.
                _ => (pb::EventKind::Alarm, format!("{reason_key}:{edge}")),
            }
        }
        EventKind::Device => (pb::EventKind::Reader, reason_key),
        EventKind::CodeUsed => (pb::EventKind::CodeUsed, reason_key),
        EventKind::HubStarted => (pb::EventKind::Hub, "started".to_owned()),
        EventKind::HubStopped => (pb::EventKind::Hub, "stopped".to_owned()),
        EventKind::DataSeeded => (pb::EventKind::Hub, "data_seeded".to_owned()),
        EventKind::StoreRecovered => (pb::EventKind::Alarm, "store_recovered".to_owned()),
        // reason: the action's name (unlock, identify, check, present).
        EventKind::Action => (pb::EventKind::Action, reason_key),
    };
    let reason = if kind == pb::EventKind::Access {
        reason_class(&reason_key)
    } else {
        pb::ReasonCode::Unspecified
    };
    pb::AccessEvent {
        seq,
        time: Timestamp::from_millisecond(event.at_ms).ok().map(time),
        kind: kind as i32,
        door: event.door.clone().unwrap_or_default(),
        reader: event.reader.clone().unwrap_or_default(),
        credential_masked: event.credential.clone().unwrap_or_default(),
        user: event.user.clone().unwrap_or_default(),
        granted: event.granted.unwrap_or(false),
        reason: reason as i32,
        message: event.message.clone(),
        reason_key,
        method: event.method.clone().unwrap_or_default(),
    }
}

/// The contract's coarse [`pb::ReasonCode`] for a decision rule's machine
/// code ([`crate::check_api::reason_code`]).
fn reason_class(rule: &str) -> pb::ReasonCode {
    use pb::ReasonCode as R;
    match rule {
        "access"
        | "membership"
        | "instructor"
        | "member"
        | "event"
        | "credential_entrance"
        | "access_code" => R::Granted,
        "unknown_card"
        | "unknown_pin"
        | "unknown_mobile_key"
        | "unknown_barcode"
        | "unknown_biometric"
        | "unknown_user"
        | "no_identifier"
        | "identifiers_mismatch" => R::UnknownCredential,
        "pin_mismatch" | "reader_locked" => R::WrongPin,
        "credential_not_yet_valid"
        | "code_not_yet_active"
        | "access_not_yet_valid"
        | "event_not_started" => R::NotYetValid,
        "credential_expired" | "code_expired" | "code_used" | "code_removed" | "access_expired"
        | "membership_expired" | "event_ended" => R::Expired,
        "outside_schedule" | "holiday_closed" | "access_not_in_force" => R::OutsideSchedule,
        "credential_not_for_door" | "no_access" | "instructors_not_allowed" | "unknown_door" => {
            R::NoAccessToDoor
        }
        "auth_type_not_allowed" => R::WrongAuthType,
        "site_lockdown" | "door_lockdown" => R::Lockdown,
        "door_inactive" => R::DoorInactive,
        _ => R::Other,
    }
}

/// The hub's data, outbox and hooks, as the sync engine sees them.
pub struct CloudState {
    store: Arc<Store>,
    hooks: Hooks,
    /// The view of the store's data set (shared with the daemon); `None`
    /// before the first snapshot.
    view: Option<Arc<View>>,
    revision: Option<u64>,
    pending: Option<PendingSnapshot>,
    reported_codes: HashMap<String, CodeStatus>,
    reported_expired: HashSet<String>,
}

impl std::fmt::Debug for CloudState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudState")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// A snapshot being received: its records are staged in the store.
struct PendingSnapshot {
    writer: SnapshotWriter<'static>,
    has_site: bool,
    /// The first id given twice: the commit refuses the snapshot (as it
    /// refuses any other inconsistency, once every chunk is in).
    duplicate: Option<pb::EntityKey>,
}

/// Runs `$body` with `$x` bound to the record inside any [`Record`].
macro_rules! each_record {
    ($record:expr, $x:ident => $body:expr) => {
        match $record {
            Record::Site($x) => $body,
            Record::Door($x) => $body,
            Record::User($x) => $body,
            Record::Credential($x) => $body,
            Record::AccessCode($x) => $body,
            Record::Schedule($x) => $body,
            Record::Holiday($x) => $body,
            Record::Access($x) => $body,
            Record::Facility($x) => $body,
            Record::Event($x) => $body,
            Record::Member($x) => $body,
        }
    };
}

fn site_data_err(e: site_data::SiteDataError) -> LocalError {
    use site_data::SiteDataError as E;
    match e {
        E::Model(e) => model_err(e),
        E::MissingSite | E::NoData => LocalError::rejected(
            pb::ErrorCode::Invalid,
            None,
            "the data set has no site record",
        ),
        E::Store(StoreError::RevisionMismatch { .. }) => LocalError::rejected(
            pb::ErrorCode::RevisionGap,
            None,
            "the store is at another revision",
        ),
        E::DuplicateKey { collection, key } => LocalError::rejected(
            pb::ErrorCode::Inconsistent,
            None,
            format!("two records in {collection} have the key {key:?}"),
        ),
        e => store_err(e),
    }
}

fn store_err(e: impl std::fmt::Display) -> LocalError {
    LocalError::Store(e.to_string())
}

fn convert_err(e: ConvertError) -> LocalError {
    LocalError::rejected(pb::ErrorCode::Invalid, e.key(), e.to_string())
}

fn model_err(e: ModelError) -> LocalError {
    let record = match &e {
        ModelError::DuplicateId(r)
        | ModelError::TemporaryWithoutEnd(r)
        | ModelError::EndsBeforeStart(r)
        | ModelError::MissingPin(r) => Some(r),
        ModelError::UnknownReference { record, .. }
        | ModelError::Schedule { record, .. }
        | ModelError::InvalidPin { record, .. }
        | ModelError::InvalidCard { record, .. }
        | ModelError::DuplicateCard { record, .. }
        | ModelError::DuplicatePin { record, .. }
        | ModelError::DuplicateIdentifier { record, .. } => Some(record),
        _ => None,
    };
    let key = record.map(|r| pb::EntityKey {
        kind: convert::entity_kind(r.kind) as i32,
        id: r.id.clone(),
    });
    LocalError::rejected(pb::ErrorCode::Inconsistent, key, e.to_string())
}

fn time(t: Timestamp) -> pb::Time {
    pb::Time {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// A code status in the contract's terms.
pub fn code_status(id: &str, status: &CodeStatus, revision: u64) -> pb::EntityStatus {
    use pb::StatusKind as S;
    let (kind, reason) = match status {
        CodeStatus::Unset => (S::CodeUnset, String::new()),
        CodeStatus::Set => (S::CodeSet, String::new()),
        CodeStatus::Removed { why } => (
            S::CodeRemoved,
            match why {
                RemovedReason::Expired => "expired",
                RemovedReason::Used => "used",
                RemovedReason::Deleted => "deleted",
            }
            .to_owned(),
        ),
        CodeStatus::Failed { reason } => (
            S::CodeFailed,
            match reason {
                CodeFailure::UnknownDoor => "unknown_door".to_owned(),
                CodeFailure::NoKeypad => "no_keypad".to_owned(),
                CodeFailure::InvalidPin => "invalid_pin".to_owned(),
                CodeFailure::EndsBeforeStart => "ends_before_start".to_owned(),
                CodeFailure::DuplicatePin { other } => format!("duplicate_pin:{other}"),
                CodeFailure::PinUsedByCredential { credential } => {
                    format!("pin_used_by_credential:{credential}")
                }
            },
        ),
    };
    pb::EntityStatus {
        key: Some(pb::EntityKey {
            kind: pb::EntityKind::AccessCode as i32,
            id: id.to_owned(),
        }),
        kind: kind as i32,
        reason,
        revision,
        ..pb::EntityStatus::default()
    }
}

impl CloudState {
    /// Loads the current data set from the store. A store without a usable
    /// data set counts as "no data" (the engine asks for a snapshot).
    pub fn new(store: Arc<Store>, hooks: Hooks) -> Self {
        let current = match site_data::load_view(&store) {
            Ok((view, revision)) => Some((Arc::new(view), revision)),
            Err(e) => {
                if !e.needs_full_resync() {
                    tracing::warn!("cannot load the stored data set ({e}): asking for a snapshot");
                }
                None
            }
        };
        Self::with_view(store, hooks, current)
    }

    /// Starts from a view already built from the store's data set, with
    /// its revision (`None`: no usable data set, the engine asks for a
    /// snapshot). The view is shared, not copied.
    pub fn with_view(store: Arc<Store>, hooks: Hooks, current: Option<(Arc<View>, u64)>) -> Self {
        let (view, revision) = match current {
            Some((view, revision)) => (Some(view), Some(revision)),
            None => (None, None),
        };
        Self {
            store,
            hooks,
            view,
            revision,
            pending: None,
            reported_codes: HashMap::new(),
            reported_expired: HashSet::new(),
        }
    }

    /// The current view, when there is a data set. It keeps the small
    /// collections as records ([`View::data`]); users, credentials,
    /// accesses, events and members are in the store.
    pub fn view(&self) -> Option<&Arc<View>> {
        self.view.as_ref()
    }

    fn clock(&self) -> Timestamp {
        (self.hooks.clock)()
    }

    /// Statuses of the given access codes (all when `None`) and of expired
    /// temporary accesses; with `only_changed`, those that differ from what
    /// was reported.
    fn collect_statuses(
        &mut self,
        codes: Option<&HashSet<String>>,
        only_changed: bool,
    ) -> Vec<pb::EntityStatus> {
        let now = self.clock();
        let revision = self.revision.unwrap_or(0);
        let Some(view) = &self.view else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, status) in view.code_statuses(now) {
            if codes.is_some_and(|c| !c.contains(id.as_str())) {
                continue;
            }
            let changed = self.reported_codes.get(id.as_str()) != Some(&status);
            if changed || !only_changed {
                out.push(code_status(id.as_str(), &status, revision));
                self.reported_codes.insert(id.to_string(), status);
            }
        }
        for id in view.expired_temporary_accesses(now) {
            if !only_changed || !self.reported_expired.contains(id) {
                self.reported_expired.insert(id.to_owned());
                out.push(pb::EntityStatus {
                    key: Some(pb::EntityKey {
                        kind: pb::EntityKind::Access as i32,
                        id: id.to_owned(),
                    }),
                    kind: pb::StatusKind::AccessExpired as i32,
                    reason: "valid_to passed".into(),
                    revision,
                    ..pb::EntityStatus::default()
                });
            }
        }
        out
    }

    /// Drops the store's records of one-time code uses whose code the new
    /// data set no longer has (the cloud deleted it): a code the cloud
    /// makes again under that id starts unused. Already applied, so a
    /// failure here is only logged (the record is ignored meanwhile: a
    /// view marks only codes it has).
    fn forget_deleted_code_uses(&self, view: &View) {
        match self.store.forget_code_uses(|id| view.has_code(id)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(codes = n, "uses of deleted one-time codes forgotten"),
            Err(e) => tracing::warn!("cannot forget the uses of deleted codes: {e}"),
        }
    }

    fn install(&mut self, view: View, revision: u64) {
        let view = Arc::new(view);
        // Ours first: the old view goes as soon as the daemon lets it go.
        self.view = Some(Arc::clone(&view));
        self.revision = Some(revision);
        (self.hooks.on_new_data)(view, revision);
    }
}

impl LocalState for CloudState {
    fn revision(&self) -> Option<u64> {
        self.revision
    }

    fn apply_revision(&mut self, r: &pb::Revision) -> Result<Vec<pb::EntityStatus>, LocalError> {
        if self.view.is_none() {
            return Err(LocalError::rejected(
                pb::ErrorCode::RevisionGap,
                None,
                "no data set to apply a revision to",
            ));
        }
        let ops = convert::parse_changes(r.changes.clone()).map_err(convert_err)?;
        let mut touched_codes = HashSet::new();
        let mut deleted_codes = Vec::new();
        let mut change = site_data::DataChange::new(r.base_revision, r.revision);
        for op in &ops {
            match op {
                ChangeOp::Upsert(record) => {
                    let key = record.key();
                    if let Record::AccessCode(c) = record {
                        touched_codes.insert(c.id.to_string());
                    }
                    let Some((collection, k)) = convert::store_key(&key) else {
                        continue;
                    };
                    if let Record::Credential(c) = record {
                        // Stored in chunks: resolved against the store below.
                        change.upsert_credential(c.clone());
                    } else {
                        each_record!(record, x => change.upsert(collection, k, x))
                            .map_err(site_data_err)?;
                    }
                }
                ChangeOp::Delete(key) => {
                    if key.kind == pb::EntityKind::AccessCode as i32 {
                        deleted_codes.push(key.id.clone());
                    }
                    if let Some((collection, k)) = convert::store_key(key) {
                        change.delete(collection, &k);
                    }
                }
            }
        }
        let change = change.resolve(&self.store).map_err(site_data_err)?;
        // The whole data set as it would be, checked, before anything is
        // written: a bad revision changes nothing.
        let (view, _) =
            site_data::load_view_with_changes(&self.store, &change).map_err(site_data_err)?;
        match self.store.apply(&change) {
            Ok(()) => {}
            Err(StoreError::RevisionMismatch { .. }) => {
                return Err(LocalError::rejected(
                    pb::ErrorCode::RevisionGap,
                    None,
                    "the store is at another revision",
                ))
            }
            Err(e) => return Err(store_err(e)),
        }
        self.forget_deleted_code_uses(&view);
        self.install(view, r.revision);
        let mut statuses = self.collect_statuses(Some(&touched_codes), false);
        for id in deleted_codes {
            self.reported_codes.remove(&id);
            statuses.push(code_status(
                &id,
                &CodeStatus::Removed {
                    why: RemovedReason::Deleted,
                },
                r.revision,
            ));
        }
        Ok(statuses)
    }

    fn snapshot_begin(&mut self, revision: u64) -> Result<(), LocalError> {
        // An unfinished one is dropped (discarded) first.
        self.pending = None;
        let writer = Store::begin_shared_snapshot(&self.store, revision).map_err(store_err)?;
        self.pending = Some(PendingSnapshot {
            writer,
            has_site: false,
            duplicate: None,
        });
        Ok(())
    }

    fn snapshot_chunk(&mut self, entities: Vec<pb::Entity>) -> Result<(), LocalError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(LocalError::rejected(
                pb::ErrorCode::SnapshotBroken,
                None,
                "a chunk without a snapshot",
            ));
        };
        for e in entities {
            let record = convert::from_proto(e).map_err(convert_err)?;
            let key = record.key();
            if let Record::Site(_) = record {
                if pending.has_site {
                    return Err(LocalError::rejected(
                        pb::ErrorCode::Invalid,
                        Some(key),
                        "two site records in one snapshot",
                    ));
                }
                pending.has_site = true;
            }
            let Some((collection, k)) = convert::store_key(&key) else {
                continue;
            };
            if pending.duplicate.is_some() {
                continue;
            }
            let fresh =
                each_record!(&record, x => site_data::stage(&mut pending.writer, collection, &k, x))
                    .map_err(site_data_err)?;
            if !fresh {
                pending.duplicate = Some(key);
            }
        }
        Ok(())
    }

    fn snapshot_commit(&mut self) -> Result<Vec<pb::EntityStatus>, LocalError> {
        // Taken: whatever happens below, this snapshot is finished (an
        // error drops the writer, which discards the staged records).
        let Some(PendingSnapshot {
            mut writer,
            has_site,
            duplicate,
        }) = self.pending.take()
        else {
            return Err(LocalError::rejected(
                pb::ErrorCode::SnapshotBroken,
                None,
                "no snapshot to commit",
            ));
        };
        if !has_site {
            return Err(LocalError::rejected(
                pb::ErrorCode::Invalid,
                None,
                "the snapshot has no site record",
            ));
        }
        if let Some(key) = duplicate {
            return Err(LocalError::rejected(
                pb::ErrorCode::Inconsistent,
                Some(key),
                "two records of one kind share this id",
            ));
        }
        site_data::seal(&mut writer).map_err(site_data_err)?;
        // Checked from the staged records while the old data set is still
        // in force.
        let (view, revision) = site_data::staged_view(&writer).map_err(site_data_err)?;
        writer.commit().map_err(store_err)?;
        self.forget_deleted_code_uses(&view);
        self.install(view, revision);
        self.reported_codes.clear();
        self.reported_expired.clear();
        Ok(self.collect_statuses(None, false))
    }

    fn snapshot_abort(&mut self) {
        self.pending = None;
    }

    fn outbox_peek(
        &mut self,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<pb::AccessEvent>, LocalError> {
        let raw = self.store.outbox().peek(from_seq, max).map_err(store_err)?;
        Ok(raw
            .into_iter()
            .map(|(seq, bytes)| match HubEvent::decode(&bytes) {
                Ok(event) => access_event(seq, &event),
                // Never block the log behind one bad record: send its
                // number with an alarm so the cloud sees the gap explained.
                Err(_) => pb::AccessEvent {
                    seq,
                    kind: pb::EventKind::Alarm as i32,
                    reason_key: "unreadable_event".into(),
                    message: "unreadable outbox record".into(),
                    ..pb::AccessEvent::default()
                },
            })
            .collect())
    }

    fn outbox_ack(&mut self, through_seq: u64) -> Result<(), LocalError> {
        self.store
            .outbox()
            .ack_through(through_seq)
            .map(|_| ())
            .map_err(store_err)
    }

    fn health(&mut self) -> pb::Health {
        let mut h = pb::Health {
            clock: Some(time(self.clock())),
            revision: self.revision,
            outbox_depth: self.store.outbox().depth(),
            ..pb::Health::default()
        };
        if let Some(view) = &self.view {
            let c = view.counts();
            h.cache = Some(pb::CacheCounts {
                doors: c.doors as u64,
                users: c.users as u64,
                credentials: c.credentials as u64,
                access_codes: c.access_codes as u64,
                schedules: c.schedules as u64,
                holidays: c.holidays as u64,
                accesses: c.accesses as u64,
                facilities: c.facilities as u64,
                events: c.events as u64,
                members: c.members as u64,
            });
        }
        (self.hooks.health)(&mut h);
        h
    }

    fn statuses(&mut self, all: bool) -> Vec<pb::EntityStatus> {
        self.collect_statuses(None, !all)
    }

    fn command(&mut self, command: &pb::Command) -> pb::CommandResult {
        (self.hooks.command)(command)
    }

    fn now(&self) -> pb::Time {
        time(self.clock())
    }
}

#[cfg(test)]
mod tests;
