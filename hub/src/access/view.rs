//! The read-only, indexed form of a [`DataSet`] that decisions run against.
//!
//! [`View::build`] takes a data set, checks it (parse, don't validate: every
//! bad record is a [`ModelError`] naming the record), resolves every id to a
//! dense index and builds the lookup tables, so that
//! [`super::decide()`] is a few hash lookups:
//!
//! | lookup | table |
//! |---|---|
//! | card (facility, number) / raw bytes | card credential or Hive door_access_id → credential or user |
//! | PIN | PIN credential |
//! | (door, PIN) | access codes, in precedence order |
//! | mobile key (credential id or token) | mobile-key credential |
//! | door_access_id, barcode_id, acs_id, user id | user |
//! | user | accesses, events, memberships, member flag, summary |
//! | door | accesses, lock/unlock entries |
//!
//! The view owns the data set ([`View::data`], [`View::into_data`]) so the
//! store can persist exactly what was indexed; a view built straight from
//! the store ([`crate::site_data::load_view`], through the same
//! `ViewBuilder`) keeps only the small collections as records. Users and
//! credentials live in compact columns (`compact.rs`): a sorted 12-byte card
//! table, front-coded credential ids, user ids and names in arenas, so a
//! million credentials take about 30 MiB. A few changes the hub makes
//! itself are cheap updates here, without a rebuild:
//! [`View::record_code_use`], [`View::set_site_lockdown`],
//! [`View::set_door_lockdown`]. Access code statuses (for sync to report)
//! come from [`View::code_status`] and [`View::code_statuses`].
//!
//! Time zones: [`View::build`] resolves the site's zone in the time zone
//! database bundled into the binary (no file I/O, the same answer on every
//! box, works on a Pi image without tzdata and without network);
//! [`View::build_with_tzdb`] takes another database, such as the system's
//! (`jiff::tz::db()`), when the caller prefers the OS's tzdata updates.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Index;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;
use serde::Serialize;
use thiserror::Error;

use super::compact::{CardTable, FrontCoded, Lists, PackedCard, Sparse, StrArena, StrIndex};
use super::decide::{MembershipSummary, UserSummary};
use super::model::{
    Access, AccessCode, AccessCodeId, AccessKind, AccessMethod, AccessStatus, AuthTypes, CardError,
    CardKey, CardNumber, Credential, CredentialId, DataSet, Door, DoorId, Event, Facility, Holiday,
    Member, Pin, PinError, RawCard, Schedule, Site, User, UserId,
};
use super::schedule::{CompiledSchedule, HolidayCalendar, ScheduleError};

/// The kind of a record, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The site.
    Site,
    /// A door.
    Door,
    /// A user.
    User,
    /// A Seam ACS credential.
    Credential,
    /// A Seam access code.
    AccessCode,
    /// A schedule.
    Schedule,
    /// An Entryfy access.
    Access,
    /// A facility.
    Facility,
    /// An event.
    Event,
    /// A member.
    Member,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Site => "site",
            RecordKind::Door => "door",
            RecordKind::User => "user",
            RecordKind::Credential => "credential",
            RecordKind::AccessCode => "access code",
            RecordKind::Schedule => "schedule",
            RecordKind::Access => "access",
            RecordKind::Facility => "facility",
            RecordKind::Event => "event",
            RecordKind::Member => "member",
        })
    }
}

/// A record named in an error: its kind and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// The kind of record.
    pub kind: RecordKind,
    /// Its id.
    pub id: String,
}

impl RecordRef {
    fn new(kind: RecordKind, id: &str) -> Self {
        Self {
            kind,
            id: id.to_owned(),
        }
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// A data set that cannot be used; each names the record at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// The site's time zone is not in the time zone database.
    #[error("site time zone {name:?} is not a known IANA time zone")]
    TimeZone {
        /// The name given.
        name: String,
    },
    /// Two records of one kind share an id.
    #[error("two records are {0}")]
    DuplicateId(RecordRef),
    /// A record refers to a user, schedule or facility that is not in the
    /// data set. (Doors of other hubs in a list of doors are ignored, and an
    /// access code on an unknown door fails with a status instead.)
    #[error("{record} refers to unknown {target}")]
    UnknownReference {
        /// The referring record.
        record: RecordRef,
        /// The missing record.
        target: RecordRef,
    },
    /// A schedule is not usable.
    #[error("{record}: {source}")]
    Schedule {
        /// The schedule.
        record: RecordRef,
        /// What is wrong.
        source: ScheduleError,
    },
    /// Two holidays on one date.
    #[error("holidays: {0}")]
    Holidays(ScheduleError),
    /// A temporary access without `valid_to`.
    #[error("{0} is temporary but has no valid_to")]
    TemporaryWithoutEnd(RecordRef),
    /// A validity window that ends at or before its start.
    #[error("{0} ends before it starts")]
    EndsBeforeStart(RecordRef),
    /// A PIN code credential without a PIN.
    #[error("{0} is a PIN code credential without a code")]
    MissingPin(RecordRef),
    /// A PIN that is not 1 to 16 digits.
    #[error("{record} has an invalid PIN: {source}")]
    InvalidPin {
        /// The credential.
        record: RecordRef,
        /// What is wrong.
        source: PinError,
    },
    /// A card number that does not parse.
    #[error("{record} has an invalid card number: {source}")]
    InvalidCard {
        /// The credential.
        record: RecordRef,
        /// What is wrong.
        source: CardError,
    },
    /// Two holders (credentials, or a credential and another user's
    /// door_access_id) of the same card.
    #[error("{record} and {other} have the same card number")]
    DuplicateCard {
        /// The later holder.
        record: RecordRef,
        /// The earlier holder.
        other: RecordRef,
    },
    /// Two PIN credentials with the same PIN.
    #[error("{record} and {other} have the same PIN")]
    DuplicatePin {
        /// The later credential.
        record: RecordRef,
        /// The earlier credential.
        other: RecordRef,
    },
    /// Two users (or mobile keys) with the same identifier value.
    #[error("{record} and {other} have the same {field}")]
    DuplicateIdentifier {
        /// `door_access_id`, `barcode_id`, `acs_id` or `mobile key`.
        field: &'static str,
        /// The later record.
        record: RecordRef,
        /// The earlier record.
        other: RecordRef,
    },
    /// More records of one kind than the indexes hold (2^32 - 1).
    #[error("too many {0} records")]
    TooMany(RecordKind),
}

/// An access code's status at the hub, as sync reports it (Seam's
/// `unset`, `set`, `removing`/deleted, and failures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CodeStatus {
    /// Not yet active (before `starts_at`).
    Unset,
    /// Enforced: the PIN opens the door.
    Set,
    /// No longer enforced.
    Removed {
        /// Why.
        why: RemovedReason,
    },
    /// Cannot be enforced.
    Failed {
        /// Why.
        reason: CodeFailure,
    },
}

/// Why an access code was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    /// Its `ends_at` passed.
    Expired,
    /// A one-time code was used.
    Used,
    /// The cloud deleted it.
    Deleted,
}

/// Why an access code cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum CodeFailure {
    /// Its door is not a door of this hub.
    UnknownDoor,
    /// Its door has no keypad.
    NoKeypad,
    /// The code is not 1 to 16 digits.
    InvalidPin,
    /// `ends_at` is not after `starts_at`.
    EndsBeforeStart,
    /// An older code with the same PIN is set on the same door.
    DuplicatePin {
        /// The code that holds the PIN.
        other: AccessCodeId,
    },
    /// A PIN code credential already uses the PIN.
    PinUsedByCredential {
        /// The credential.
        credential: CredentialId,
    },
}

impl fmt::Display for CodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeFailure::UnknownDoor => f.write_str("door not found"),
            CodeFailure::NoKeypad => f.write_str("door has no keypad"),
            CodeFailure::InvalidPin => f.write_str("code is not 1 to 16 digits"),
            CodeFailure::EndsBeforeStart => f.write_str("ends before it starts"),
            CodeFailure::DuplicatePin { other } => {
                write!(f, "PIN already set on this door by code {other}")
            }
            CodeFailure::PinUsedByCredential { credential } => {
                write!(f, "PIN already used by credential {credential}")
            }
        }
    }
}

/// A user index by one identifier's text.
type IdIndex = HashMap<Box<str>, u32>;

/// Who holds a card value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardHolder {
    /// A card credential.
    Credential(u32),
    /// A user by Hive door_access_id.
    User(u32),
}

#[derive(Clone)]
pub(crate) struct DoorEntry {
    pub(crate) id: DoorId,
    pub(crate) name: Arc<str>,
    /// Accesses listing this door, ascending.
    pub(crate) accesses: Box<[u32]>,
    /// Lock/unlock entries: (access, position in its doors).
    pub(crate) lock_unlock: Box<[(u32, u32)]>,
}

#[derive(Clone)]
pub(crate) struct MembershipEntry {
    pub(crate) id: u64,
    pub(crate) type_id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) expires: Option<Timestamp>,
    /// Local doors, ascending.
    pub(crate) doors: Box<[u32]>,
}

/// What only some users have: Hive memberships.
#[derive(Clone)]
pub(crate) struct UserEntry {
    pub(crate) memberships: Vec<MembershipEntry>,
}

static NO_MEMBERSHIPS: UserEntry = UserEntry {
    memberships: Vec::new(),
};

const MEMBER: u8 = 1;
const INSTRUCTOR: u8 = 2;
const EXTENDED_UNLOCK: u8 = 4;

