//! The access model: every record the hub caches from the cloud, as plain
//! serde data ([`DataSet`]), plus the small value types a reader produces
//! ([`CardNumber`], [`Pin`]).
//!
//! One model serves all the cloud systems the hub syncs with; the mapping
//! from each vendor's concepts is in `docs/access-model.md`. Briefly:
//!
//! - [`Access`]: Entryfy accesses (users × doors × schedule, auth types per
//!   direction, lock/unlock on schedule, permanent or temporary).
//! - [`Credential`]: Seam ACS credentials (PIN code, card or mobile key of a
//!   user, with a validity window and allowed entrances).
//! - [`AccessCode`]: Seam access codes (a PIN on one door, ongoing or time
//!   bound, maybe one-time use).
//! - [`Member`], [`Event`], [`Facility`], [`User::acs_id`]: the biometric
//!   platform's members (continuous access) and events (attendees at a
//!   facility for a time range).
//! - [`Door`], [`User`], [`Membership`]: the Hive door access API (door
//!   active flag, membership types per door, instructors, users found by id,
//!   door access id or barcode).
//! - [`Schedule`], [`Holiday`], [`Site`]: weekly intervals in the site's IANA
//!   time zone, holidays, site lockdown.
//!
//! A [`DataSet`] is only data: the store persists it with serde and
//! [`super::View::build`] checks it and indexes it for decisions. Nothing
//! here does I/O. Secrets (PINs, card numbers) are wrapped so that `Debug`
//! and `Display` never print them.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jiff::{civil, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps an identifier.
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                Self(id.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id.into())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

id_type!(
    /// A door (Entryfy door uuid, Seam entrance or device id, Hive door_id,
    /// a door of a biometric facility).
    DoorId
);
id_type!(
    /// A user (Entryfy user uuid, Seam acs_user_id, Hive numeric user id as
    /// text, the biometric platform's acs_id owner).
    UserId
);
id_type!(
    /// A Seam ACS credential (acs_credential_id).
    CredentialId
);
id_type!(
    /// A Seam access code (access_code_id).
    AccessCodeId
);
id_type!(
    /// An Entryfy access (AccessBody uuid).
    AccessId
);
id_type!(
    /// A schedule.
    ScheduleId
);
id_type!(
    /// A biometric-platform facility: a named set of doors.
    FacilityId
);
id_type!(
    /// A biometric-platform event (event_id).
    EventId
);

/// A secret value from the cloud (a PIN, a card number, a mobile key token,
/// a Hive door access id). Serialized as plain text for the store; `Debug`
/// and `Display` print `****` only.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only to compare or index it, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Everything the hub caches: the unit the store persists and
/// [`super::View::build`] indexes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataSet {
    /// The site this hub serves: time zone and site-wide lockdown.
    pub site: Site,
    /// Doors of the site.
    pub doors: Vec<Door>,
    /// Users, with their Hive memberships.
    pub users: Vec<User>,
    /// Seam ACS credentials (cards, PIN codes, mobile keys).
    pub credentials: Vec<Credential>,
    /// Seam access codes (PINs on one door).
    pub access_codes: Vec<AccessCode>,
    /// Weekly schedules.
    pub schedules: Vec<Schedule>,
    /// Holidays of the site.
    pub holidays: Vec<Holiday>,
    /// Entryfy accesses.
    pub accesses: Vec<Access>,
    /// Biometric-platform facilities (sets of doors).
    pub facilities: Vec<Facility>,
    /// Biometric-platform events.
    pub events: Vec<Event>,
    /// Biometric-platform members (continuous access at every door).
    pub members: Vec<Member>,
}

impl DataSet {
    /// Removes temporary accesses whose `valid_to` is at or before `now`
    /// (Entryfy drops them from the hardware once expired) and returns their
    /// ids. Permanent accesses stay (a decision past their `valid_to` says
    /// "expired").
    pub fn prune_expired(&mut self, now: Timestamp) -> Vec<AccessId> {
        let mut dropped = Vec::new();
        self.accesses.retain(|access| {
            let expired =
                access.kind == AccessKind::Temporary && access.valid_to.is_some_and(|to| to <= now);
            if expired {
                dropped.push(access.id.clone());
            }
            !expired
        });
        dropped
    }
}

/// The site: its IANA time zone (schedules and holidays are in local time),
/// and the site-wide lockdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Site {
    /// Site identifier.
    pub id: String,
    /// Name shown to people.
    pub name: String,
    /// IANA time zone name, such as `Europe/Berlin`.
    pub time_zone: String,
    /// Cloud tenant or organization (Entryfy organization_slug, the
    /// biometric platform's tenant, the Hive).
    pub tenant: Option<String>,
    /// Site-wide lockdown: no door opens for anyone. Beats every grant.
    pub lockdown: bool,
}

