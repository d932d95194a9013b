//! What the sync engine needs from the hub: [`LocalState`].

use hub_proto::v1::{
    entity, AccessEvent, Command, CommandResult, Entity, EntityKey, EntityKind, EntityStatus,
    ErrorCode, Health, Revision, Time,
};
use thiserror::Error;

/// Why the hub did not take a revision, a snapshot or an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LocalError {
    /// The data is unusable (an invalid field, or a data set that would be
    /// inconsistent): nothing was changed. Reported to the cloud as a
    /// rejected status with `error` and `key`.
    #[error("rejected ({error:?}): {reason}")]
    Rejected {
        /// `ERROR_CODE_INVALID` or `ERROR_CODE_INCONSISTENT` (or another
        /// code that fits better).
        error: ErrorCode,
        /// The record at fault, when one is.
        key: Option<EntityKey>,
        /// What is wrong, for people; never a secret (no PIN, no card
        /// number).
        reason: String,
    },
    /// The store failed: nothing was changed; the cloud may retry.
    #[error("store failure: {0}")]
    Store(String),
}

impl LocalError {
    /// A rejection of a whole message or of one record.
    pub fn rejected(error: ErrorCode, key: Option<EntityKey>, reason: impl Into<String>) -> Self {
        LocalError::Rejected {
            error,
            key,
            reason: reason.into(),
        }
    }
}

/// The hub's side of the sync: its data set, its outbox, its doors. The
/// hub implements it over its store (`hub::cloud`); tests implement it in
/// memory. Every method is called from the sync engine's single task, one
/// at a time; none may block on the network.
pub trait LocalState {
    /// The revision of the data set; `None` when the hub has none.
    fn revision(&self) -> Option<u64>;

    /// Applies a revision whose `base_revision` is [`Self::revision`], all
    /// changes or none, and returns the statuses the change caused (access
    /// codes set, failed...).
    fn apply_revision(&mut self, revision: &Revision) -> Result<Vec<EntityStatus>, LocalError>;

    /// Starts receiving a full snapshot at `revision`; an unfinished one is
    /// dropped.
    fn snapshot_begin(&mut self, revision: u64) -> Result<(), LocalError>;

    /// Takes the entities of the next chunk of the snapshot.
    fn snapshot_chunk(&mut self, entities: Vec<Entity>) -> Result<(), LocalError>;

    /// Replaces the data set with the snapshot, atomically, and returns the
    /// statuses of the new data set (every access code's status...). On an
    /// error the old data set stays.
    fn snapshot_commit(&mut self) -> Result<Vec<EntityStatus>, LocalError>;

    /// Drops an unfinished snapshot; the data set stays as it was.
    fn snapshot_abort(&mut self);

    /// Up to `max` outbox events from sequence number `from_seq` on, in
    /// order, each with its `seq` set.
    fn outbox_peek(&mut self, from_seq: u64, max: usize) -> Result<Vec<AccessEvent>, LocalError>;

    /// Deletes every outbox event up to and including `through_seq`.
    fn outbox_ack(&mut self, through_seq: u64) -> Result<(), LocalError>;

    /// The hub's health now (`hub_id` is filled in by the engine).
    fn health(&mut self) -> Health;

    /// Statuses to report: with `all`, every current one (access codes,
    /// expired temporary accesses); without, those that changed since the
    /// last call (a code whose `starts_at` or `ends_at` passed...).
    fn statuses(&mut self, all: bool) -> Vec<EntityStatus>;

    /// Carries out a door or reader command (momentary unlock, lockdown,
    /// door mode, reader output). The engine handles resync and status
    /// requests itself and fills in `hub_id`, `correlation_id` and `time`.
    fn command(&mut self, command: &Command) -> CommandResult;

    /// The wall clock, for time stamps in messages.
    fn now(&self) -> Time;
}

/// The key of an entity (see `EntityKey` in the contract); `None` when the
/// entity has no kind set.
pub fn entity_key(entity: &Entity) -> Option<EntityKey> {
    use entity::Kind as K;
    let (kind, id) = match entity.kind.as_ref()? {
        K::Site(r) => (EntityKind::Site, r.id.clone()),
        K::Door(r) => (EntityKind::Door, r.id.clone()),
        K::User(r) => (EntityKind::User, r.id.clone()),
        K::Credential(r) => (EntityKind::Credential, r.id.clone()),
        K::AccessCode(r) => (EntityKind::AccessCode, r.id.clone()),
        K::Schedule(r) => (EntityKind::Schedule, r.id.clone()),
        K::Holiday(r) => (EntityKind::Holiday, format!("{}/{}", r.date, r.name)),
        K::Access(r) => (EntityKind::Access, r.id.clone()),
        K::Facility(r) => (EntityKind::Facility, r.id.clone()),
        K::Event(r) => (EntityKind::Event, r.id.clone()),
        K::Member(r) => (EntityKind::Member, r.user.clone()),
    };
    Some(EntityKey {
        kind: kind as i32,
        id,
    })
}