/// Users by index, column by column: ids and names in string arenas, flags,
/// accesses and events as lists in one buffer each, memberships only where
/// there are some. About 30 bytes a user plus the text (no allocation per
/// user). `users[u]` gives the memberships.
#[derive(Clone)]
pub(crate) struct Users {
    ids: StrArena,
    id_index: StrIndex,
    /// First and last names, each distinct name once.
    names: StrArena,
    first_last: Vec<[u32; 2]>,
    flags: Vec<u8>,
    accesses: Lists,
    events: Lists,
    extras: Sparse<UserEntry>,
}

impl Users {
    fn new() -> Self {
        Self {
            ids: StrArena::default(),
            id_index: StrIndex::default(),
            names: StrArena::default(),
            first_last: Vec::new(),
            flags: Vec::new(),
            accesses: Lists::default(),
            events: Lists::default(),
            extras: Sparse::new(&NO_MEMBERSHIPS),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flags.len()
    }

    fn flag(&self, u: u32, flag: u8) -> bool {
        self.flags.get(u as usize).is_some_and(|f| f & flag != 0)
    }

    pub(crate) fn is_member(&self, u: u32) -> bool {
        self.flag(u, MEMBER)
    }

    pub(crate) fn is_instructor(&self, u: u32) -> bool {
        self.flag(u, INSTRUCTOR)
    }

    pub(crate) fn extended_unlock(&self, u: u32) -> bool {
        self.flag(u, EXTENDED_UNLOCK)
    }

    /// Accesses listing the user, ascending.
    pub(crate) fn accesses(&self, u: u32) -> &[u32] {
        self.accesses.get(u)
    }

    /// Events the user attends, ascending.
    pub(crate) fn events(&self, u: u32) -> &[u32] {
        self.events.get(u)
    }

    /// The user as a decision reports it. Built per decision from the
    /// compact columns (a few small allocations, well under a microsecond)
    /// instead of kept per user: 100,000 kept summaries cost about 13 MiB.
    pub(crate) fn summary(&self, u: u32) -> Arc<UserSummary> {
        let [first, last] = self.first_last.get(u as usize).copied().unwrap_or_default();
        Arc::new(UserSummary {
            id: UserId::from(self.ids.get(u)),
            first_name: self.names.get(first).into(),
            last_name: self.names.get(last).into(),
            is_instructor: self.is_instructor(u),
            memberships: self
                .extras
                .get(u)
                .memberships
                .iter()
                .map(|m| MembershipSummary {
                    id: m.id,
                    type_id: m.type_id,
                    type_name: m.name.clone(),
                    expires: m.expires,
                })
                .collect(),
        })
    }
}

impl Index<usize> for Users {
    type Output = UserEntry;

    fn index(&self, u: usize) -> &UserEntry {
        u32::try_from(u).map_or(&NO_MEMBERSHIPS, |u| self.extras.get(u))
    }
}

/// What only some credentials have: a validity window, allowed entrances.
#[derive(Clone)]
pub(crate) struct CredentialEntry {
    pub(crate) starts_at: Option<Timestamp>,
    pub(crate) ends_at: Option<Timestamp>,
    /// `None`: no restriction; `Some`: local doors allowed, ascending.
    pub(crate) entrances: Option<Box<[u32]>>,
}

static UNRESTRICTED: CredentialEntry = CredentialEntry {
    starts_at: None,
    ends_at: None,
    entrances: None,
};

/// Credentials by index: ids front-coded, the holder's index, and the
/// window and entrances only where set. `credentials[c]` gives the window
/// and entrances.
#[derive(Clone)]
pub(crate) struct Credentials {
    ids: FrontCoded,
    users: Vec<u32>,
    extras: Sparse<CredentialEntry>,
}

impl Credentials {
    fn new() -> Self {
        Self {
            ids: FrontCoded::default(),
            users: Vec::new(),
            extras: Sparse::new(&UNRESTRICTED),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// The holder.
    pub(crate) fn user(&self, c: u32) -> u32 {
        self.users.get(c as usize).copied().unwrap_or(u32::MAX)
    }

    /// The credential's id (decoded: one allocation).
    pub(crate) fn id(&self, c: u32) -> CredentialId {
        CredentialId::from(self.ids.get(c).unwrap_or_default())
    }
}

impl Index<usize> for Credentials {
    type Output = CredentialEntry;

    fn index(&self, c: usize) -> &CredentialEntry {
        u32::try_from(c).map_or(&UNRESTRICTED, |c| self.extras.get(c))
    }
}

#[derive(Clone)]
pub(crate) struct AccessDoorEntry {
    pub(crate) door: u32,
    pub(crate) lock_unlock: bool,
    pub(crate) first_card_unlock: bool,
    pub(crate) in_auth: AuthTypes,
    pub(crate) out_auth: AuthTypes,
}

#[derive(Clone)]
pub(crate) struct AccessEntry {
    pub(crate) name: Arc<str>,
    pub(crate) status: AccessStatus,
    pub(crate) valid_from: Option<Timestamp>,
    pub(crate) valid_to: Option<Timestamp>,
    pub(crate) schedule: Option<u32>,
    /// By door, ascending.
    pub(crate) doors: Box<[AccessDoorEntry]>,
    /// Ascending.
    pub(crate) users: Box<[u32]>,
}

impl AccessEntry {
    pub(crate) fn door(&self, door: u32) -> Option<&AccessDoorEntry> {
        self.doors
            .binary_search_by_key(&door, |d| d.door)
            .ok()
            .map(|i| &self.doors[i])
    }
}

#[derive(Clone)]
pub(crate) struct EventEntry {
    pub(crate) name: Arc<str>,
    pub(crate) starts_at: Timestamp,
    pub(crate) ends_at: Timestamp,
    /// Ascending.
    pub(crate) doors: Box<[u32]>,
}

#[derive(Clone)]
pub(crate) struct CodeEntry {
    pub(crate) id: AccessCodeId,
    pub(crate) name: Arc<str>,
    /// A failure known from the data alone.
    pub(crate) failure: Option<CodeFailure>,
    pub(crate) door: Option<u32>,
    pub(crate) pin: Option<Pin>,
    pub(crate) starts_at: Option<Timestamp>,
    pub(crate) ends_at: Option<Timestamp>,
    pub(crate) one_time_use: bool,
    pub(crate) used_at: UsedAt,
    pub(crate) deleted: bool,
}

/// When a one-time code was used: milliseconds since the epoch in an
/// atomic slot, 0 while unused. Atomic so that the one view the daemon
/// shares (with the cloud sync) records a use through `&self`, and two
/// decisions racing for one code cannot both win ([`UsedAt::claim`]).
/// A clone copies the current value.
#[derive(Debug, Default)]
pub(crate) struct UsedAt(AtomicI64);

impl UsedAt {
    fn new(at: Option<Timestamp>) -> Self {
        UsedAt(AtomicI64::new(at.map_or(0, slot_ms)))
    }

    /// When the code was used, if it was.
    pub(crate) fn get(&self) -> Option<Timestamp> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            ms => Timestamp::from_millisecond(ms).ok(),
        }
    }