impl Default for Site {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            time_zone: "UTC".into(),
            tenant: None,
            lockdown: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// A door (or gate, relay, locker): Hive `/doors` fields plus the hub's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Door {
    /// Door identifier.
    pub id: DoorId,
    /// Name shown to people ("Front Door").
    pub name: String,
    /// Hive `active`: an inactive door lets nobody in.
    #[serde(default = "yes")]
    pub active: bool,
    /// Lockdown of this door alone: nobody gets in. Beats every grant.
    #[serde(default)]
    pub lockdown: bool,
    /// Hive `membership_type_ids`: membership types that open this door.
    #[serde(default)]
    pub membership_type_ids: Vec<u64>,
    /// Hive `allow_instructors`: instructors open this door regardless of
    /// membership.
    #[serde(default)]
    pub allow_instructors: bool,
    /// The door has a keypad, so it can hold access codes (Seam's
    /// `access_code` capability). Codes on a door without one fail.
    #[serde(default = "yes")]
    pub keypad: bool,
}

impl Door {
    /// An active door with a keypad and nothing else set.
    pub fn new(id: impl Into<DoorId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            active: true,
            lockdown: false,
            membership_type_ids: Vec::new(),
            allow_instructors: false,
            keypad: true,
        }
    }
}

/// A person: the Hive user record, the biometric platform's enrollment ids,
/// and the hub's own flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User identifier (Hive numeric id as text, Entryfy/Seam uuid).
    pub id: UserId,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: String,
    /// Email, when the cloud shares it.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number (E.164 as the cloud gives it), when shared.
    #[serde(default)]
    pub phone: Option<String>,
    /// Hive `is_instructor`: instructor or staff.
    #[serde(default)]
    pub is_instructor: bool,
    /// Hive `door_access_id`: a card or fob value. A decimal number
    /// (`"123456"`, or `"12:123456"` with a facility code) matches the
    /// decoded card number; hex with letters (`"FFCC8899"`) matches the raw
    /// card bytes; anything else is usable only in a check request.
    #[serde(default)]
    pub door_access_id: Option<Secret>,
    /// Hive `barcode_id`.
    #[serde(default)]
    pub barcode_id: Option<String>,
    /// Biometric platform `acs_id`: what a biometric reader reports for
    /// this user.
    #[serde(default)]
    pub acs_id: Option<String>,
    /// Biometric platform `user_id` (their id for the enrollment, used when
    /// adding attendees in the cloud).
    #[serde(default)]
    pub biometric_user_id: Option<String>,
    /// The user needs a longer strike time (accessibility).
    #[serde(default)]
    pub extended_unlock: bool,
    /// Hive memberships on the user's account.
    #[serde(default)]
    pub memberships: Vec<Membership>,
}

impl User {
    /// A user with a name and nothing else.
    pub fn new(
        id: impl Into<UserId>,
        first_name: impl Into<String>,
        last_name: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            first_name: first_name.into(),
            last_name: last_name.into(),
            email: None,
            phone: None,
            is_instructor: false,
            door_access_id: None,
            barcode_id: None,
            acs_id: None,
            biometric_user_id: None,
            extended_unlock: false,
            memberships: Vec::new(),
        }
    }
}

/// A Hive membership on a user's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// `membership_id`: unique to this membership instance.
    pub id: u64,
    /// `membership_type_id`: shared by every membership of the type.
    pub type_id: u64,
    /// `membership_type_name` ("Standard Monthly").
    pub type_name: String,
    /// `expires`: when the membership may expire, terminate or renew next;
    /// it opens no door from then on. `None`: no end.
    #[serde(default)]
    pub expires: Option<Timestamp>,
    /// `door_ids`: doors this membership opens (doors of other hubs are
    /// ignored).
    #[serde(default)]
    pub door_ids: Vec<DoorId>,
}

/// How a Seam ACS credential is presented (`access_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMethod {
    /// `code`: a PIN typed at a keypad.
    Code,
    /// `card`: a key card or fob.
    Card,
    /// `mobile_key`: a phone.
    MobileKey,
}

/// A Seam ACS credential: the means by which a user gains access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// `acs_credential_id`.
    pub id: CredentialId,
    /// `acs_user_id`: whose credential this is.
    pub user: UserId,
    /// `access_method`.
    pub access_method: AccessMethod,
    /// `code`: the PIN (required for [`AccessMethod::Code`]), the card
    /// number (`"123456"`, `"12:123456"` or raw hex; a card not yet encoded
    /// has none), or a mobile key token (optional; the credential id always
    /// works as the key).
    #[serde(default)]
    pub code: Option<Secret>,
    /// `starts_at`: not valid before.
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    /// `ends_at`: not valid from then on.
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// `allowed_acs_entrance_ids`: when not empty, the credential works at
    /// these doors only, and opens them by itself within its window.
    #[serde(default)]
    pub allowed_entrances: Vec<DoorId>,
    /// `is_multi_phone_sync_credential` (mobile keys).
    #[serde(default)]
    pub multi_phone_sync: bool,
    /// Brand-specific data and other fields the hub does not interpret
    /// (`credential_manager_acs_system_id`, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A Seam access code: a PIN programmed on one door.
///
/// Ongoing when `ends_at` is `None`, time bound otherwise. The hub computes
/// its status (unset, set, removed, failed) from these fields and the time:
/// see [`super::View::code_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCode {
    /// `access_code_id`.
    pub id: AccessCodeId,
    /// `device_id`: the door whose keypad takes the code.
    pub door: DoorId,
    /// `name`, for people.
    #[serde(default)]
    pub name: String,
    /// `code`: the PIN.
    pub code: Secret,
    /// `starts_at`: the code is unset before.
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    /// `ends_at`: removed from then on. `None`: ongoing.
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// `is_one_time_use`: removed after the first use.
    #[serde(default)]
    pub one_time_use: bool,
    /// `created_at`: of two codes with the same PIN on one door, the older
    /// is set and the newer fails.
    pub created_at: Timestamp,
    /// When a one-time code was used, as the cloud's record says. The
    /// hub's own uses are marked in the view ([`super::View::code_used_at`])
    /// and kept in the store's `code_uses` tree
    /// ([`crate::store::Store::record_code_use`]).
    #[serde(default)]
    pub used_at: Option<Timestamp>,
    /// The cloud deleted the code; kept until its removal is reported.
    #[serde(default)]
    pub deleted: bool,
}

/// A day of the week, for schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// Monday to Friday.
    pub const WEEKDAYS: [Day; 5] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri];
    /// Every day, Monday first.
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    /// Monday is 0.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The day of a jiff weekday.
    pub fn from_weekday(weekday: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday as W;
        match weekday {
            W::Monday => Day::Mon,
            W::Tuesday => Day::Tue,
            W::Wednesday => Day::Wed,
            W::Thursday => Day::Thu,
            W::Friday => Day::Fri,
            W::Saturday => Day::Sat,
            W::Sunday => Day::Sun,
        }
    }

    /// Three-letter English name ("Mon").
    pub fn short_name(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self.index()]
    }
}

/// A time range within a day, in local wall-clock time.
///
/// `start < end`: from `start` to `end` the same day. `start >= end`: from
/// `start` overnight to `end` the next day (`22:00-06:00`); `start == end`
/// is 24 hours (`00:00-00:00` is the whole day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// First open instant (local time).
    pub start: civil::Time,
    /// First closed instant (local time), the next day when not after
    /// `start`.
    pub end: civil::Time,
}

/// Weekly open intervals: a time range on some days of the week. A range
/// that runs overnight belongs to the day it starts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyInterval {
    /// Days on which the range starts.
    pub days: Vec<Day>,
    /// First open instant (local time).
    pub start: civil::Time,
    /// First closed instant (local time); see [`TimeRange`] for overnight.
    pub end: civil::Time,
}

/// What a schedule does on a holiday of the site.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnHolidays {
    /// Closed all day (intervals starting that day do not open).
    #[default]
    Closed,
    /// Holidays are ordinary days for this schedule (24/7 schedules).
    Normal,
    /// These ranges instead of the weekly intervals.
    Intervals(Vec<TimeRange>),
}

/// A schedule: weekly intervals in the site's time zone, and a holiday
/// rule. Evaluated on wall-clock time, so `07:00-19:00` means 07:00 on the
/// clock on both sides of a DST change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Schedule identifier.
    pub id: ScheduleId,
    /// Name shown to people ("Weekdays").
    pub name: String,
    /// Open intervals.
    pub intervals: Vec<WeeklyInterval>,
    /// Holiday rule.
    #[serde(default)]
    pub on_holidays: OnHolidays,
}

/// A holiday of the site (a local date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holiday {
    /// The date, in the site's time zone.
    pub date: civil::Date,
    /// Name shown to people ("Christmas Day").
    pub name: String,
}