    /// Marks the code used at `at` unless it already is. `Err` carries
    /// the earlier use: this caller lost.
    pub(crate) fn claim(&self, at: Timestamp) -> Result<(), Timestamp> {
        match self
            .0
            .compare_exchange(0, slot_ms(at), Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(ms) => Err(Timestamp::from_millisecond(ms).unwrap_or(at)),
        }
    }
}

/// `at` in milliseconds, never 0 (0 means unused; a use at the epoch
/// itself counts 1 ms later).
fn slot_ms(at: Timestamp) -> i64 {
    match at.as_millisecond() {
        0 => 1,
        ms => ms,
    }
}

impl Clone for UsedAt {
    fn clone(&self) -> Self {
        UsedAt(AtomicI64::new(self.0.load(Ordering::Acquire)))
    }
}

/// Lockdowns set by commands rather than by the data set: atomics, so the
/// one view the process shares (doors, HTTP check, cloud sync) changes in
/// place instead of being copied while a lockdown is in force.
struct CommandLockdown {
    site: AtomicBool,
    /// By door index.
    doors: Box<[AtomicBool]>,
}

impl CommandLockdown {
    fn new(doors: usize) -> Self {
        Self {
            site: AtomicBool::new(false),
            doors: (0..doors).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

impl Clone for CommandLockdown {
    fn clone(&self) -> Self {
        Self {
            site: AtomicBool::new(self.site.load(Ordering::Relaxed)),
            doors: self
                .doors
                .iter()
                .map(|d| AtomicBool::new(d.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// The indexed, checked data set a decision reads. Build it once per data
/// set ([`View::build`], or from the store with
/// [`crate::site_data::load_view`]); share it read-only between decisions.
#[derive(Clone)]
pub struct View {
    data: DataSet,
    /// Lockdowns set by cloud commands, over the data set's own flags.
    command_lockdown: CommandLockdown,
    pub(crate) tz: TimeZone,
    pub(crate) holidays: HolidayCalendar,
    pub(crate) doors: Vec<DoorEntry>,
    door_index: HashMap<DoorId, u32>,
    pub(crate) users: Users,
    pub(crate) credentials: Credentials,
    pub(crate) schedules: Vec<CompiledSchedule>,
    pub(crate) accesses: Vec<AccessEntry>,
    pub(crate) events: Vec<EventEntry>,
    pub(crate) codes: Vec<CodeEntry>,
    code_index: HashMap<AccessCodeId, u32>,
    /// Card credentials by packed card, sorted (12 bytes a card).
    cards: CardTable,
    /// Hive door_access_ids that are card values, by packed card, where no
    /// credential holds the card.
    user_cards: CardTable,
    /// Cards whose facility or number does not pack (rare).
    wide_cards: HashMap<(Option<u32>, u64), CardHolder>,
    raw_cards: HashMap<RawCard, CardHolder>,
    pins: HashMap<Pin, u32>,
    /// Door index, then PIN: the codes set on it, oldest first (borrowed
    /// lookups, no PIN copy on the decision path).
    door_pins: HashMap<u32, HashMap<Pin, Box<[u32]>>>,
    mobile_keys: HashMap<Box<str>, u32>,
    door_access_ids: IdIndex,
    barcodes: IdIndex,
    acs_ids: IdIndex,
    /// Temporary accesses by id with their end (the sync reports them once
    /// expired; few, so kept as a list).
    temporary: Box<[(Box<str>, Timestamp)]>,
    members: usize,
}

/// How many records of each kind a [`View`] was built from (health
/// reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Doors.
    pub doors: usize,
    /// Users.
    pub users: usize,
    /// Credentials.
    pub credentials: usize,
    /// Access codes.
    pub access_codes: usize,
    /// Schedules.
    pub schedules: usize,
    /// Holidays.
    pub holidays: usize,
    /// Accesses.
    pub accesses: usize,
    /// Facilities.
    pub facilities: usize,
    /// Events.
    pub events: usize,
    /// Members.
    pub members: usize,
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("site", &self.data.site.id)
            .field("time_zone", &self.data.site.time_zone)
            .field("doors", &self.doors.len())
            .field("users", &self.users.len())
            .field("credentials", &self.credentials.len())
            .field("accesses", &self.accesses.len())
            .field("access_codes", &self.codes.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

fn index_of(len: usize, kind: RecordKind) -> Result<u32, ModelError> {
    u32::try_from(len).map_err(|_| ModelError::TooMany(kind))
}

fn sorted(mut v: Vec<u32>) -> Box<[u32]> {
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

fn check_window(
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    record: impl FnOnce() -> RecordRef,
) -> Result<(), ModelError> {
    match (from, to) {
        (Some(from), Some(to)) if to <= from => Err(ModelError::EndsBeforeStart(record())),
        _ => Ok(()),
    }
}

/// Credential ids seen so far: the store gives them in ascending order, so
/// comparing with the previous one suffices; the first id out of order
/// switches to a set of all of them (a [`DataSet`] in any order).
enum SeenIds {
    Ascending,
    Set(HashSet<Box<str>>),
}

/// An access code of a (door, PIN) group with its precedence key
/// (created_at, id): the oldest is set.
type RankedCode = (Timestamp, AccessCodeId, u32);

/// Builds a [`View`] from records streamed kind by kind, in this order: the
/// site and holidays ([`ViewBuilder::new`]), doors, users, members,
/// credentials, then [`ViewBuilder::end_credentials`], schedules, accesses,
/// facilities, events, access codes, and [`ViewBuilder::finish`]. Both
/// [`View::build`] (a [`DataSet`] in memory) and
/// [`crate::site_data::load_view`] (a walk over the store) use it, so both
/// give the same view; a bad record is reported as [`View::build`] reports
/// it (the first in that order).
pub(crate) struct ViewBuilder {
    tz: TimeZone,
    holidays: HolidayCalendar,
    door_records: Vec<Door>,
    door_index: HashMap<DoorId, u32>,
    users: Users,
    /// Distinct first and last names → position in `users.names`.
    interned_names: HashMap<Box<str>, u32>,
    /// Per user, while building.
    user_flags: Vec<u8>,
    /// Users whose door_access_id is a card value, in user order.
    user_card_keys: Vec<(u32, CardKey)>,
    door_access_ids: IdIndex,
    barcodes: IdIndex,
    acs_ids: IdIndex,
    credentials: Credentials,
    credential_ids: SeenIds,
    cards: CardTable,
    user_cards: CardTable,
    wide_cards: HashMap<(Option<u32>, u64), CardHolder>,
    raw_cards: HashMap<RawCard, CardHolder>,
    pins: HashMap<Pin, u32>,
    mobile_keys: HashMap<Box<str>, u32>,
    schedule_index: HashMap<Box<str>, u32>,
    schedules: Vec<CompiledSchedule>,
    access_ids: HashSet<Box<str>>,
    accesses: Vec<AccessEntry>,
    user_accesses: Vec<Vec<u32>>,
    door_accesses: Vec<Vec<u32>>,
    door_lock_unlock: Vec<Vec<(u32, u32)>>,
    facilities: HashMap<Box<str>, Box<[u32]>>,
    event_ids: HashSet<Box<str>>,
    events: Vec<EventEntry>,
    user_events: Vec<Vec<u32>>,
    code_index: HashMap<AccessCodeId, u32>,
    codes: Vec<CodeEntry>,
    code_groups: HashMap<(u32, Pin), Vec<RankedCode>>,
    temporary: Vec<(Box<str>, Timestamp)>,
    members: usize,
}

impl ViewBuilder {
    /// Starts a view of a site with its holidays.
    pub(crate) fn new(
        site: &Site,
        holidays: &[Holiday],
        tzdb: &TimeZoneDatabase,
    ) -> Result<Self, ModelError> {
        let tz = tzdb
            .get(&site.time_zone)
            .map_err(|_| ModelError::TimeZone {
                name: site.time_zone.clone(),
            })?;
        let holidays = HolidayCalendar::new(holidays).map_err(ModelError::Holidays)?;
        Ok(Self {
            tz,
            holidays,
            door_records: Vec::new(),
            door_index: HashMap::new(),
            users: Users::new(),
            interned_names: HashMap::new(),
            user_flags: Vec::new(),
            user_card_keys: Vec::new(),
            door_access_ids: HashMap::new(),
            barcodes: HashMap::new(),
            acs_ids: HashMap::new(),
            credentials: Credentials::new(),
            credential_ids: SeenIds::Ascending,
            cards: CardTable::default(),
            user_cards: CardTable::default(),
            wide_cards: HashMap::new(),
            raw_cards: HashMap::new(),
            pins: HashMap::new(),
            mobile_keys: HashMap::new(),
            schedule_index: HashMap::new(),
            schedules: Vec::new(),
            access_ids: HashSet::new(),
            accesses: Vec::new(),
            user_accesses: Vec::new(),
            door_accesses: Vec::new(),
            door_lock_unlock: Vec::new(),
            facilities: HashMap::new(),
            event_ids: HashSet::new(),
            events: Vec::new(),
            user_events: Vec::new(),
            code_index: HashMap::new(),
            codes: Vec::new(),
            code_groups: HashMap::new(),
            temporary: Vec::new(),
            members: 0,
        })
    }

    fn local_doors(&self, ids: &[DoorId]) -> Box<[u32]> {
        sorted(
            ids.iter()
                .filter_map(|id| self.door_index.get(id).copied())
                .collect(),
        )
    }

    /// Adds a door (all doors come before any user).
    pub(crate) fn door(&mut self, door: &Door) -> Result<(), ModelError> {
        let i = index_of(self.door_records.len(), RecordKind::Door)?;
        if self.door_index.insert(door.id.clone(), i).is_some() {
            return Err(ModelError::DuplicateId(RecordRef::new(
                RecordKind::Door,
                door.id.as_str(),
            )));
        }
        self.door_records.push(door.clone());
        Ok(())
    }

    fn intern_name(&mut self, name: &str) -> Result<u32, ModelError> {
        if let Some(&i) = self.interned_names.get(name) {
            return Ok(i);
        }
        let i = self
            .users
            .names
            .push(name)
            .ok_or(ModelError::TooMany(RecordKind::User))?;
        self.interned_names.insert(name.into(), i);
        Ok(i)
    }

    fn user_ref(&self, u: u32) -> RecordRef {
        RecordRef::new(RecordKind::User, self.users.ids.get(u))
    }

    fn credential_ref(&self, c: u32) -> RecordRef {
        RecordRef::new(
            RecordKind::Credential,
            &self.credentials.ids.get(c).unwrap_or_default(),
        )
    }

    fn holder_ref(&self, holder: CardHolder) -> RecordRef {
        match holder {
            CardHolder::Credential(c) => self.credential_ref(c),
            CardHolder::User(u) => self.user_ref(u),
        }
    }

    /// Adds a user (after the doors, before members and credentials).
    pub(crate) fn user(&mut self, user: &User) -> Result<(), ModelError> {
        let me = || RecordRef::new(RecordKind::User, user.id.as_str());
        let i = index_of(self.user_flags.len(), RecordKind::User)?;
        let position = self
            .users
            .ids
            .push(user.id.as_str())
            .ok_or(ModelError::TooMany(RecordKind::User))?;
        if self
            .users
            .id_index
            .insert(&self.users.ids, position)
            .is_some()
        {
            return Err(ModelError::DuplicateId(me()));
        }
        let ids: [(&'static str, Option<&str>, &mut IdIndex); 3] = [
            (
                "door_access_id",
                user.door_access_id.as_ref().map(|s| s.expose()),
                &mut self.door_access_ids,
            ),
            ("barcode_id", user.barcode_id.as_deref(), &mut self.barcodes),
            ("acs_id", user.acs_id.as_deref(), &mut self.acs_ids),
        ];
        for (field, value, map) in ids {
            if let Some(value) = value {
                if let Some(other) = map.insert(value.into(), i) {
                    return Err(ModelError::DuplicateIdentifier {
                        field,
                        record: me(),
                        other: RecordRef::new(RecordKind::User, self.users.ids.get(other)),
                    });
                }
            }
        }
        if let Some(Ok(key)) = user
            .door_access_id
            .as_ref()
            .map(|value| CardKey::parse(value.expose()))
        {
            self.user_card_keys.push((i, key));
        }
        let first = self.intern_name(&user.first_name)?;
        let last = self.intern_name(&user.last_name)?;
        self.users.first_last.push([first, last]);
        let mut flags = 0;
        if user.is_instructor {
            flags |= INSTRUCTOR;
        }
        if user.extended_unlock {
            flags |= EXTENDED_UNLOCK;
        }
        self.user_flags.push(flags);
        if !user.memberships.is_empty() {
            let memberships = user
                .memberships
                .iter()
                .map(|m| MembershipEntry {
                    id: m.id,
                    type_id: m.type_id,
                    name: m.type_name.as_str().into(),
                    expires: m.expires,
                    doors: self.local_doors(&m.door_ids),
                })
                .collect();
            self.users.extras.push(i, UserEntry { memberships });
        }
        Ok(())
    }

    fn find_user(&self, id: &str, record: &dyn Fn() -> RecordRef) -> Result<u32, ModelError> {
        self.users
            .id_index
            .get(&self.users.ids, id)
            .ok_or_else(|| ModelError::UnknownReference {
                record: record(),
                target: RecordRef::new(RecordKind::User, id),
            })
    }

    /// Adds a biometric-platform member (after the users).
    pub(crate) fn member(&mut self, member: &Member) -> Result<(), ModelError> {
        let record = || RecordRef::new(RecordKind::Member, member.user.as_str());
        let u = self.find_user(member.user.as_str(), &record)?;
        self.user_flags[u as usize] |= MEMBER;
        self.members += 1;
        Ok(())
    }

    /// Whether `id` was not seen among the credentials yet.
    fn new_credential_id(&mut self, id: &str) -> bool {
        if let SeenIds::Ascending = self.credential_ids {
            if self.credentials.ids.len() == 0 || self.credentials.ids.last() < id.as_bytes() {
                return true;
            }
            let seen = (0..self.credentials.ids.len() as u32)
                .filter_map(|c| self.credentials.ids.get(c))
                .map(String::into_boxed_str)
                .collect();
            self.credential_ids = SeenIds::Set(seen);
        }
        match &mut self.credential_ids {
            SeenIds::Set(seen) => seen.insert(id.into()),
            SeenIds::Ascending => true,
        }
    }

    /// Adds a credential (after the users and members).
    pub(crate) fn credential(&mut self, cred: &Credential) -> Result<(), ModelError> {
        let result = self.add_credential(cred);
        // A card held twice shows only once the cards are sorted: report it
        // when it came before this credential's fault, as a one-pass check
        // would.
        result.map_err(|e| self.earlier_duplicate_card().unwrap_or(e))
    }

    fn add_credential(&mut self, cred: &Credential) -> Result<(), ModelError> {
        let c = index_of(self.credentials.len(), RecordKind::Credential)?;
        let me = || RecordRef::new(RecordKind::Credential, cred.id.as_str());
        if !self.new_credential_id(cred.id.as_str()) {
            return Err(ModelError::DuplicateId(me()));
        }
        let user = self.find_user(cred.user.as_str(), &me)?;
        check_window(cred.starts_at, cred.ends_at, me)?;
        match cred.access_method {
            AccessMethod::Code => {
                let code = cred
                    .code
                    .as_ref()
                    .ok_or_else(|| ModelError::MissingPin(me()))?;
                let pin = Pin::parse(code.expose()).map_err(|source| ModelError::InvalidPin {
                    record: me(),
                    source,
                })?;
                if let Some(&other) = self.pins.get(&pin) {
                    return Err(ModelError::DuplicatePin {
                        record: me(),
                        other: self.credential_ref(other),
                    });
                }
                self.pins.insert(pin, c);
            }
            AccessMethod::Card => {
                if let Some(code) = &cred.code {
                    let key = CardKey::parse(code.expose()).map_err(|source| {
                        ModelError::InvalidCard {
                            record: me(),
                            source,
                        }
                    })?;
                    let previous = match key {
                        CardKey::Number { facility, number } => {
                            match PackedCard::new(facility, number) {
                                Some(packed) => {
                                    self.cards.push(packed, c);
                                    None
                                }
                                None => self
                                    .wide_cards
                                    .insert((facility, number), CardHolder::Credential(c)),
                            }
                        }
                        CardKey::Raw(raw) => self.raw_cards.insert(raw, CardHolder::Credential(c)),
                    };
                    if let Some(other) = previous {
                        return Err(ModelError::DuplicateCard {
                            record: me(),
                            other: self.holder_ref(other),
                        });
                    }
                }
            }
            AccessMethod::MobileKey => {
                let keys = [
                    Some(cred.id.as_str()),
                    cred.code.as_ref().map(|s| s.expose()),
                ];
                for key in keys.into_iter().flatten() {
                    if let Some(other) = self.mobile_keys.insert(key.into(), c) {
                        if other != c {
                            return Err(ModelError::DuplicateIdentifier {
                                field: "mobile key",
                                record: me(),
                                other: self.credential_ref(other),
                            });
                        }
                    }
                }
            }
        }
        self.credentials
            .ids
            .push(cred.id.as_str())
            .ok_or(ModelError::TooMany(RecordKind::Credential))?;
        self.credentials.users.push(user);
        if cred.starts_at.is_some() || cred.ends_at.is_some() || !cred.allowed_entrances.is_empty()
        {
            let entrances = if cred.allowed_entrances.is_empty() {
                None
            } else {
                Some(self.local_doors(&cred.allowed_entrances))
            };
            self.credentials.extras.push(
                c,
                CredentialEntry {
                    starts_at: cred.starts_at,
                    ends_at: cred.ends_at,
                    entrances,
                },
            );
        }
        Ok(())
    }

    /// The first card credential (in credential order) whose card an
    /// earlier one holds.
    fn earlier_duplicate_card(&mut self) -> Option<ModelError> {
        self.cards.sort();
        let (earlier, later) = self.cards.duplicates().min_by_key(|&(_, later)| later)?;
        Some(ModelError::DuplicateCard {
            record: self.credential_ref(later),
            other: self.credential_ref(earlier),
        })
    }

    /// After the last credential: sorts the card index and adds the Hive
    /// door_access_ids that are card values.
    pub(crate) fn end_credentials(&mut self) -> Result<(), ModelError> {
        if let Some(e) = self.earlier_duplicate_card() {
            return Err(e);
        }
        let mut user_numbers: HashMap<PackedCard, u32> = HashMap::new();
        for (u, key) in std::mem::take(&mut self.user_card_keys) {
            let holder = match key {
                CardKey::Number { facility, number } => match PackedCard::new(facility, number) {
                    Some(packed) => match self.cards.get(packed) {
                        Some(c) => CardHolder::Credential(c),
                        None => CardHolder::User(*user_numbers.entry(packed).or_insert(u)),
                    },
                    None => *self
                        .wide_cards
                        .entry((facility, number))
                        .or_insert(CardHolder::User(u)),
                },
                CardKey::Raw(raw) => *self.raw_cards.entry(raw).or_insert(CardHolder::User(u)),
            };
            match holder {
                CardHolder::User(other) if other == u => {}
                CardHolder::Credential(c) if self.credentials.user(c) == u => {}
                other => {
                    return Err(ModelError::DuplicateCard {
                        record: self.user_ref(u),
                        other: self.holder_ref(other),
                    })
                }
            }
        }
        for (packed, u) in user_numbers {
            self.user_cards.push(packed, u);
        }
        self.user_cards.sort();
        Ok(())
    }

    /// Adds a schedule (after the credentials).
    pub(crate) fn schedule(&mut self, schedule: &Schedule) -> Result<(), ModelError> {
        let s = index_of(self.schedules.len(), RecordKind::Schedule)?;
        let me = || RecordRef::new(RecordKind::Schedule, schedule.id.as_str());
        if self
            .schedule_index
            .insert(schedule.id.as_str().into(), s)
            .is_some()
        {
            return Err(ModelError::DuplicateId(me()));
        }
        self.schedules
            .push(
                CompiledSchedule::new(schedule).map_err(|source| ModelError::Schedule {
                    record: me(),
                    source,
                })?,
            );
        Ok(())
    }

    /// Adds an Entryfy access (after the schedules).
    pub(crate) fn access(&mut self, access: &Access) -> Result<(), ModelError> {
        if self.user_accesses.is_empty() {
            self.user_accesses = vec![Vec::new(); self.user_flags.len()];
            self.door_accesses = vec![Vec::new(); self.door_records.len()];
            self.door_lock_unlock = vec![Vec::new(); self.door_records.len()];
        }
        let a = index_of(self.accesses.len(), RecordKind::Access)?;
        let me = || RecordRef::new(RecordKind::Access, access.id.as_str());
        if !self.access_ids.insert(access.id.as_str().into()) {
            return Err(ModelError::DuplicateId(me()));
        }
        if access.kind == AccessKind::Temporary && access.valid_to.is_none() {
            return Err(ModelError::TemporaryWithoutEnd(me()));
        }
        check_window(access.valid_from, access.valid_to, me)?;
        if let (AccessKind::Temporary, Some(to)) = (access.kind, access.valid_to) {
            self.temporary.push((access.id.as_str().into(), to));
        }
        let schedule =
            match &access.schedule {
                None => None,
                Some(id) => Some(self.schedule_index.get(id.as_str()).copied().ok_or_else(
                    || ModelError::UnknownReference {
                        record: me(),
                        target: RecordRef::new(RecordKind::Schedule, id.as_str()),
                    },
                )?),
            };
        let mut doors: Vec<AccessDoorEntry> = Vec::with_capacity(access.doors.len());
        for entry in &access.doors {
            let Some(&door) = self.door_index.get(&entry.door) else {
                continue;
            };
            let parsed = AccessDoorEntry {
                door,
                lock_unlock: entry.lock_unlock,
                first_card_unlock: entry.first_card_unlock,
                in_auth: entry.in_auth,
                out_auth: entry.out_auth,
            };
            // A door listed twice: the later entry wins.
            match doors.iter_mut().find(|d| d.door == door) {
                Some(existing) => *existing = parsed,
                None => doors.push(parsed),
            }
        }
        doors.sort_unstable_by_key(|d| d.door);
        let mut members = Vec::with_capacity(access.users.len());
        for user in &access.users {
            members.push(self.find_user(user.as_str(), &me)?);
        }
        for (pos, entry) in doors.iter().enumerate() {
            self.door_accesses[entry.door as usize].push(a);
            if entry.lock_unlock {
                self.door_lock_unlock[entry.door as usize].push((a, pos as u32));
            }
        }
        let members = sorted(members);
        for &u in members.iter() {
            self.user_accesses[u as usize].push(a);
        }
        self.accesses.push(AccessEntry {
            name: access.name.as_str().into(),
            status: access.status,
            valid_from: access.valid_from,
            valid_to: access.valid_to,
            schedule,
            doors: doors.into_boxed_slice(),
            users: members,
        });
        Ok(())
    }

    /// Adds a biometric-platform facility (after the accesses).
    pub(crate) fn facility(&mut self, facility: &Facility) -> Result<(), ModelError> {
        let doors = self.local_doors(&facility.doors);
        if self
            .facilities
            .insert(facility.id.as_str().into(), doors)
            .is_some()
        {
            return Err(ModelError::DuplicateId(RecordRef::new(
                RecordKind::Facility,
                facility.id.as_str(),
            )));
        }
        Ok(())
    }

    /// Adds a biometric-platform event (after the facilities).
    pub(crate) fn event(&mut self, event: &Event) -> Result<(), ModelError> {
        if self.user_events.is_empty() {
            self.user_events = vec![Vec::new(); self.user_flags.len()];
        }
        let e = index_of(self.events.len(), RecordKind::Event)?;
        let me = || RecordRef::new(RecordKind::Event, event.id.as_str());
        if !self.event_ids.insert(event.id.as_str().into()) {
            return Err(ModelError::DuplicateId(me()));
        }
        check_window(Some(event.starts_at), Some(event.ends_at), me)?;
        let doors = self
            .facilities
            .get(event.facility.as_str())
            .cloned()
            .ok_or_else(|| ModelError::UnknownReference {
                record: me(),
                target: RecordRef::new(RecordKind::Facility, event.facility.as_str()),
            })?;
        for attendee in &event.attendees {
            let u = self.find_user(attendee.as_str(), &me)?;
            self.user_events[u as usize].push(e);
        }
        self.events.push(EventEntry {
            name: event.name.as_str().into(),
            starts_at: event.starts_at,
            ends_at: event.ends_at,
            doors,
        });
        Ok(())
    }

    /// Adds a Seam access code (after the events): failures from the data
    /// alone now, (door, PIN) precedence at [`ViewBuilder::finish`].
    pub(crate) fn access_code(&mut self, code: &AccessCode) -> Result<(), ModelError> {
        let k = index_of(self.codes.len(), RecordKind::AccessCode)?;
        if self.code_index.insert(code.id.clone(), k).is_some() {
            return Err(ModelError::DuplicateId(RecordRef::new(
                RecordKind::AccessCode,
                code.id.as_str(),
            )));
        }
        let door = self.door_index.get(&code.door).copied();
        let pin = Pin::parse(code.code.expose()).ok();
        let failure = match (door, &pin) {
            (None, _) => Some(CodeFailure::UnknownDoor),
            (Some(d), _) if !self.door_records[d as usize].keypad => Some(CodeFailure::NoKeypad),
            (_, None) => Some(CodeFailure::InvalidPin),
            _ if matches!((code.starts_at, code.ends_at), (Some(s), Some(e)) if e <= s) => {
                Some(CodeFailure::EndsBeforeStart)
            }
            (_, Some(pin)) => self
                .pins
                .get(pin)
                .map(|&c| CodeFailure::PinUsedByCredential {
                    credential: self.credentials.id(c),
                }),
        };
        // Failed codes join the group too, so that typing their PIN says
        // why they do not open (they are never the live one).
        if let (Some(d), Some(pin)) = (door, &pin) {
            self.code_groups.entry((d, pin.clone())).or_default().push((
                code.created_at,
                code.id.clone(),
                k,
            ));
        }
        self.codes.push(CodeEntry {
            id: code.id.clone(),
            name: code.name.as_str().into(),
            failure,
            door,
            pin,
            starts_at: code.starts_at,
            ends_at: code.ends_at,
            one_time_use: code.one_time_use,
            used_at: UsedAt::new(code.used_at),
            deleted: code.deleted,
        });
        Ok(())
    }

    /// The view. `data` is what the view keeps of the records: the whole
    /// data set for [`View::build`]; the site, doors, schedules, holidays,
    /// facilities and access codes for a view built from the store.
    pub(crate) fn finish(mut self, data: DataSet) -> View {
        let users_count = self.user_flags.len();
        self.user_accesses.resize_with(users_count, Vec::new);
        self.user_events.resize_with(users_count, Vec::new);
        self.door_accesses
            .resize_with(self.door_records.len(), Vec::new);
        self.door_lock_unlock
            .resize_with(self.door_records.len(), Vec::new);
        let lists = |lists: Vec<Vec<u32>>| {
            Lists::from_lists(lists.into_iter().map(|l| sorted(l).into_vec()).collect())
        };
        // Fewer than 2^32 accesses and events, each listing fewer than 2^32
        // users (checked as they came), so the totals fit unless a list
        // count overflows; then the lists stay empty rather than wrong.
        self.users.accesses = lists(self.user_accesses).unwrap_or_default();
        self.users.events = lists(self.user_events).unwrap_or_default();
        self.users.flags = self.user_flags;
        self.users.ids.shrink_to_fit();
        self.users.names.shrink_to_fit();
        self.users.first_last.shrink_to_fit();
        self.users.flags.shrink_to_fit();
        self.users.extras.shrink_to_fit();
        self.credentials.ids.shrink_to_fit();
        self.credentials.users.shrink_to_fit();
        self.credentials.extras.shrink_to_fit();
        let doors: Vec<DoorEntry> = self
            .door_records
            .iter()
            .zip(self.door_accesses)
            .zip(self.door_lock_unlock)
            .map(|((door, accesses), lock_unlock)| DoorEntry {
                id: door.id.clone(),
                name: door.name.as_str().into(),
                accesses: sorted(accesses),
                lock_unlock: lock_unlock.into_boxed_slice(),
            })
            .collect();
        let mut door_pins: HashMap<u32, HashMap<Pin, Box<[u32]>>> = HashMap::new();
        for ((door, pin), mut group) in self.code_groups {
            group.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let group = group.into_iter().map(|(_, _, k)| k).collect();
            door_pins.entry(door).or_default().insert(pin, group);
        }
        View {
            tz: self.tz,
            holidays: self.holidays,
            doors,
            door_index: self.door_index,
            users: self.users,
            credentials: self.credentials,
            schedules: self.schedules,
            accesses: self.accesses,
            events: self.events,
            codes: self.codes,
            code_index: self.code_index,
            cards: self.cards,
            user_cards: self.user_cards,
            wide_cards: self.wide_cards,
            raw_cards: self.raw_cards,
            pins: self.pins,
            door_pins,
            mobile_keys: self.mobile_keys,
            door_access_ids: self.door_access_ids,
            barcodes: self.barcodes,
            acs_ids: self.acs_ids,
            temporary: self.temporary.into_boxed_slice(),
            members: self.members,
            command_lockdown: CommandLockdown::new(data.doors.len()),
            data,
        }
    }
}

impl View {
    /// Checks and indexes a data set, resolving the site's time zone in the
    /// bundled time zone database.
    pub fn build(data: DataSet) -> Result<View, ModelError> {
        Self::build_with_tzdb(data, &TimeZoneDatabase::bundled())
    }

    /// Like [`View::build`], resolving the site's time zone in `tzdb` (for
    /// example the system's, `jiff::tz::db()`).
    pub fn build_with_tzdb(data: DataSet, tzdb: &TimeZoneDatabase) -> Result<View, ModelError> {
        let mut b = ViewBuilder::new(&data.site, &data.holidays, tzdb)?;
        for door in &data.doors {
            b.door(door)?;
        }
        for user in &data.users {
            b.user(user)?;
        }
        for member in &data.members {
            b.member(member)?;
        }
        for credential in &data.credentials {
            b.credential(credential)?;
        }
        b.end_credentials()?;
        for schedule in &data.schedules {
            b.schedule(schedule)?;
        }
        for access in &data.accesses {
            b.access(access)?;
        }
        for facility in &data.facilities {
            b.facility(facility)?;
        }
        for event in &data.events {
            b.event(event)?;
        }
        for code in &data.access_codes {
            b.access_code(code)?;
        }
        Ok(b.finish(data))
    }

    /// The records this view keeps, with the hub's own updates: the whole
    /// data set for a view from [`View::build`]; for a view from the store
    /// ([`crate::site_data::load_view`]) the site, doors, schedules,
    /// holidays, facilities and access codes only (users, credentials,
    /// accesses, events and members stay in the store; the view has its
    /// compact index of them).
    pub fn data(&self) -> &DataSet {
        &self.data
    }

    /// Gives the records back (to change them and build a new view); see
    /// [`View::data`] for what a view from the store keeps.
    pub fn into_data(mut self) -> DataSet {
        // Uses recorded since the build go back into the records.
        for (record, code) in self.data.access_codes.iter_mut().zip(&self.codes) {
            if let Some(at) = code.used_at.get() {
                record.used_at = Some(at);
            }
        }
        self.data
    }

    /// Frees the credential records the view was built from, keeping its
    /// own indexes: decisions do not read them. Afterwards
    /// [`View::data`] and [`View::into_data`] have no credentials (reload
    /// them from the store before building a new view). A view from the
    /// store keeps no credential records, so this returns 0 there.
    /// Returns how many were dropped.
    pub fn release_credential_records(&mut self) -> usize {
        std::mem::take(&mut self.data.credentials).len()
    }

    /// How many records of each kind the view holds (also those it keeps
    /// only in its compact index).
    pub fn counts(&self) -> RecordCounts {
        RecordCounts {
            doors: self.doors.len(),
            users: self.users.len(),
            credentials: self.credentials.len(),
            access_codes: self.codes.len(),
            schedules: self.schedules.len(),
            holidays: self.data.holidays.len(),
            accesses: self.accesses.len(),
            facilities: self.data.facilities.len(),
            events: self.events.len(),
            members: self.members,
        }
    }

    /// Ids of the temporary accesses whose `valid_to` is at or before `now`
    /// (works on every view, with or without access records).
    pub fn expired_temporary_accesses(&self, now: Timestamp) -> impl Iterator<Item = &str> + '_ {
        self.temporary
            .iter()
            .filter(move |(_, to)| *to <= now)
            .map(|(id, _)| &**id)
    }

    /// The site's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// A door by id.
    pub fn door(&self, id: &str) -> Option<&Door> {
        self.door_index
            .get(id)
            .map(|&d| &self.data.doors[d as usize])
    }

    /// A user's record by id, when the view keeps user records (built by
    /// [`View::build`]; a view from the store does not: read the record
    /// from the store).
    pub fn user(&self, id: &str) -> Option<&User> {
        self.user_by_id(id)
            .and_then(|u| self.data.users.get(u as usize))
    }

    /// The doors of this hub that a user's Hive membership opens (listed in
    /// its `door_ids`, or whose `membership_type_ids` hold its type), in
    /// door order; empty for an unknown user or membership. Works on every
    /// view, with or without user records.
    pub fn membership_doors(&self, user: &str, membership_id: u64) -> Vec<&DoorId> {
        let Some(u) = self.user_by_id(user) else {
            return Vec::new();
        };
        let Some(m) = self.users[u as usize]
            .memberships
            .iter()
            .find(|m| m.id == membership_id)
        else {
            return Vec::new();
        };
        self.doors
            .iter()
            .enumerate()
            .filter(|(d, _)| {
                m.doors.binary_search(&(*d as u32)).is_ok()
                    || self.data.doors[*d].membership_type_ids.contains(&m.type_id)
            })
            .map(|(_, door)| &door.id)
            .collect()
    }

    /// Marks an access code used at `at`, through `&self`: the shared view
    /// refuses the code from now on (the caller persists the use, see
    /// [`crate::store::Store::record_code_use`]). Returns true when this
    /// call marked it; false for an unknown code or one already used (the
    /// first use stays: two racing callers cannot both win).
    pub fn record_code_use(&self, id: &AccessCodeId, at: Timestamp) -> bool {
        self.code_index
            .get(id)
            .is_some_and(|&k| self.codes[k as usize].used_at.claim(at).is_ok())
    }

    /// Whether the data set has this access code (deleted or not).
    pub fn has_code(&self, id: &str) -> bool {
        self.code_index.contains_key(id)
    }

    /// When an access code was used (recorded by the cloud or by this
    /// hub); `None` when unused or unknown. [`View::data`] keeps the
    /// cloud's records as built, so it does not show uses made since.
    pub fn code_used_at(&self, id: &str) -> Option<Timestamp> {
        self.code_index
            .get(id)
            .and_then(|&k| self.codes[k as usize].used_at.get())
    }

    /// Every access code that is marked used, with when.
    pub fn code_uses(&self) -> impl Iterator<Item = (&AccessCodeId, Timestamp)> + '_ {
        self.codes
            .iter()
            .filter_map(|c| c.used_at.get().map(|at| (&c.id, at)))
    }

    /// Marks in this view every use `other` has of a code this view also
    /// has (a new view replacing `other` keeps the uses made meanwhile).
    /// Returns how many were newly marked.
    pub fn keep_code_uses_of(&self, other: &View) -> usize {
        other
            .code_uses()
            .filter(|(id, at)| self.record_code_use(id, *at))
            .count()
    }

    /// Sets or lifts the site-wide lockdown.
    pub fn set_site_lockdown(&mut self, on: bool) {
        self.data.site.lockdown = on;
    }

    /// Sets or lifts one door's lockdown. Returns false for an unknown door.
    pub fn set_door_lockdown(&mut self, door: &str, on: bool) -> bool {
        let Some(&d) = self.door_index.get(door) else {
            return false;
        };
        self.data.doors[d as usize].lockdown = on;
        true
    }

    /// Sets the lockdowns that cloud commands put in force, in place on a
    /// shared view: the site's, and exactly the doors named in `doors`
    /// (others are lifted; names not in the data set are ignored). They add
    /// to the data set's own flags, which stay as they are.
    pub fn set_command_lockdown<'a>(&self, site: bool, doors: impl IntoIterator<Item = &'a str>) {
        let mut on = vec![false; self.command_lockdown.doors.len()];
        for door in doors {
            if let Some(&d) = self.door_index.get(door) {
                if let Some(slot) = on.get_mut(d as usize) {
                    *slot = true;
                }
            }
        }
        for (flag, on) in self.command_lockdown.doors.iter().zip(on) {
            flag.store(on, Ordering::Relaxed);
        }
        self.command_lockdown.site.store(site, Ordering::Relaxed);
    }

    /// The status of one access code at `now`; `None` for an unknown code.
    pub fn code_status(&self, id: &str, now: Timestamp) -> Option<CodeStatus> {
        self.code_index
            .get(id)
            .map(|&k| self.code_status_at(k, now))
    }

    /// Every access code with its status at `now`, in data set order. Sync
    /// compares these with the last reported ones to report transitions.
    pub fn code_statuses(
        &self,
        now: Timestamp,
    ) -> impl Iterator<Item = (&AccessCodeId, CodeStatus)> + '_ {
        self.codes
            .iter()
            .enumerate()
            .map(move |(k, code)| (&code.id, self.code_status_at(k as u32, now)))
    }

    /// Active at `now` by its own fields (ignoring other codes).
    pub(crate) fn code_live(&self, k: u32, now: Timestamp) -> bool {
        let code = &self.codes[k as usize];
        !code.deleted
            && code.used_at.get().is_none()
            && code.failure.is_none()
            && code.starts_at.is_none_or(|s| s <= now)
            && code.ends_at.is_none_or(|e| now < e)
    }

    pub(crate) fn code_status_at(&self, k: u32, now: Timestamp) -> CodeStatus {
        let code = &self.codes[k as usize];
        if code.deleted {
            return CodeStatus::Removed {
                why: RemovedReason::Deleted,
            };
        }
        if code.used_at.get().is_some() {
            return CodeStatus::Removed {
                why: RemovedReason::Used,
            };
        }
        if let Some(reason) = &code.failure {
            return CodeStatus::Failed {
                reason: reason.clone(),
            };
        }
        if code.starts_at.is_some_and(|s| now < s) {
            return CodeStatus::Unset;
        }
        if code.ends_at.is_some_and(|e| e <= now) {
            return CodeStatus::Removed {
                why: RemovedReason::Expired,
            };
        }
        if let (Some(door), Some(pin)) = (code.door, &code.pin) {
            if let Some(group) = self.door_pins.get(&door).and_then(|m| m.get(pin)) {
                for &other in group.iter().take_while(|&&o| o != k) {
                    if self.code_live(other, now) {
                        return CodeStatus::Failed {
                            reason: CodeFailure::DuplicatePin {
                                other: self.codes[other as usize].id.clone(),
                            },
                        };
                    }
                }
            }
        }
        CodeStatus::Set
    }

    // Lookups for decisions.

    pub(crate) fn door_ix(&self, id: &str) -> Option<u32> {
        self.door_index.get(id).copied()
    }

    pub(crate) fn door_data(&self, d: u32) -> &Door {
        &self.data.doors[d as usize]
    }

    /// The site is in lockdown, by the data set or by a command.
    pub(crate) fn site_lockdown(&self) -> bool {
        self.data.site.lockdown || self.command_lockdown.site.load(Ordering::Relaxed)
    }

    /// Door `d` is in lockdown, by the data set or by a command (the site's
    /// lockdown aside).
    pub(crate) fn door_lockdown(&self, d: u32) -> bool {
        self.data.doors[d as usize].lockdown
            || self
                .command_lockdown
                .doors
                .get(d as usize)
                .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn number_holder(&self, facility: Option<u32>, number: u64) -> Option<CardHolder> {
        match PackedCard::new(facility, number) {
            Some(packed) => self
                .cards
                .get(packed)
                .map(CardHolder::Credential)
                .or_else(|| self.user_cards.get(packed).map(CardHolder::User)),
            None => self.wide_cards.get(&(facility, number)).copied(),
        }
    }

    pub(crate) fn card_holder(&self, card: &CardNumber) -> Option<CardHolder> {
        if card.facility.is_some() {
            if let Some(h) = self.number_holder(card.facility, card.number) {
                return Some(h);
            }
        }
        if let Some(h) = self.number_holder(None, card.number) {
            return Some(h);
        }
        if !card.raw.is_empty() {
            return self.raw_cards.get(&card.raw).copied();
        }
        None
    }

    pub(crate) fn pin_credential(&self, pin: &Pin) -> Option<u32> {
        self.pins.get(pin).copied()
    }

    pub(crate) fn door_codes(&self, door: u32, pin: &Pin) -> Option<&[u32]> {
        self.door_pins.get(&door)?.get(pin).map(|g| &**g)
    }

    pub(crate) fn mobile_key(&self, key: &str) -> Option<u32> {
        self.mobile_keys.get(key).copied()
    }

    pub(crate) fn user_by_id(&self, id: &str) -> Option<u32> {
        self.users.id_index.get(&self.users.ids, id)
    }

    pub(crate) fn user_by_door_access_id(&self, id: &str) -> Option<u32> {
        self.door_access_ids.get(id).copied()
    }

    pub(crate) fn user_by_barcode(&self, id: &str) -> Option<u32> {
        self.barcodes.get(id).copied()
    }

    pub(crate) fn user_by_acs_id(&self, id: &str) -> Option<u32> {
        self.acs_ids.get(id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, at, code, data, now, view};
    use super::super::model::*;
    use super::*;

    fn build_err(change: impl FnOnce(&mut DataSet)) -> ModelError {
        let mut data = data();
        change(&mut data);
        View::build(data).unwrap_err()
    }

    fn rec(kind: RecordKind, id: &str) -> RecordRef {
        RecordRef::new(kind, id)
    }

    #[test]
    fn fixture_builds_and_round_trips() {
        let view = view();
        assert_eq!(view.door("front").unwrap().name, "Front Door");
        assert_eq!(view.user("202").unwrap().last_name, "Stone");
        assert!(view.door("nowhere").is_none() && view.user("999").is_none());
        assert_eq!(view.time_zone().iana_name(), Some(fixture::TZ));
        let debug = format!("{view:?}");
        assert!(debug.contains("users: 11"), "{debug}");
        assert_eq!(view.into_data(), data());
        // The store's serde round trip gives the same view.
        let json = serde_json::to_string(&data()).unwrap();
        let back: DataSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, data());
        View::build(back).unwrap();
        // With another time zone database (the system's, on a box).
        View::build_with_tzdb(data(), &TimeZoneDatabase::bundled()).unwrap();
    }

    #[test]
    fn bad_records_are_named() {
        use RecordKind as K;
        type Change = Box<dyn FnOnce(&mut DataSet)>;
        let cases: Vec<(Change, ModelError)> = vec![
            (
                Box::new(|d| d.site.time_zone = "Mars/Olympus".into()),
                ModelError::TimeZone {
                    name: "Mars/Olympus".into(),
                },
            ),
            (
                Box::new(|d| d.doors.push(Door::new("front", "Again"))),
                ModelError::DuplicateId(rec(K::Door, "front")),
            ),
            (
                Box::new(|d| d.users.push(User::new("201", "Ann", "Again"))),
                ModelError::DuplicateId(rec(K::User, "201")),
            ),
            (
                Box::new(|d| {
                    let c = d.credentials[0].clone();
                    d.credentials.push(c);
                }),
                ModelError::DuplicateId(rec(K::Credential, "c-ann-card")),
            ),
            (
                Box::new(|d| {
                    let s = d.schedules[0].clone();
                    d.schedules.push(s);
                }),
                ModelError::DuplicateId(rec(K::Schedule, "weekdays")),
            ),
            (
                Box::new(|d| {
                    let a = d.accesses[0].clone();
                    d.accesses.push(a);
                }),
                ModelError::DuplicateId(rec(K::Access, "staff")),
            ),
            (
                Box::new(|d| {
                    let f = d.facilities[0].clone();
                    d.facilities.push(f);
                }),
                ModelError::DuplicateId(rec(K::Facility, "hall")),
            ),
            (
                Box::new(|d| {
                    let e = d.events[0].clone();
                    d.events.push(e);
                }),
                ModelError::DuplicateId(rec(K::Event, "gala")),
            ),
            (
                Box::new(|d| {
                    let c = d.access_codes[0].clone();
                    d.access_codes.push(c);
                }),
                ModelError::DuplicateId(rec(K::AccessCode, "code-guest")),
            ),
            (
                Box::new(|d| d.credentials[0].user = "999".into()),
                ModelError::UnknownReference {
                    record: rec(K::Credential, "c-ann-card"),
                    target: rec(K::User, "999"),
                },
            ),
            (
                Box::new(|d| d.accesses[0].users.push("999".into())),
                ModelError::UnknownReference {
                    record: rec(K::Access, "staff"),
                    target: rec(K::User, "999"),
                },
            ),
            (
                Box::new(|d| d.accesses[0].schedule = Some("never".into())),
                ModelError::UnknownReference {
                    record: rec(K::Access, "staff"),
                    target: rec(K::Schedule, "never"),
                },
            ),
            (
                Box::new(|d| d.events[0].facility = "moon".into()),
                ModelError::UnknownReference {
                    record: rec(K::Event, "gala"),
                    target: rec(K::Facility, "moon"),
                },
            ),
            (
                Box::new(|d| d.events[0].attendees.push("999".into())),
                ModelError::UnknownReference {
                    record: rec(K::Event, "gala"),
                    target: rec(K::User, "999"),
                },
            ),
            (
                Box::new(|d| d.members.push(Member { user: "999".into() })),
                ModelError::UnknownReference {
                    record: rec(K::Member, "999"),
                    target: rec(K::User, "999"),
                },
            ),
            (
                Box::new(|d| d.schedules[1].intervals[0].days.clear()),
                ModelError::Schedule {
                    record: rec(K::Schedule, "nights"),
                    source: ScheduleError::NoDays { index: 0 },
                },
            ),
            (
                Box::new(|d| {
                    let h = d.holidays[0].clone();
                    d.holidays.push(h);
                }),
                ModelError::Holidays(ScheduleError::DuplicateHoliday {
                    date: jiff::civil::date(2026, 12, 25),
                }),
            ),
            (
                Box::new(|d| d.accesses[2].valid_to = None),
                ModelError::TemporaryWithoutEnd(rec(K::Access, "contractors")),
            ),
            (
                Box::new(|d| d.accesses[2].valid_from = Some(at("2026-07-01T00:00"))),
                ModelError::EndsBeforeStart(rec(K::Access, "contractors")),
            ),
            (
                Box::new(|d| d.credentials[2].ends_at = Some(at("2026-01-01T00:00"))),
                ModelError::EndsBeforeStart(rec(K::Credential, "c-fay-mobile")),
            ),
            (
                Box::new(|d| d.events[0].ends_at = d.events[0].starts_at),
                ModelError::EndsBeforeStart(rec(K::Event, "gala")),
            ),
            (
                Box::new(|d| d.credentials[1].code = None),
                ModelError::MissingPin(rec(K::Credential, "c-ann-pin")),
            ),
            (
                Box::new(|d| d.credentials[1].code = Some(Secret::from("12-34"))),
                ModelError::InvalidPin {
                    record: rec(K::Credential, "c-ann-pin"),
                    source: PinError::NotDigits,
                },
            ),
            (
                Box::new(|d| d.credentials[0].code = Some(Secret::from("12:xyz"))),
                ModelError::InvalidCard {
                    record: rec(K::Credential, "c-ann-card"),
                    source: CardError::Syntax,
                },
            ),
            (
                Box::new(|d| d.credentials[3].code = Some(Secret::from("12:34567"))),
                ModelError::DuplicateCard {
                    record: rec(K::Credential, "c-gus-card"),
                    other: rec(K::Credential, "c-ann-card"),
                },
            ),
            (
                // Another user's door_access_id is Ann's card.
                Box::new(|d| d.users[2].door_access_id = Some(Secret::from("12:34567"))),
                ModelError::DuplicateCard {
                    record: rec(K::User, "203"),
                    other: rec(K::Credential, "c-ann-card"),
                },
            ),
            (
                // Raw values collide too (case does not matter in hex).
                Box::new(|d| d.users[2].door_access_id = Some(Secret::from("ffcc8899"))),
                ModelError::DuplicateCard {
                    record: rec(K::User, "203"),
                    other: rec(K::User, "201"),
                },
            ),
            (
                Box::new(|d| d.credentials[4].code = Some(Secret::from("4321"))),
                ModelError::DuplicatePin {
                    record: rec(K::Credential, "c-gus-pin"),
                    other: rec(K::Credential, "c-ann-pin"),
                },
            ),
            (
                Box::new(|d| d.users[2].barcode_id = Some("bob-barcode".into())),
                ModelError::DuplicateIdentifier {
                    field: "barcode_id",
                    record: rec(K::User, "203"),
                    other: rec(K::User, "202"),
                },
            ),
            (
                Box::new(|d| d.users[2].door_access_id = Some(Secret::from("555000"))),
                ModelError::DuplicateIdentifier {
                    field: "door_access_id",
                    record: rec(K::User, "203"),
                    other: rec(K::User, "202"),
                },
            ),
            (
                Box::new(|d| d.users[2].acs_id = Some("acs-204".into())),
                ModelError::DuplicateIdentifier {
                    field: "acs_id",
                    record: rec(K::User, "204"),
                    other: rec(K::User, "203"),
                },
            ),
            (
                Box::new(|d| {
                    let mut key = d.credentials[2].clone();
                    key.id = "c-other-mobile".into();
                    key.code = Some(Secret::from("c-fay-mobile"));
                    d.credentials.push(key);
                }),
                ModelError::DuplicateIdentifier {
                    field: "mobile key",
                    record: rec(K::Credential, "c-other-mobile"),
                    other: rec(K::Credential, "c-fay-mobile"),
                },
            ),
        ];
        for (change, expected) in cases {
            let mut data = data();
            change(&mut data);
            assert_eq!(View::build(data).unwrap_err(), expected);
        }
    }

    #[test]
    fn error_messages_name_the_record() {
        let err = build_err(|d| d.credentials[0].user = "999".into());
        assert_eq!(
            err.to_string(),
            "credential c-ann-card refers to unknown user 999"
        );
        let err = build_err(|d| d.accesses[2].valid_to = None);
        assert_eq!(
            err.to_string(),
            "access contractors is temporary but has no valid_to"
        );
        let err = build_err(|d| d.credentials[1].code = Some(Secret::from("12-34")));
        assert_eq!(
            err.to_string(),
            "credential c-ann-pin has an invalid PIN: PIN with a character other than 0-9"
        );
        assert!(!err.to_string().contains("12-34"));
        let err = build_err(|d| d.schedules[1].intervals[0].days.clear());
        assert_eq!(err.to_string(), "schedule nights: interval 0 has no days");
    }

    #[test]
    fn tolerated_data() {
        // The same user's card as credential and as door_access_id.
        let mut same = data();
        same.users[0].door_access_id = Some(Secret::from("12:34567"));
        View::build(same).unwrap();
        // A card credential without a number (not yet encoded), a
        // door_access_id that is no card value, a door listed twice in an
        // access, a user listed twice.
        let mut odd = data();
        odd.credentials[3].code = None;
        odd.users[2].door_access_id = Some(Secret::from("fob #12"));
        let again = odd.accesses[0].doors[0].clone();
        odd.accesses[0].doors.push(again);
        odd.accesses[0].users.push("201".into());
        let view = View::build(odd).unwrap();
        assert_eq!(view.accesses[0].doors.len(), 2);
        assert_eq!(view.accesses[0].users.len(), 3);
        assert_eq!(view.user_by_door_access_id("fob #12"), Some(2));
    }

    #[test]
    fn code_statuses_over_time() {
        let view = view();
        let status = |id: &str, t| view.code_status(id, t).unwrap();
        let removed = |why| CodeStatus::Removed { why };
        let failed = |reason| CodeStatus::Failed { reason };
        let table = [
            ("code-guest", now(), CodeStatus::Set),
            (
                "code-dup",
                now(),
                failed(CodeFailure::DuplicatePin {
                    other: "code-guest".into(),
                }),
            ),
            ("code-visit", now(), CodeStatus::Unset),
            ("code-visit", at("2026-06-10T09:59:59"), CodeStatus::Unset),
            ("code-visit", at("2026-06-10T10:00"), CodeStatus::Set),
            ("code-visit", at("2026-06-12T11:59:59"), CodeStatus::Set),
            (
                "code-visit",
                at("2026-06-12T12:00"),
                removed(RemovedReason::Expired),
            ),
            ("code-once", now(), CodeStatus::Set),
            ("code-nodoor", now(), failed(CodeFailure::UnknownDoor)),
            ("code-store", now(), failed(CodeFailure::NoKeypad)),
            ("code-bad", now(), failed(CodeFailure::InvalidPin)),
            (
                "code-clash",
                now(),
                failed(CodeFailure::PinUsedByCredential {
                    credential: "c-ann-pin".into(),
                }),
            ),
            ("code-deleted", now(), removed(RemovedReason::Deleted)),
            ("code-window", now(), failed(CodeFailure::EndsBeforeStart)),
        ];
        for (id, t, expected) in table {
            assert_eq!(status(id, t), expected, "{id} at {t}");
        }
        assert_eq!(view.code_status("nope", now()), None);
        let all: Vec<_> = view.code_statuses(now()).collect();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], (&AccessCodeId::from("code-guest"), CodeStatus::Set));
    }

    #[test]
    fn one_time_use_is_recorded() {
        // Through `&self`: the view is shared (Arc) in the daemon.
        let view = Arc::new(view());
        assert!(view.record_code_use(&"code-once".into(), now()));
        assert!(!view.record_code_use(&"nope".into(), now()));
        assert_eq!(
            view.code_status("code-once", now()),
            Some(CodeStatus::Removed {
                why: RemovedReason::Used
            })
        );
        // A second use loses and keeps the first time.
        let later = now() + jiff::SignedDuration::from_mins(5);
        assert!(!view.record_code_use(&"code-once".into(), later));
        assert_eq!(view.code_used_at("code-once"), Some(now()));
        assert_eq!(
            view.code_uses()
                .map(|(id, at)| (id.as_str(), at))
                .collect::<Vec<_>>(),
            [("code-once", now())]
        );
        // A clone carries the use; so do the records given back.
        let copy = View::clone(&view);
        assert_eq!(copy.code_used_at("code-once"), Some(now()));
        assert_eq!(
            Arc::unwrap_or_clone(view).into_data().access_codes[2].used_at,
            Some(now())
        );
    }

    #[test]
    fn racing_uses_of_one_code_have_one_winner() {
        let view = Arc::new(view());
        for round in 0..20 {
            let view = Arc::new(View::clone(&view));
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let wins: usize = (0..4)
                .map(|t| {
                    let (view, barrier) = (Arc::clone(&view), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        let at = now() + jiff::SignedDuration::from_secs(t);
                        usize::from(view.record_code_use(&"code-once".into(), at))
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(wins, 1, "round {round}");
        }
    }

    #[test]
    fn a_new_view_keeps_the_uses_of_the_one_it_replaces() {
        let old = view();
        assert!(old.record_code_use(&"code-once".into(), now()));
        let new = view();
        assert_eq!(new.keep_code_uses_of(&old), 1);
        assert_eq!(new.code_used_at("code-once"), Some(now()));
        assert_eq!(new.keep_code_uses_of(&old), 0);
    }

    #[test]
    fn duplicate_pins_conflict_only_while_both_are_live() {
        let mut data = data();
        // Two time-bound codes with one PIN on one door, one after another:
        // no conflict. A third overlapping the second fails while both run.
        let mut a = code("a", "lab", "First", "7777", "2026-01-01T00:00");
        a.starts_at = Some(at("2026-06-01T00:00"));
        a.ends_at = Some(at("2026-06-05T00:00"));
        let mut b = code("b", "lab", "Second", "7777", "2026-01-02T00:00");
        b.starts_at = Some(at("2026-06-05T00:00"));
        b.ends_at = Some(at("2026-06-10T00:00"));
        let mut c = code("c", "lab", "Third", "7777", "2026-01-03T00:00");
        c.starts_at = Some(at("2026-06-08T00:00"));
        c.ends_at = Some(at("2026-06-12T00:00"));
        // Same PIN on another door: independent.
        let d = code("d", "front", "Elsewhere", "7777", "2026-01-04T00:00");
        data.access_codes = vec![c, b, a, d];
        let view = View::build(data).unwrap();
        let s = |id: &str, t: &str| view.code_status(id, at(t)).unwrap();
        let dup = |other: &str| CodeStatus::Failed {
            reason: CodeFailure::DuplicatePin {
                other: other.into(),
            },
        };
        assert_eq!(s("a", "2026-06-03T00:00"), CodeStatus::Set);
        assert_eq!(s("b", "2026-06-03T00:00"), CodeStatus::Unset);
        assert_eq!(s("b", "2026-06-06T00:00"), CodeStatus::Set);
        assert_eq!(s("c", "2026-06-06T00:00"), CodeStatus::Unset);
        assert_eq!(s("c", "2026-06-09T00:00"), dup("b"));
        assert_eq!(s("c", "2026-06-11T00:00"), CodeStatus::Set);
        assert_eq!(s("d", "2026-06-09T00:00"), CodeStatus::Set);
        // Deleting the holder frees the PIN for the other.
        let mut data = view.into_data();
        data.access_codes[1].deleted = true;
        let view = View::build(data).unwrap();
        assert_eq!(
            view.code_status("c", at("2026-06-09T00:00")),
            Some(CodeStatus::Set)
        );
    }

    #[test]
    fn lockdown_and_code_failure_texts() {
        let mut view = view();
        view.set_site_lockdown(true);
        assert!(view.data().site.lockdown);
        assert!(view.set_door_lockdown("back", true));
        assert!(!view.set_door_lockdown("nowhere", true));
        assert!(view.data().doors[1].lockdown);
        let texts = [
            (CodeFailure::UnknownDoor, "door not found"),
            (CodeFailure::NoKeypad, "door has no keypad"),
            (CodeFailure::InvalidPin, "code is not 1 to 16 digits"),
            (CodeFailure::EndsBeforeStart, "ends before it starts"),
            (
                CodeFailure::DuplicatePin { other: "g".into() },
                "PIN already set on this door by code g",
            ),
            (
                CodeFailure::PinUsedByCredential {
                    credential: "c".into(),
                },
                "PIN already used by credential c",
            ),
        ];
        for (failure, text) in texts {
            assert_eq!(failure.to_string(), text);
        }
        let json = serde_json::to_value(CodeStatus::Failed {
            reason: CodeFailure::DuplicatePin { other: "g".into() },
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "failed", "reason": {"failure": "duplicate_pin", "other": "g"}})
        );
    }

    #[test]
    fn doors_of_other_hubs_are_ignored() {
        let view = view();
        // "elsewhere" is in the staff access, Fay's entrances and nowhere
        // else: the view built, and the lists hold local doors only.
        let staff = &view.accesses[0];
        assert_eq!(staff.doors.len(), 2);
        let fay = &view.credentials[2];
        assert_eq!(fay.entrances.as_deref().map(|e| e.len()), Some(1));
        let bob = &view.users[1];
        assert_eq!(bob.memberships[1].doors.len(), 1);
    }
}