/// Entryfy access kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// `KIND_PERMANENT`.
    #[default]
    Permanent,
    /// `KIND_TEMPORARY`: needs `valid_to`; dropped once expired
    /// ([`DataSet::prune_expired`]).
    Temporary,
}

/// Entryfy access status (its provisioning state in the cloud).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessStatus {
    /// `STATUS_INITIAL`: in force.
    Initial,
    /// `STATUS_READY`: in force.
    #[default]
    Ready,
    /// `STATUS_CREATING`: in force (the hub is the hardware being created).
    Creating,
    /// `STATUS_UPDATING`: in force (the previous version held until now).
    Updating,
    /// `STATUS_DELETING`: no longer grants.
    Deleting,
    /// `STATUS_DELETED`: no longer grants.
    Deleted,
}

impl AccessStatus {
    /// Whether an access with this status grants.
    pub fn in_force(self) -> bool {
        !matches!(self, AccessStatus::Deleting | AccessStatus::Deleted)
    }
}

/// How a person authenticated at a reader; also the Entryfy authentication
/// types allowed per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A card or fob.
    Card,
    /// A PIN at a keypad (a PIN credential or an access code).
    Pin,
    /// A card, then a PIN of the same user.
    CardAndPin,
    /// A phone (mobile key).
    MobileKey,
    /// A barcode or QR code.
    Barcode,
    /// A face or fingerprint reader.
    Biometric,
    /// The door access API's check by user id, door access id or barcode
    /// id (not a reader; authentication types do not apply).
    Check,
}

impl Method {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Lower-case name for messages ("card", "card and PIN").
    pub fn label(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::Pin => "PIN",
            Method::CardAndPin => "card and PIN",
            Method::MobileKey => "mobile key",
            Method::Barcode => "barcode",
            Method::Biometric => "biometric",
            Method::Check => "check",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A set of authentication types (Entryfy `in_auth_types` /
/// `out_auth_types`). Serialized as a list. A door of an access without the
/// field allows every type; an empty list allows none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AuthTypes(u8);

impl AuthTypes {
    /// No type: nobody passes in that direction through this access.
    pub const NONE: AuthTypes = AuthTypes(0);
    /// Every reader type.
    pub const ALL: AuthTypes = AuthTypes(0x3f);

    /// A set of the given types.
    pub fn of(methods: &[Method]) -> Self {
        Self(methods.iter().fold(0, |bits, m| bits | m.bit()))
    }

    /// Whether `method` passes: a type in the set; card and PIN passes
    /// where a card alone does (it is a card, and more); a check always
    /// passes.
    pub fn allows(self, method: Method) -> bool {
        match method {
            Method::Check => true,
            Method::CardAndPin => self.0 & (Method::CardAndPin.bit() | Method::Card.bit()) != 0,
            m => self.0 & m.bit() != 0,
        }
    }

    fn methods(self) -> impl Iterator<Item = Method> {
        [
            Method::Card,
            Method::Pin,
            Method::CardAndPin,
            Method::MobileKey,
            Method::Barcode,
            Method::Biometric,
        ]
        .into_iter()
        .filter(move |m| self.0 & m.bit() != 0)
    }
}

impl fmt::Debug for AuthTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.methods()).finish()
    }
}

impl Serialize for AuthTypes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A sequence of known length: postcard (the store) needs it.
        let methods: Vec<Method> = self.methods().collect();
        methods.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AuthTypes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let methods = Vec::<Method>::deserialize(deserializer)?;
        if methods.contains(&Method::Check) {
            return Err(serde::de::Error::custom(
                "`check` is not an authentication type",
            ));
        }
        Ok(AuthTypes::of(&methods))
    }
}

fn all_auth() -> AuthTypes {
    AuthTypes::ALL
}

/// A door of an Entryfy access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDoor {
    /// `door_uuid` (doors of other hubs are ignored).
    pub door: DoorId,
    /// `lock_unlock_enabled`: the door stays unlocked while the access's
    /// schedule is open.
    #[serde(default)]
    pub lock_unlock: bool,
    /// With `lock_unlock`: stay unlocked only once a valid user has been
    /// granted at the door during the open period (first-card unlock).
    #[serde(default)]
    pub first_card_unlock: bool,
    /// `in_auth_types`: authentication types allowed entering.
    #[serde(default = "all_auth")]
    pub in_auth: AuthTypes,
    /// `out_auth_types`: authentication types allowed leaving.
    #[serde(default = "all_auth")]
    pub out_auth: AuthTypes,
}

impl AccessDoor {
    /// A door with every authentication type in both directions, no
    /// lock/unlock.
    pub fn new(door: impl Into<DoorId>) -> Self {
        Self {
            door: door.into(),
            lock_unlock: false,
            first_card_unlock: false,
            in_auth: AuthTypes::ALL,
            out_auth: AuthTypes::ALL,
        }
    }
}

/// An Entryfy access: which users may use which doors during what times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `uuid`.
    pub id: AccessId,
    /// `name`.
    pub name: String,
    /// `kind`.
    #[serde(default)]
    pub kind: AccessKind,
    /// `status`.
    #[serde(default)]
    pub status: AccessStatus,
    /// `valid_from`: grants nothing before.
    #[serde(default)]
    pub valid_from: Option<Timestamp>,
    /// `valid_to`: grants nothing from then on; required for temporary
    /// accesses.
    #[serde(default)]
    pub valid_to: Option<Timestamp>,
    /// `schedule`; `None` is always open.
    #[serde(default)]
    pub schedule: Option<ScheduleId>,
    /// `doors`.
    #[serde(default)]
    pub doors: Vec<AccessDoor>,
    /// `users` (their `user_uuid`s).
    #[serde(default)]
    pub users: Vec<UserId>,
    /// `description`.
    #[serde(default)]
    pub description: String,
    /// `preferences`, kept as given.
    #[serde(default)]
    pub preferences: BTreeMap<String, String>,
    /// `welcome_email_required` (a cloud action; kept for round trips).
    #[serde(default)]
    pub welcome_email_required: bool,
    /// `created_at`.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// `updated_at`.
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

impl Access {
    /// A permanent, ready, always-open access with no doors or users.
    pub fn new(id: impl Into<AccessId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind: AccessKind::Permanent,
            status: AccessStatus::Ready,
            valid_from: None,
            valid_to: None,
            schedule: None,
            doors: Vec::new(),
            users: Vec::new(),
            description: String::new(),
            preferences: BTreeMap::new(),
            welcome_email_required: false,
            created_at: None,
            updated_at: None,
        }
    }
}

/// A biometric-platform facility: the doors an event takes place at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facility {
    /// Facility identifier.
    pub id: FacilityId,
    /// Name shown to people.
    #[serde(default)]
    pub name: String,
    /// Its doors (doors of other hubs are ignored).
    pub doors: Vec<DoorId>,
}

/// A biometric-platform event: attendees may use the facility's doors from
/// `starts_at` until `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `event_id`.
    pub id: EventId,
    /// Name shown to people.
    #[serde(default)]
    pub name: String,
    /// Where it takes place.
    pub facility: FacilityId,
    /// First instant of access.
    pub starts_at: Timestamp,
    /// First instant without access.
    pub ends_at: Timestamp,
    /// Attendees (enrolled users).
    #[serde(default)]
    pub attendees: Vec<UserId>,
}

/// A biometric-platform member: continuous access at every door of the
/// tenant until removed from the data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member.
    pub user: UserId,
}

/// Longest PIN the hub takes, in digits.
pub const PIN_MAX_DIGITS: usize = 16;

/// Why text is not a [`Pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PinError {
    /// No digits.
    #[error("empty PIN")]
    Empty,
    /// More than [`PIN_MAX_DIGITS`] digits.
    #[error("PIN longer than {PIN_MAX_DIGITS} digits")]
    TooLong,
    /// Something other than the digits 0-9.
    #[error("PIN with a character other than 0-9")]
    NotDigits,
}

/// A PIN: ASCII digits in a fixed heap buffer of [`PIN_MAX_DIGITS`] bytes,
/// the one PIN type from the keypad to the decision. Zeroized when cleared
/// and on drop; boxed, so moves never copy the digits; `Debug` and
/// `Display` never show them (nor how many there are); `==` takes the same
/// time wherever two PINs differ.
pub struct Pin {
    /// Digits first, zeros after `len`.
    digits: Box<[u8; PIN_MAX_DIGITS]>,
    len: u8,
}

impl Pin {
    /// An empty PIN, to be filled digit by digit (keypad entry).
    pub(crate) fn empty() -> Self {
        Self {
            digits: Box::new([0; PIN_MAX_DIGITS]),
            len: 0,
        }
    }

    /// Appends an ASCII digit; `false` if the buffer is full.
    pub(crate) fn push(&mut self, digit: u8) -> bool {
        match self.digits.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = digit;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// A PIN from ASCII digits (as keypad bytes arrive).
    pub fn from_digits(digits: &[u8]) -> Result<Self, PinError> {
        if digits.is_empty() {
            return Err(PinError::Empty);
        }
        if digits.len() > PIN_MAX_DIGITS {
            return Err(PinError::TooLong);
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        let mut pin = Self::empty();
        for &d in digits {
            pin.push(d);
        }
        Ok(pin)
    }

    /// A PIN from text such as `"1234"`.
    pub fn parse(text: &str) -> Result<Self, PinError> {
        Self::from_digits(text.as_bytes())
    }

    /// The digits as ASCII (`b"1234"`).
    pub fn as_bytes(&self) -> &[u8] {
        self.digits.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no digits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Zeroize for Pin {
    fn zeroize(&mut self) {
        self.digits.zeroize();
        self.len = 0;
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Pin {}

impl Clone for Pin {
    fn clone(&self) -> Self {
        let mut pin = Self::empty();
        pin.digits.copy_from_slice(&self.digits[..]);
        pin.len = self.len;
        pin
    }
}

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        // Bytes past `len` are zero, so whole buffers compare like the PINs.
        let diff = self
            .digits
            .iter()
            .zip(other.digits.iter())
            .fold(self.len ^ other.len, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl Eq for Pin {}

impl std::hash::Hash for Pin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Most raw card bytes the hub keeps (256 bits).
pub const RAW_CARD_MAX: usize = 32;

/// Why a card value does not parse or fit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardError {
    /// More raw bytes than [`RAW_CARD_MAX`].
    #[error("raw card data of {0} bytes, more than {RAW_CARD_MAX}")]
    RawTooLong(usize),
    /// The text is neither a decimal number, `facility:number`, nor hex.
    #[error("not a card number (decimal, facility:number, or hex)")]
    Syntax,
}

/// Raw card bytes as the reader sent them (a fallback key for card values
/// the cloud gives in hex). Fixed size, no heap; `Debug` shows the length
/// only.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawCard {
    len: u8,
    bytes: [u8; RAW_CARD_MAX],
}

impl RawCard {
    /// Wraps raw card bytes; at most [`RAW_CARD_MAX`].
    pub fn new(bytes: &[u8]) -> Result<Self, CardError> {
        if bytes.len() > RAW_CARD_MAX {
            return Err(CardError::RawTooLong(bytes.len()));
        }
        let mut out = [0u8; RAW_CARD_MAX];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for RawCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawCard({} bytes)", self.len)
    }
}

/// A card as a reader decoded it: facility code (when the format has one),
/// card number, and the raw bytes as a fallback key. Copy, no heap.
/// `Debug` and `Display` mask the number (`****4567`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardNumber {
    /// Facility code, for formats that have one.
    pub facility: Option<u32>,
    /// Card number; for an unknown format, all the bits as one number.
    pub number: u64,
    /// Raw card bytes (may be empty).
    pub raw: RawCard,
}

impl CardNumber {
    /// A decoded card without raw bytes.
    pub fn new(facility: Option<u32>, number: u64) -> Self {
        Self {
            facility,
            number,
            raw: RawCard::default(),
        }
    }

    /// The same card with its raw bytes.
    pub fn with_raw(self, raw: &[u8]) -> Result<Self, CardError> {
        Ok(Self {
            raw: RawCard::new(raw)?,
            ..self
        })
    }
}

/// Writes `****` and the last digits of `number`: four at most, and never
/// more than half of them.
pub(crate) fn write_masked_number(f: &mut fmt::Formatter<'_>, number: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut n = number;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let keep = (len / 2).min(4);
    f.write_str("****")?;
    for i in (0..keep).rev() {
        write!(f, "{}", char::from(digits[i]))?;
    }
    Ok(())
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_masked_number(f, self.number)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardNumber(")?;
        write_masked_number(f, self.number)?;
        f.write_str(")")
    }
}

/// A card value from the cloud (a card credential's code, a Hive
/// door_access_id), parsed into the key readers are matched on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardKey {
    /// Decimal `number` or `facility:number`. Without a facility it matches
    /// a card of any facility code with that number.
    Number {
        /// Facility code, when given.
        facility: Option<u32>,
        /// Card number.
        number: u64,
    },
    /// Hex with at least one letter, or with a `0x` prefix: raw card bytes.
    Raw(RawCard),
}

impl CardKey {
    /// Parses `123456`, `12:123456`, `FFCC8899` or `0x00123456`.
    pub fn parse(text: &str) -> Result<Self, CardError> {
        let text = text.trim();
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            return parse_hex(hex).map(CardKey::Raw);
        }
        if let Some((facility, number)) = text.split_once(':') {
            let facility = parse_decimal(facility)?;
            let facility = u32::try_from(facility).map_err(|_| CardError::Syntax)?;
            return Ok(CardKey::Number {
                facility: Some(facility),
                number: parse_decimal(number)?,
            });
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(CardKey::Number {
                facility: None,
                number: parse_decimal(text)?,
            });
        }
        parse_hex(text).map(CardKey::Raw)
    }
}

impl fmt::Debug for CardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardKey::Number { number, .. } => {
                f.write_str("CardKey(")?;
                write_masked_number(f, *number)?;
                f.write_str(")")
            }
            CardKey::Raw(raw) => write!(f, "CardKey({raw:?})"),
        }
    }
}

fn parse_decimal(text: &str) -> Result<u64, CardError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CardError::Syntax);
    }
    text.parse().map_err(|_| CardError::Syntax)
}

fn parse_hex(text: &str) -> Result<RawCard, CardError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() % 2 != 0 {
        return Err(CardError::Syntax);
    }
    if bytes.len() / 2 > RAW_CARD_MAX {
        return Err(CardError::RawTooLong(bytes.len() / 2));
    }
    let mut out = [0u8; RAW_CARD_MAX];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(CardError::Syntax)?;
        let lo = hex_value(pair[1]).ok_or(CardError::Syntax)?;
        out[i] = hi << 4 | lo;
    }
    RawCard::new(&out[..bytes.len() / 2])
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_compare_in_full_and_are_zeroized() {
        let p = |t: &str| Pin::parse(t).unwrap();
        assert_eq!(p("1234"), p("1234"));
        assert_ne!(p("1234"), p("1235"));
        assert_ne!(p("1234"), p("12340"));
        assert_ne!(p("0"), p("00"));
        assert!(Pin::from_digits(b"").is_err());
        assert!(Pin::from_digits(b"12a4").is_err());
        assert!(Pin::from_digits(&[b'1'; PIN_MAX_DIGITS]).is_ok());
        assert!(Pin::from_digits(&[b'1'; PIN_MAX_DIGITS + 1]).is_err());
        let mut secret = p("1234");
        secret.zeroize();
        assert!(secret.is_empty());
        assert_eq!(*secret.digits, [0; PIN_MAX_DIGITS]);
        assert_eq!(format!("{:?} {}", p("1234"), p("1234")), "Pin(****) ****");
    }

    #[test]
    fn pins_parse_and_never_print() {
        let pin = Pin::parse("824759").unwrap();
        assert_eq!(pin.len(), 6);
        assert!(!pin.is_empty());
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        assert_eq!(pin.to_string(), "****");
        assert_eq!(Pin::parse(""), Err(PinError::Empty));
        assert_eq!(Pin::parse("12a4"), Err(PinError::NotDigits));
        assert_eq!(Pin::parse("12345678901234567"), Err(PinError::TooLong));
        assert!(Pin::parse("1234567890123456").is_ok());
        assert_ne!(Pin::parse("1234").unwrap(), Pin::parse("12340").unwrap());
        assert_eq!(
            Pin::from_digits(b"1234").unwrap(),
            Pin::parse("1234").unwrap()
        );
    }

    #[test]
    fn card_numbers_are_masked() {
        let cases: &[(u64, &str)] = &[
            (12_344_567, "****4567"),
            (1_234_567_890, "****7890"),
            (123_456, "****456"),
            (4567, "****67"),
            (7, "****"),
            (0, "****"),
        ];
        for &(number, masked) in cases {
            let card = CardNumber::new(Some(12), number);
            assert_eq!(card.to_string(), masked, "{number}");
            assert_eq!(format!("{card:?}"), format!("CardNumber({masked})"));
        }
        let card = CardNumber::new(None, 99_994_567)
            .with_raw(&[0xff, 0xcc, 0x88, 0x99])
            .unwrap();
        let debug = format!("{card:?}");
        assert!(!debug.contains("9999") && !debug.contains("ff"), "{debug}");
        assert_eq!(
            CardNumber::new(None, 1).with_raw(&[0; 33]),
            Err(CardError::RawTooLong(33))
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::from("824759");
        assert_eq!(format!("{secret:?}"), "Secret(****)");
        assert_eq!(secret.to_string(), "****");
        assert_eq!(secret.expose(), "824759");
        let mut user = User::new("1", "Ann", "Lee");
        user.door_access_id = Some(Secret::from("FFCC8899"));
        assert!(!format!("{user:?}").contains("FFCC8899"));
    }

    #[test]
    fn card_keys_parse() {
        let number = |facility, number| CardKey::Number { facility, number };
        assert_eq!(CardKey::parse("123456"), Ok(number(None, 123_456)));
        assert_eq!(CardKey::parse(" 12:345 "), Ok(number(Some(12), 345)));
        assert_eq!(
            CardKey::parse("FFCC8899"),
            Ok(CardKey::Raw(
                RawCard::new(&[0xff, 0xcc, 0x88, 0x99]).unwrap()
            ))
        );
        assert_eq!(
            CardKey::parse("0x00123456"),
            Ok(CardKey::Raw(RawCard::new(&[0, 0x12, 0x34, 0x56]).unwrap()))
        );
        for bad in [
            "",
            "12:",
            ":12",
            "FFC",
            "xyz",
            "12:ab",
            "99999999999:1",
            "0x",
        ] {
            assert_eq!(CardKey::parse(bad), Err(CardError::Syntax), "{bad}");
        }
        assert_eq!(
            CardKey::parse(&"ab".repeat(33)),
            Err(CardError::RawTooLong(33))
        );
        assert_eq!(
            CardKey::parse("99999999999999999999999"),
            Err(CardError::Syntax)
        );
    }

    #[test]
    fn auth_types_allow() {
        let card = AuthTypes::of(&[Method::Card]);
        assert!(card.allows(Method::Card));
        assert!(card.allows(Method::CardAndPin), "card and PIN is a card");
        assert!(!card.allows(Method::Pin));
        assert!(card.allows(Method::Check));
        let both = AuthTypes::of(&[Method::CardAndPin]);
        assert!(!both.allows(Method::Card));
        assert!(both.allows(Method::CardAndPin));
        assert!(!AuthTypes::NONE.allows(Method::Card));
        for m in [
            Method::Card,
            Method::Pin,
            Method::CardAndPin,
            Method::MobileKey,
            Method::Barcode,
            Method::Biometric,
        ] {
            assert!(AuthTypes::ALL.allows(m));
        }
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let json = r#"{
            "site": {"id": "s1", "name": "Gym", "time_zone": "Europe/Berlin"},
            "doors": [{"id": "asdf123", "name": "Front Door"}],
            "schedules": [{"id": "wk", "name": "Weekdays",
                "intervals": [{"days": ["mon", "fri"], "start": "07:00", "end": "19:00"}],
                "on_holidays": {"intervals": [{"start": "10:00", "end": "14:00"}]}}],
            "accesses": [{"id": "a1", "name": "Staff", "doors": [
                {"door": "asdf123", "in_auth": ["card", "card_and_pin"]}]}]
        }"#;
        let data: DataSet = serde_json::from_str(json).unwrap();
        let door = &data.doors[0];
        assert!(door.active && door.keypad && !door.lockdown);
        let access_door = &data.accesses[0].doors[0];
        assert_eq!(
            access_door.in_auth,
            AuthTypes::of(&[Method::Card, Method::CardAndPin])
        );
        assert_eq!(access_door.out_auth, AuthTypes::ALL, "absent: every type");
        assert_eq!(data.accesses[0].status, AccessStatus::Ready);
        assert_eq!(
            data.schedules[0].intervals[0].start,
            civil::time(7, 0, 0, 0)
        );
        let back: DataSet = serde_json::from_str(&serde_json::to_string(&data).unwrap()).unwrap();
        assert_eq!(back, data);

        let bad = r#"{"door": "d", "in_auth": ["check"]}"#;
        assert!(serde_json::from_str::<AccessDoor>(bad).is_err());
    }

    #[test]
    fn prune_drops_expired_temporary_accesses_only() {
        let now: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        let mut data = DataSet::default();
        let mut temp = Access::new("temp", "Visitors");
        temp.kind = AccessKind::Temporary;
        temp.valid_to = Some("2026-04-30T00:00:00Z".parse().unwrap());
        let mut later = temp.clone();
        later.id = "later".into();
        later.valid_to = Some("2026-05-02T00:00:00Z".parse().unwrap());
        let mut perm = temp.clone();
        perm.id = "perm".into();
        perm.kind = AccessKind::Permanent;
        data.accesses = vec![temp, later, perm];
        assert_eq!(data.prune_expired(now), vec![AccessId::from("temp")]);
        let left: Vec<_> = data.accesses.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(left, ["later", "perm"]);
    }

    #[test]
    fn days_map_from_jiff() {
        use jiff::civil::Weekday;
        assert_eq!(Day::from_weekday(Weekday::Monday), Day::Mon);
        assert_eq!(Day::from_weekday(Weekday::Sunday), Day::Sun);
        assert_eq!(Day::Sat.short_name(), "Sat");
        assert_eq!(Day::ALL.len(), 7);
    }
}
