//! The decision: grant or deny one request at one door, as a pure function
//! of the request, the [`View`] and the time.
//!
//! ```text
//! let request = Request::card("front", Direction::In, CardNumber::new(Some(12), 34567));
//! let decision = decide(&request, &view, Timestamp::now());
//! if decision.granted { /* pulse the strike; longer if decision.extended_unlock */ }
//! log(decision.message());   // "outside schedule Weekdays 07:00-19:00"
//! ```
//!
//! [`decide`] does no I/O. The [`Decision`] holds its [`Reason`] with the
//! data it needs (shared names, times) and renders the message only when
//! asked ([`Decision::message`], `Display`). The identified user's summary
//! and the credential id are the only allocations of a common decision: the
//! view keeps users and credentials in compact columns (a million
//! credentials in tens of MiB) and decodes these two per decision. State that lives outside the data set comes in with the
//! request: the reader's PIN lockout ([`Request::lockout`]); what has to be
//! remembered goes out with the decision: a one-time code used up
//! ([`Decision::code_consumed`]: [`decide_entry`] marks it in the view
//! with [`View::record_code_use`], the caller persists it), a first-card unlock
//! ([`Decision::first_card_unlock`]).
//!
//! Rules, in order of precedence (the first that applies decides):
//!
//! 1. Unknown door: deny.
//! 2. Site lockdown, then door lockdown: deny, whatever else holds.
//! 3. Door inactive (Hive `active: false`): deny.
//! 4. A request with a PIN at a reader locked out after wrong PINs: deny.
//! 5. Identify: card (card credential, else Hive door_access_id as a card
//!    value), PIN (an access code set on this door, else a PIN credential),
//!    card then PIN (both the same user's), mobile key, barcode, biometric
//!    acs_id, or a check by user id / door_access_id / barcode_id (all given
//!    must match one user). Unknown: deny. An access code that is set
//!    grants here (it has no user); one not set denies with its status.
//! 6. Credential window (`starts_at`/`ends_at`) of every credential used.
//! 7. Credential entrances: a credential with allowed entrances works only
//!    there, and opens them by itself.
//! 8. Grants, the first that holds: biometric member; Hive membership (not
//!    expired, covering the door by its door_ids or by the door's membership
//!    types); Hive instructor at a door allowing instructors; biometric event
//!    (attendee, door in the facility, within the time range); Entryfy access
//!    (in force, within valid_from/valid_to, schedule open, authentication
//!    type allowed in the direction).
//! 9. Otherwise deny with the closest miss: a wrong authentication type,
//!    then outside schedule or holiday, then not yet valid, then expired,
//!    then an access no longer in force, then instructors not allowed, then
//!    no access to the door at all.
//!
//! [`door_mode`] answers the other question a door has: should it be held
//! unlocked now (Entryfy `lock_unlock_enabled` while the schedule is open,
//! possibly only after a first card)?

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use jiff::civil::DateTime;
use jiff::Timestamp;
use serde::{Serialize, Serializer};

use super::model::{
    write_masked_number, AccessCodeId, AccessStatus, CardNumber, CredentialId, DoorId, Method, Pin,
    UserId,
};
use super::schedule::ScheduleState;
use super::view::{AccessDoorEntry, CardHolder, CodeFailure, CodeStatus, RemovedReason, View};

/// Which way the person goes through the door (the reader's role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Entering (the outside reader).
    In,
    /// Leaving (the inside reader).
    Out,
}

impl Direction {
    /// "entry" or "exit", for messages.
    pub fn label(self) -> &'static str {
        match self {
            Direction::In => "entry",
            Direction::Out => "exit",
        }
    }
}

/// A reader's PIN lockout, kept by the caller's input state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// PIN requests are refused until then.
    pub until: Timestamp,
    /// Wrong PINs that caused the lockout (for the message).
    pub failed_attempts: u32,
}

/// The door access API's user check: at least one identifier; every one
/// given must match the same user.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckQuery<'a> {
    /// Hive user `id`.
    pub id: Option<&'a str>,
    /// Hive `door_access_id`.
    pub door_access_id: Option<&'a str>,
    /// Hive `barcode_id`.
    pub barcode_id: Option<&'a str>,
    /// Hive `check_only`: when false the entry is recorded
    /// ([`Decision::records_entry`]).
    pub check_only: bool,
}

/// What the person presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A card, as the reader decoded it.
    Card(CardNumber),
    /// A PIN at the keypad.
    Pin(Pin),
    /// A card, then a PIN that must be the same user's.
    CardAndPin {
        /// The card.
        card: CardNumber,
        /// The PIN.
        pin: Pin,
    },
    /// A mobile key: the credential id or its token.
    MobileKey(&'a str),
    /// A barcode (Hive `barcode_id`).
    Barcode(&'a str),
    /// A biometric reader's identification (the platform's `acs_id`).
    Biometric(&'a str),
    /// A door access API check.
    Check(CheckQuery<'a>),
}

impl Presented<'_> {
    /// The authentication method.
    pub fn method(&self) -> Method {
        match self {
            Presented::Card(_) => Method::Card,
            Presented::Pin(_) => Method::Pin,
            Presented::CardAndPin { .. } => Method::CardAndPin,
            Presented::MobileKey(_) => Method::MobileKey,
            Presented::Barcode(_) => Method::Barcode,
            Presented::Biometric(_) => Method::Biometric,
            Presented::Check(_) => Method::Check,
        }
    }

    fn has_pin(&self) -> bool {
        matches!(self, Presented::Pin(_) | Presented::CardAndPin { .. })
    }
}

/// `****` and the last characters of an identifier (at most four, at most
/// half).
struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.chars().count();
        let keep = (count / 2).min(4);
        f.write_str("****")?;
        let tail = self
            .0
            .char_indices()
            .nth(count - keep)
            .map_or("", |(i, _)| &self.0[i..]);
        f.write_str(tail)
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Debug for CheckQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckQuery")
            .field("id", &self.id)
            .field("door_access_id", &self.door_access_id.map(Masked))
            .field("barcode_id", &self.barcode_id.map(Masked))
            .field("check_only", &self.check_only)
            .finish()
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presented::Card(card) => f.debug_tuple("Card").field(card).finish(),
            Presented::Pin(pin) => f.debug_tuple("Pin").field(pin).finish(),
            Presented::CardAndPin { card, pin } => f
                .debug_struct("CardAndPin")
                .field("card", card)
                .field("pin", pin)
                .finish(),
            Presented::MobileKey(_) => f.write_str("MobileKey(****)"),
            Presented::Barcode(code) => f.debug_tuple("Barcode").field(&Masked(code)).finish(),
            Presented::Biometric(id) => f.debug_tuple("Biometric").field(id).finish(),
            Presented::Check(query) => f.debug_tuple("Check").field(query).finish(),
        }
    }
}

impl fmt::Display for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presented::Card(card) => write!(f, "card {card}"),
            Presented::Pin(_) => f.write_str("PIN"),
            Presented::CardAndPin { card, .. } => write!(f, "card {card} and PIN"),
            Presented::MobileKey(_) => f.write_str("mobile key"),
            Presented::Barcode(code) => write!(f, "barcode {}", Masked(code)),
            Presented::Biometric(id) => write!(f, "biometric id {id}"),
            Presented::Check(q) => {
                f.write_str("check of")?;
                let mut sep = " ";
                if let Some(id) = q.id {
                    write!(f, "{sep}user {id}")?;
                    sep = ", ";
                }
                if let Some(id) = q.door_access_id {
                    write!(f, "{sep}door access id {}", Masked(id))?;
                    sep = ", ";
                }
                if let Some(id) = q.barcode_id {
                    write!(f, "{sep}barcode {}", Masked(id))?;
                }
                Ok(())
            }
        }
    }
}

/// One request at one door. Borrows its text; building one allocates
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The door (from the reader's role).
    pub door: &'a str,
    /// The direction (from the reader's role).
    pub direction: Direction,
    /// What was presented.
    pub presented: Presented<'a>,
    /// The reader's PIN lockout, when the caller has one running.
    pub lockout: Option<Lockout>,
}

impl<'a> Request<'a> {
    /// A request without lockout.
    pub fn new(door: &'a str, direction: Direction, presented: Presented<'a>) -> Self {
        Self {
            door,
            direction,
            presented,
            lockout: None,
        }
    }

    /// A card at a reader.
    pub fn card(door: &'a str, direction: Direction, card: CardNumber) -> Self {
        Self::new(door, direction, Presented::Card(card))
    }

    /// A PIN at a keypad.
    pub fn pin(door: &'a str, direction: Direction, pin: Pin) -> Self {
        Self::new(door, direction, Presented::Pin(pin))
    }

    /// A card then a PIN.
    pub fn card_and_pin(door: &'a str, direction: Direction, card: CardNumber, pin: Pin) -> Self {
        Self::new(door, direction, Presented::CardAndPin { card, pin })
    }

    /// A mobile key (credential id or token).
    pub fn mobile_key(door: &'a str, direction: Direction, key: &'a str) -> Self {
        Self::new(door, direction, Presented::MobileKey(key))
    }

    /// A barcode.
    pub fn barcode(door: &'a str, direction: Direction, barcode: &'a str) -> Self {
        Self::new(door, direction, Presented::Barcode(barcode))
    }

    /// A biometric identification (acs_id).
    pub fn biometric(door: &'a str, direction: Direction, acs_id: &'a str) -> Self {
        Self::new(door, direction, Presented::Biometric(acs_id))
    }

    /// A door access API check (entering).
    pub fn check(door: &'a str, query: CheckQuery<'a>) -> Self {
        Self::new(door, Direction::In, Presented::Check(query))
    }

    /// The same request at a reader locked out until `until`.
    pub fn with_lockout(self, lockout: Lockout) -> Self {
        Self {
            lockout: Some(lockout),
            ..self
        }
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at door {} ({})",
            self.presented,
            self.door,
            self.direction.label()
        )
    }
}

/// A Hive membership as a decision reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembershipSummary {
    /// `membership_id`.
    pub id: u64,
    /// `membership_type_id`.
    pub type_id: u64,
    /// `membership_type_name`.
    pub type_name: Arc<str>,
    /// `expires`.
    pub expires: Option<Timestamp>,
}

/// The identified user, as a decision reports it (built by the decision
/// from the view's compact user columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    /// User id.
    pub id: UserId,
    /// First name.
    pub first_name: Arc<str>,
    /// Last name.
    pub last_name: Arc<str>,
    /// Instructor or staff.
    pub is_instructor: bool,
    /// Hive memberships.
    pub memberships: Box<[MembershipSummary]>,
}

/// An instant with its wall-clock time at the site, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LocalTime {
    /// The instant.
    pub at: Timestamp,
    /// The site's wall-clock time then.
    pub local: DateTime,
}

impl LocalTime {
    /// The date alone, `2026-10-01`.
    pub fn date(&self) -> impl fmt::Display + '_ {
        self.local.date()
    }
}

impl fmt::Display for LocalTime {
    /// `2026-10-01 14:05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.local;
        write!(
            f,
            "{} {:02}:{:02}",
            l.date(),
            l.time().hour(),
            l.time().minute()
        )
    }
}

/// A card number that only ever shows masked (`****4567`), in `Debug`,
/// `Display` and serialized.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MaskedCard(u64);

impl fmt::Display for MaskedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_masked_number(f, self.0)
    }
}

impl fmt::Debug for MaskedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedCard({self})")
    }
}

impl Serialize for MaskedCard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a request was granted or denied: one variant per rule, with the data
/// its message needs. `Display` is the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    // Grants.
    /// Granted by an Entryfy access.
    Access {
        /// Access name.
        access: Arc<str>,
    },
    /// Granted by a Hive membership.
    Membership {
        /// Membership type name.
        membership: Arc<str>,
    },
    /// Granted to a Hive instructor at a door allowing instructors.
    Instructor,
    /// Granted to a biometric-platform member.
    Member,
    /// Granted to an attendee of a biometric-platform event.
    Event {
        /// Event name.
        event: Arc<str>,
        /// When the event ends.
        until: LocalTime,
    },
    /// Granted by the credential's own allowed entrances.
    CredentialEntrance,
    /// Granted by a Seam access code set on the door.
    AccessCode {
        /// Code name.
        code: Arc<str>,
        /// A one-time code, used up by this grant.
        one_time: bool,
    },

    // Denials, in the order of the rules.
    /// The door is not in the data set.
    UnknownDoor,
    /// The site is in lockdown.
    SiteLockdown,
    /// The door is in lockdown.
    DoorLockdown,
    /// The door is inactive.
    DoorInactive,
    /// The reader takes no PIN after too many wrong ones.
    ReaderLocked {
        /// Wrong PINs counted.
        failed_attempts: u32,
        /// Locked until.
        until: LocalTime,
    },
    /// No credential or user has this card.
    UnknownCard {
        /// The card, masked.
        card: MaskedCard,
    },
    /// No access code on this door and no PIN credential has this PIN.
    UnknownPin,
    /// No mobile key credential matches.
    UnknownMobileKey,
    /// No user has this barcode.
    UnknownBarcode,
    /// No user has this biometric acs_id.
    UnknownBiometric,
    /// A check identifier matches no user.
    UnknownUser,
    /// A check without any identifier.
    NoIdentifier,
    /// A check whose identifiers match different users.
    IdentifiersMismatch,
    /// Card then PIN: the PIN is not the card holder's.
    PinMismatch,
    /// The credential's `starts_at` is later.
    CredentialNotYetValid {
        /// Valid from.
        starts: LocalTime,
    },
    /// The credential's `ends_at` has passed.
    CredentialExpired {
        /// Valid until.
        ended: LocalTime,
    },
    /// The credential's allowed entrances do not include the door.
    CredentialNotForDoor {
        /// Door name.
        door: Arc<str>,
    },
    /// The access code with this PIN is not active yet.
    CodeNotYetActive {
        /// Code name.
        code: Arc<str>,
        /// Active from.
        starts: LocalTime,
    },
    /// The access code with this PIN has expired.
    CodeExpired {
        /// Code name.
        code: Arc<str>,
        /// Ended at.
        ended: LocalTime,
    },
    /// The one-time access code with this PIN was used.
    CodeUsed {
        /// Code name.
        code: Arc<str>,
        /// Used at.
        used: LocalTime,
    },
    /// The access code with this PIN was deleted.
    CodeRemoved {
        /// Code name.
        code: Arc<str>,
    },
    /// The access code with this PIN could not be set.
    CodeFailed {
        /// Code name.
        code: Arc<str>,
        /// Why.
        failure: CodeFailure,
    },
    /// The access covers the door and time but not this authentication type
    /// in this direction.
    AuthTypeNotAllowed {
        /// The method used.
        method: Method,
        /// The direction.
        direction: Direction,
        /// Door name.
        door: Arc<str>,
        /// Access name.
        access: Arc<str>,
    },
    /// The access's schedule is closed now.
    OutsideSchedule {
        /// Schedule name and hours.
        schedule: Arc<str>,
    },
    /// The access's schedule is closed for a holiday.
    HolidayClosed {
        /// Holiday name.
        holiday: Arc<str>,
        /// Schedule name and hours.
        schedule: Arc<str>,
    },
    /// The access's `valid_from` is later.
    AccessNotYetValid {
        /// Access name.
        access: Arc<str>,
        /// Valid from.
        from: LocalTime,
    },
    /// The access's `valid_to` has passed.
    AccessExpired {
        /// Access name.
        access: Arc<str>,
        /// Valid until.
        ended: LocalTime,
    },
    /// The access is being deleted or was deleted.
    AccessNotInForce {
        /// Access name.
        access: Arc<str>,
        /// Its status.
        status: AccessStatus,
    },
    /// The Hive membership covering the door has expired.
    MembershipExpired {
        /// Membership type name.
        membership: Arc<str>,
        /// Expired at.
        expired: LocalTime,
    },
    /// The event at this door has not started.
    EventNotStarted {
        /// Event name.
        event: Arc<str>,
        /// Starts at.
        starts: LocalTime,
    },
    /// The event at this door has ended.
    EventEnded {
        /// Event name.
        event: Arc<str>,
        /// Ended at.
        ended: LocalTime,
    },
    /// An instructor without membership at a door not allowing instructors.
    InstructorsNotAllowed {
        /// Door name.
        door: Arc<str>,
    },
    /// Nothing gives the user this door.
    NoAccess {
        /// Door name.
        door: Arc<str>,
    },
}

impl Reason {
    /// Whether this reason grants.
    pub fn is_grant(&self) -> bool {
        matches!(
            self,
            Reason::Access { .. }
                | Reason::Membership { .. }
                | Reason::Instructor
                | Reason::Member
                | Reason::Event { .. }
                | Reason::CredentialEntrance
                | Reason::AccessCode { .. }
        )
    }

    /// How close a denial from a grant source came to granting (lower is
    /// closer): the one reported when no source grants.
    fn closeness(&self) -> u8 {
        match self {
            Reason::AuthTypeNotAllowed { .. } => 0,
            Reason::OutsideSchedule { .. } | Reason::HolidayClosed { .. } => 1,
            Reason::AccessNotYetValid { .. } | Reason::EventNotStarted { .. } => 2,
            Reason::AccessExpired { .. }
            | Reason::EventEnded { .. }
            | Reason::MembershipExpired { .. } => 3,
            Reason::AccessNotInForce { .. } => 4,
            Reason::InstructorsNotAllowed { .. } => 5,
            _ => 6,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Access { access } => write!(f, "access {access}"),
            Reason::Membership { membership } => write!(f, "membership {membership}"),
            Reason::Instructor => f.write_str("instructor"),
            Reason::Member => f.write_str("member"),
            Reason::Event { event, until } => write!(f, "event {event} until {until}"),
            Reason::CredentialEntrance => f.write_str("credential allowed at this door"),
            Reason::AccessCode {
                code,
                one_time: false,
            } => write!(f, "access code {code}"),
            Reason::AccessCode {
                code,
                one_time: true,
            } => write!(f, "one-time access code {code}, now used"),
            Reason::UnknownDoor => f.write_str("unknown door"),
            Reason::SiteLockdown => f.write_str("site in lockdown"),
            Reason::DoorLockdown => f.write_str("door in lockdown"),
            Reason::DoorInactive => f.write_str("door inactive"),
            Reason::ReaderLocked {
                failed_attempts,
                until,
            } => write!(
                f,
                "PIN locked after {failed_attempts} wrong tries, until {:02}:{:02}",
                until.local.hour(),
                until.local.minute()
            ),
            Reason::UnknownCard { card } => write!(f, "unknown card {card}"),
            Reason::UnknownPin => f.write_str("unknown PIN"),
            Reason::UnknownMobileKey => f.write_str("unknown mobile key"),
            Reason::UnknownBarcode => f.write_str("unknown barcode"),
            Reason::UnknownBiometric => f.write_str("unknown biometric id"),
            Reason::UnknownUser => f.write_str("user not found"),
            Reason::NoIdentifier => f.write_str("no id, door_access_id or barcode_id given"),
            Reason::IdentifiersMismatch => {
                f.write_str("id, door_access_id and barcode_id match different users")
            }
            Reason::PinMismatch => f.write_str("PIN does not match the card"),
            Reason::CredentialNotYetValid { starts } => {
                write!(f, "credential valid from {starts}")
            }
            Reason::CredentialExpired { ended } => write!(f, "credential expired {ended}"),
            Reason::CredentialNotForDoor { door } => {
                write!(f, "credential not allowed at {door}")
            }
            Reason::CodeNotYetActive { code, starts } => {
                write!(f, "access code {code} active from {starts}")
            }
            Reason::CodeExpired { code, ended } => {
                write!(f, "access code {code} expired {ended}")
            }
            Reason::CodeUsed { code, used } => {
                write!(f, "one-time access code {code} already used {used}")
            }
            Reason::CodeRemoved { code } => write!(f, "access code {code} removed"),
            Reason::CodeFailed { code, failure } => {
                write!(f, "access code {code} not set: {failure}")
            }
            Reason::AuthTypeNotAllowed {
                method,
                direction,
                door,
                access,
            } => write!(
                f,
                "{method} not allowed for {} at {door} (access {access})",
                direction.label()
            ),
            Reason::OutsideSchedule { schedule } => write!(f, "outside schedule {schedule}"),
            Reason::HolidayClosed { holiday, schedule } => {
                write!(f, "closed for holiday {holiday} (schedule {schedule})")
            }
            Reason::AccessNotYetValid { access, from } => {
                write!(f, "access {access} valid from {from}")
            }
            Reason::AccessExpired { access, ended } => {
                write!(f, "access {access} expired {ended}")
            }
            Reason::AccessNotInForce { access, status } => match status {
                AccessStatus::Deleted => write!(f, "access {access} was deleted"),
                _ => write!(f, "access {access} is being deleted"),
            },
            Reason::MembershipExpired {
                membership,
                expired,
            } => write!(f, "membership {membership} expired {}", expired.date()),
            Reason::EventNotStarted { event, starts } => {
                write!(f, "event {event} starts {starts}")
            }
            Reason::EventEnded { event, ended } => write!(f, "event {event} ended {ended}"),
            Reason::InstructorsNotAllowed { door } => {
                write!(f, "instructors not allowed at {door}")
            }
            Reason::NoAccess { door } => write!(f, "no access to {door}"),
        }
    }
}

/// The outcome of [`decide`]. Holds no card number or PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Open the door.
    pub granted: bool,
    /// The rule that decided.
    pub reason: Reason,
    /// The door.
    pub door: DoorId,
    /// The direction.
    pub direction: Direction,
    /// How the person authenticated.
    pub method: Method,
    /// The user, when identified (also on most denials).
    pub user: Option<Arc<UserSummary>>,
    /// The credential that identified the user, when one did (the card's,
    /// for card then PIN).
    pub credential: Option<CredentialId>,
    /// The access code the PIN matched, when one did.
    pub access_code: Option<AccessCodeId>,
    /// Granted to a user who needs a longer strike time.
    pub extended_unlock: bool,
    /// A one-time access code was used up: persist it. [`decide_entry`]
    /// has marked it in the view ([`View::record_code_use`]); [`decide()`]
    /// alone has not.
    pub code_consumed: bool,
    /// The first grant during a first-card lock/unlock period: hold the door
    /// unlocked until [`door_mode`] leaves
    /// [`DoorMode::UnlockAfterFirstCard`].
    pub first_card_unlock: bool,
    /// The entry is to be recorded (false for a check with `check_only`).
    pub records_entry: bool,
    /// When the decision was made.
    pub at: Timestamp,
}

impl Decision {
    /// The message for a person: `outside schedule Weekdays 07:00-19:00`.
    pub fn message(&self) -> String {
        self.reason.to_string()
    }

    /// Whether the caller's lockout counter should count this as a wrong
    /// PIN (an unknown PIN, or a PIN not the card holder's).
    pub fn is_wrong_pin(&self) -> bool {
        matches!(self.reason, Reason::UnknownPin | Reason::PinMismatch)
    }
}

impl fmt::Display for Decision {
    /// `denied at front (entry, card), user 201 Ann Lee: outside schedule
    /// Weekdays 07:00-19:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} ({}, {})",
            if self.granted { "granted" } else { "denied" },
            self.door,
            self.direction.label(),
            self.method
        )?;
        if let Some(user) = &self.user {
            write!(
                f,
                ", user {} {} {}",
                user.id, user.first_name, user.last_name
            )?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Whether a door should be held unlocked, from its lock/unlock accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorMode {
    /// Locked: opens only on a grant.
    Locked,
    /// Held unlocked: a lock/unlock access's schedule is open.
    Unlocked,
    /// A first-card lock/unlock schedule is open: hold unlocked once a grant
    /// with [`Decision::first_card_unlock`] happened in this period.
    UnlockAfterFirstCard,
    /// Site or door lockdown: locked, and no grant opens it.
    Lockdown,
    /// Inactive door: locked, and no grant opens it.
    Inactive,
}

/// The door's mode at `now`; `None` for an unknown door.
pub fn door_mode(view: &View, door: &str, now: Timestamp) -> Option<DoorMode> {
    let d = view.door_ix(door)?;
    Some(door_mode_ix(view, d, now))
}

fn door_mode_ix(view: &View, d: u32, now: Timestamp) -> DoorMode {
    let door = view.door_data(d);
    if view.site_lockdown() || view.door_lockdown(d) {
        return DoorMode::Lockdown;
    }
    if !door.active {
        return DoorMode::Inactive;
    }
    let entries = &view.doors[d as usize].lock_unlock;
    if entries.is_empty() {
        return DoorMode::Locked;
    }
    let local = view.tz.to_datetime(now);
    let mut first_card = false;
    for &(a, pos) in entries.iter() {
        let access = &view.accesses[a as usize];
        let valid = access.status.in_force()
            && access.valid_from.is_none_or(|from| from <= now)
            && access.valid_to.is_none_or(|to| now < to)
            && access
                .schedule
                .is_none_or(|s| view.schedules[s as usize].is_open(local, &view.holidays));
        if !valid {
            continue;
        }
        if access.doors[pos as usize].first_card_unlock {
            first_card = true;
        } else {
            return DoorMode::Unlocked;
        }
    }
    if first_card {
        DoorMode::UnlockAfterFirstCard
    } else {
        DoorMode::Locked
    }
}

/// A user index lookup by one identifier.
type UserLookup = fn(&View, &str) -> Option<u32>;

/// Who a request identified.
enum Identity {
    /// A user, with up to two credentials (card and PIN).
    User { user: u32, creds: [Option<u32>; 2] },
    /// An access code set on the door.
    Code(u32),
}

struct Ctx<'v> {
    view: &'v View,
    now: Timestamp,
    local_now: Cell<Option<DateTime>>,
    door: u32,
    direction: Direction,
    method: Method,
}

impl Ctx<'_> {
    fn local(&self, at: Timestamp) -> LocalTime {
        LocalTime {
            at,
            local: self.view.tz.to_datetime(at),
        }
    }

    fn local_now(&self) -> DateTime {
        if let Some(local) = self.local_now.get() {
            return local;
        }
        let local = self.view.tz.to_datetime(self.now);
        self.local_now.set(Some(local));
        local
    }

    fn door_name(&self) -> Arc<str> {
        self.view.doors[self.door as usize].name.clone()
    }

    fn run(&self, request: &Request<'_>, d: &mut Decision) -> Reason {
        let view = self.view;
        let door = view.door_data(self.door);
        if view.site_lockdown() {
            return Reason::SiteLockdown;
        }
        if view.door_lockdown(self.door) {
            return Reason::DoorLockdown;
        }
        if !door.active {
            return Reason::DoorInactive;
        }
        if request.presented.has_pin() {
            if let Some(lockout) = request.lockout {
                if self.now < lockout.until {
                    return Reason::ReaderLocked {
                        failed_attempts: lockout.failed_attempts,
                        until: self.local(lockout.until),
                    };
                }
            }
        }
        let (user, creds) = match self.identify(&request.presented) {
            Err(reason) => return reason,
            Ok(Identity::Code(k)) => {
                let code = &view.codes[k as usize];
                d.access_code = Some(code.id.clone());
                d.code_consumed = code.one_time_use;
                return Reason::AccessCode {
                    code: code.name.clone(),
                    one_time: code.one_time_use,
                };
            }
            Ok(Identity::User { user, creds }) => (user, creds),
        };
        d.user = Some(view.users.summary(user));
        d.extended_unlock = view.users.extended_unlock(user);
        d.credential = creds
            .iter()
            .flatten()
            .next()
            .map(|&c| view.credentials.id(c));

        // Credential windows and entrances.
        let mut by_entrance = false;
        for &c in creds.iter().flatten() {
            let cred = &view.credentials[c as usize];
            if let Some(starts) = cred.starts_at {
                if self.now < starts {
                    return Reason::CredentialNotYetValid {
                        starts: self.local(starts),
                    };
                }
            }
            if let Some(ends) = cred.ends_at {
                if ends <= self.now {
                    return Reason::CredentialExpired {
                        ended: self.local(ends),
                    };
                }
            }
            if let Some(entrances) = &cred.entrances {
                if entrances.binary_search(&self.door).is_err() {
                    return Reason::CredentialNotForDoor {
                        door: self.door_name(),
                    };
                }
                by_entrance = true;
            }
        }
        if by_entrance {
            return Reason::CredentialEntrance;
        }
        self.sources(user)
    }

    fn identify(&self, presented: &Presented<'_>) -> Result<Identity, Reason> {
        let view = self.view;
        let user_of = |c: u32| Identity::User {
            user: view.credentials.user(c),
            creds: [Some(c), None],
        };
        let just_user = |u: u32| Identity::User {
            user: u,
            creds: [None, None],
        };
        match presented {
            Presented::Card(card) => match view.card_holder(card) {
                Some(CardHolder::Credential(c)) => Ok(user_of(c)),
                Some(CardHolder::User(u)) => Ok(just_user(u)),
                None => Err(Reason::UnknownCard {
                    card: MaskedCard(card.number),
                }),
            },
            Presented::Pin(pin) => self.identify_pin(pin),
            Presented::CardAndPin { card, pin } => {
                let (user, card_cred) = match view.card_holder(card) {
                    Some(CardHolder::Credential(c)) => (view.credentials.user(c), Some(c)),
                    Some(CardHolder::User(u)) => (u, None),
                    None => {
                        return Err(Reason::UnknownCard {
                            card: MaskedCard(card.number),
                        })
                    }
                };
                let pin_cred = view.pin_credential(pin).ok_or(Reason::UnknownPin)?;
                if view.credentials.user(pin_cred) != user {
                    return Err(Reason::PinMismatch);
                }
                Ok(Identity::User {
                    user,
                    creds: [card_cred, Some(pin_cred)],
                })
            }
            Presented::MobileKey(key) => view
                .mobile_key(key)
                .map(user_of)
                .ok_or(Reason::UnknownMobileKey),
            Presented::Barcode(code) => view
                .user_by_barcode(code)
                .map(just_user)
                .ok_or(Reason::UnknownBarcode),
            Presented::Biometric(id) => view
                .user_by_acs_id(id)
                .map(just_user)
                .ok_or(Reason::UnknownBiometric),
            Presented::Check(query) => {
                let lookups: [(Option<&str>, UserLookup); 3] = [
                    (query.id, View::user_by_id),
                    (query.door_access_id, View::user_by_door_access_id),
                    (query.barcode_id, View::user_by_barcode),
                ];
                let mut found = None;
                for (value, lookup) in lookups {
                    let Some(value) = value else { continue };
                    let user = lookup(view, value).ok_or(Reason::UnknownUser)?;
                    match found {
                        Some(other) if other != user => return Err(Reason::IdentifiersMismatch),
                        _ => found = Some(user),
                    }
                }
                found.map(just_user).ok_or(Reason::NoIdentifier)
            }
        }
    }

    fn identify_pin(&self, pin: &Pin) -> Result<Identity, Reason> {
        let view = self.view;
        let mut code_denial = None;
        if let Some(group) = view.door_codes(self.door, pin) {
            // The group is in precedence order: the first live code is set.
            if let Some(&k) = group.iter().find(|&&k| view.code_live(k, self.now)) {
                return Ok(Identity::Code(k));
            }
            // Report the newest code with this PIN: most likely the one the
            // person was given.
            code_denial = group.last().map(|&k| self.code_denial(k));
        }
        if let Some(c) = view.pin_credential(pin) {
            return Ok(Identity::User {
                user: view.credentials.user(c),
                creds: [Some(c), None],
            });
        }
        Err(code_denial.unwrap_or(Reason::UnknownPin))
    }

    fn code_denial(&self, k: u32) -> Reason {
        let code = &self.view.codes[k as usize];
        let name = code.name.clone();
        match self.view.code_status_at(k, self.now) {
            CodeStatus::Unset => Reason::CodeNotYetActive {
                code: name,
                starts: self.local(code.starts_at.unwrap_or(self.now)),
            },
            CodeStatus::Removed {
                why: RemovedReason::Expired,
            } => Reason::CodeExpired {
                code: name,
                ended: self.local(code.ends_at.unwrap_or(self.now)),
            },
            CodeStatus::Removed {
                why: RemovedReason::Used,
            } => Reason::CodeUsed {
                code: name,
                used: self.local(code.used_at.get().unwrap_or(self.now)),
            },
            CodeStatus::Removed {
                why: RemovedReason::Deleted,
            }
            | CodeStatus::Set => Reason::CodeRemoved { code: name },
            CodeStatus::Failed { reason } => Reason::CodeFailed {
                code: name,
                failure: reason,
            },
        }
    }

    /// Grant sources for an identified user; the closest miss otherwise.
    fn sources(&self, user: u32) -> Reason {
        let view = self.view;
        let users = &view.users;
        if users.is_member(user) {
            return Reason::Member;
        }
        let mut best: Option<Reason> = None;
        let mut consider = |reason: Reason| {
            if best
                .as_ref()
                .is_none_or(|b| reason.closeness() < b.closeness())
            {
                best = Some(reason);
            }
        };

        // Hive memberships and instructors.
        let door = view.door_data(self.door);
        for m in users[user as usize].memberships.iter() {
            let covers = m.doors.binary_search(&self.door).is_ok()
                || door.membership_type_ids.contains(&m.type_id);
            if !covers {
                continue;
            }
            match m.expires {
                Some(expires) if expires <= self.now => consider(Reason::MembershipExpired {
                    membership: m.name.clone(),
                    expired: self.local(expires),
                }),
                _ => {
                    return Reason::Membership {
                        membership: m.name.clone(),
                    }
                }
            }
        }
        if users.is_instructor(user) {
            if door.allow_instructors {
                return Reason::Instructor;
            }
            consider(Reason::InstructorsNotAllowed {
                door: self.door_name(),
            });
        }

        // Biometric events.
        for &e in users.events(user).iter() {
            let event = &view.events[e as usize];
            if event.doors.binary_search(&self.door).is_err() {
                continue;
            }
            if self.now < event.starts_at {
                consider(Reason::EventNotStarted {
                    event: event.name.clone(),
                    starts: self.local(event.starts_at),
                });
            } else if event.ends_at <= self.now {
                consider(Reason::EventEnded {
                    event: event.name.clone(),
                    ended: self.local(event.ends_at),
                });
            } else {
                return Reason::Event {
                    event: event.name.clone(),
                    until: self.local(event.ends_at),
                };
            }
        }

        // Entryfy accesses: walk the shorter of the user's and the door's
        // lists.
        let door_accesses = &view.doors[self.door as usize].accesses;
        let user_accesses = users.accesses(user);
        if user_accesses.len() <= door_accesses.len() {
            for &a in user_accesses.iter() {
                if let Some(door_entry) = view.accesses[a as usize].door(self.door) {
                    match self.check_access(a, door_entry) {
                        Ok(grant) => return grant,
                        Err(miss) => consider(miss),
                    }
                }
            }
        } else {
            for &a in door_accesses.iter() {
                let access = &view.accesses[a as usize];
                if access.users.binary_search(&user).is_err() {
                    continue;
                }
                if let Some(door_entry) = access.door(self.door) {
                    match self.check_access(a, door_entry) {
                        Ok(grant) => return grant,
                        Err(miss) => consider(miss),
                    }
                }
            }
        }

        best.unwrap_or_else(|| Reason::NoAccess {
            door: self.door_name(),
        })
    }

    fn check_access(&self, a: u32, door_entry: &AccessDoorEntry) -> Result<Reason, Reason> {
        let view = self.view;
        let access = &view.accesses[a as usize];
        if !access.status.in_force() {
            return Err(Reason::AccessNotInForce {
                access: access.name.clone(),
                status: access.status,
            });
        }
        if let Some(from) = access.valid_from {
            if self.now < from {
                return Err(Reason::AccessNotYetValid {
                    access: access.name.clone(),
                    from: self.local(from),
                });
            }
        }
        if let Some(to) = access.valid_to {
            if to <= self.now {
                return Err(Reason::AccessExpired {
                    access: access.name.clone(),
                    ended: self.local(to),
                });
            }
        }
        if let Some(s) = access.schedule {
            let schedule = &view.schedules[s as usize];
            match schedule.state_at(self.local_now(), &view.holidays) {
                ScheduleState::Open => {}
                ScheduleState::Closed => {
                    return Err(Reason::OutsideSchedule {
                        schedule: schedule.label().clone(),
                    })
                }
                ScheduleState::Holiday(holiday) => {
                    return Err(Reason::HolidayClosed {
                        holiday,
                        schedule: schedule.label().clone(),
                    })
                }
            }
        }
        let allowed = match self.direction {
            Direction::In => door_entry.in_auth,
            Direction::Out => door_entry.out_auth,
        };
        if !allowed.allows(self.method) {
            return Err(Reason::AuthTypeNotAllowed {
                method: self.method,
                direction: self.direction,
                door: self.door_name(),
                access: access.name.clone(),
            });
        }
        Ok(Reason::Access {
            access: access.name.clone(),
        })
    }
}

/// [`decide()`] for an entry that happens (a door opens on the grant): a
/// one-time access code it uses up is marked used in `view` at once
/// ([`View::record_code_use`], an atomic compare-and-swap), so the view
/// refuses it from the next decision on. When another decision used the
/// code first, this one lost the race: it is decided again and refused
/// like any later use ("already used"). The caller persists a use
/// ([`Decision::code_consumed`]).
pub fn decide_entry(request: &Request<'_>, view: &View, now: Timestamp) -> Decision {
    let decision = decide(request, view, now);
    if !decision.code_consumed {
        return decision;
    }
    match &decision.access_code {
        Some(code) if view.record_code_use(code, decision.at) => decision,
        // The code reads as used now, so this is the "already used" denial.
        _ => decide(request, view, now),
    }
}

/// Decides one request at `now`. Pure: no I/O, no clock, no state beyond
/// the arguments; it does not mark a one-time code used ([`decide_entry`]
/// does). See the module documentation for the rules.
pub fn decide(request: &Request<'_>, view: &View, now: Timestamp) -> Decision {
    let method = request.presented.method();
    let records_entry = !matches!(&request.presented, Presented::Check(q) if q.check_only);
    let mut decision = Decision {
        granted: false,
        reason: Reason::UnknownDoor,
        door: DoorId::from(""),
        direction: request.direction,
        method,
        user: None,
        credential: None,
        access_code: None,
        extended_unlock: false,
        code_consumed: false,
        first_card_unlock: false,
        records_entry,
        at: now,
    };
    let Some(door) = view.door_ix(request.door) else {
        decision.door = DoorId::from(request.door);
        return decision;
    };
    decision.door = view.doors[door as usize].id.clone();
    let ctx = Ctx {
        view,
        now,
        local_now: Cell::new(None),
        door,
        direction: request.direction,
        method,
    };
    decision.reason = ctx.run(request, &mut decision);
    decision.granted = decision.reason.is_grant();
    if decision.granted {
        decision.first_card_unlock = records_entry
            && !view.doors[door as usize].lock_unlock.is_empty()
            && door_mode_ix(view, door, now) == DoorMode::UnlockAfterFirstCard;
    } else {
        decision.extended_unlock = false;
        decision.code_consumed = false;
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{at, data, now, view};
    use super::super::model::*;
    use super::*;

    fn card(facility: Option<u32>, number: u64) -> CardNumber {
        CardNumber::new(facility, number)
    }

    fn pin(text: &str) -> Pin {
        Pin::parse(text).unwrap()
    }

    fn id(user: &str) -> CheckQuery<'_> {
        CheckQuery {
            id: Some(user),
            ..CheckQuery::default()
        }
    }

    use Direction::{In, Out};

    struct Case {
        name: &'static str,
        request: Request<'static>,
        at: Timestamp,
        granted: bool,
        message: &'static str,
        user: Option<&'static str>,
    }

    fn case(
        name: &'static str,
        request: Request<'static>,
        at: Timestamp,
        granted: bool,
        message: &'static str,
        user: Option<&'static str>,
    ) -> Case {
        Case {
            name,
            request,
            at,
            granted,
            message,
            user,
        }
    }

    fn run_cases(view: &View, cases: &[Case]) {
        for c in cases {
            let d = decide(&c.request, view, c.at);
            assert_eq!(
                (d.granted, d.message().as_str()),
                (c.granted, c.message),
                "{}",
                c.name
            );
            assert_eq!(d.granted, d.reason.is_grant(), "{}", c.name);
            assert_eq!(
                d.user.as_ref().map(|u| u.id.as_str()),
                c.user,
                "{}: user",
                c.name
            );
            assert_eq!(d.at, c.at);
            assert_eq!(d.method, c.request.presented.method());
            assert_eq!(d.direction, c.request.direction);
        }
    }

    #[test]
    fn every_rule_table() {
        let raw_ann = CardNumber::new(None, 4_291_594_393)
            .with_raw(&[0xff, 0xcc, 0x88, 0x99])
            .unwrap();
        let bob_by_barcode = CheckQuery {
            barcode_id: Some("bob-barcode"),
            ..CheckQuery::default()
        };
        let all_of_ann = CheckQuery {
            id: Some("201"),
            door_access_id: Some("FFCC8899"),
            barcode_id: Some("123456789abc"),
            check_only: false,
        };
        let mixed = CheckQuery {
            id: Some("201"),
            barcode_id: Some("bob-barcode"),
            ..CheckQuery::default()
        };
        let ann = Some("201");
        let cases = [
            // Entryfy accesses: schedule, direction, authentication types.
            case(
                "card, access in schedule",
                Request::card("front", In, card(Some(12), 34567)),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "PIN credential",
                Request::pin("front", In, pin("4321")),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "card then PIN",
                Request::card_and_pin("back", In, card(Some(12), 34567), pin("4321")),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "card alone where card and PIN is required",
                Request::card("back", In, card(Some(12), 34567)),
                now(),
                false,
                "card not allowed for entry at Back Door (access Staff)",
                ann,
            ),
            case(
                "card on the way out",
                Request::card("back", Out, card(Some(12), 34567)),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "PIN not allowed out",
                Request::pin("back", Out, pin("4321")),
                now(),
                false,
                "PIN not allowed for exit at Back Door (access Staff)",
                ann,
            ),
            case(
                "barcode not allowed in",
                Request::barcode("front", In, "123456789abc"),
                now(),
                false,
                "barcode not allowed for entry at Front Door (access Staff)",
                ann,
            ),
            case(
                "outside schedule",
                Request::card("front", In, card(Some(12), 34567)),
                at("2026-06-03T19:00"),
                false,
                "outside schedule Weekdays 07:00-19:00",
                ann,
            ),
            case(
                "weekend",
                Request::card("front", In, card(Some(12), 34567)),
                at("2026-06-06T10:00"),
                false,
                "outside schedule Weekdays 07:00-19:00",
                ann,
            ),
            case(
                "holiday",
                Request::card("front", In, card(Some(12), 34567)),
                at("2026-12-25T10:00"),
                false,
                "closed for holiday Christmas Day (schedule Weekdays 07:00-19:00)",
                ann,
            ),
            case(
                "card stored without facility matches any",
                Request::card("back", In, card(Some(99), 777)),
                at("2026-06-03T23:00"),
                true,
                "access Night Shift",
                Some("207"),
            ),
            case(
                "overnight after midnight",
                Request::card("back", In, card(None, 777)),
                at("2026-06-04T05:59"),
                true,
                "access Night Shift",
                Some("207"),
            ),
            case(
                "overnight ended",
                Request::card("back", In, card(None, 777)),
                at("2026-06-04T06:00"),
                false,
                "outside schedule Night Shift 22:00-06:00",
                Some("207"),
            ),
            case(
                "temporary access not yet valid",
                Request::card("front", In, card(None, 1010)),
                now(),
                false,
                "access Contractors valid from 2026-06-10 00:00",
                Some("210"),
            ),
            case(
                "temporary access valid",
                Request::card("front", In, card(None, 1010)),
                at("2026-06-15T03:00"),
                true,
                "access Contractors",
                Some("210"),
            ),
            case(
                "temporary access expired",
                Request::card("front", In, card(None, 1010)),
                at("2026-06-20T00:00"),
                false,
                "access Contractors expired 2026-06-20 00:00",
                Some("210"),
            ),
            case(
                "access being deleted",
                Request::card("front", In, card(None, 1111)),
                now(),
                false,
                "access Old is being deleted",
                Some("211"),
            ),
            // Seam credentials.
            case(
                "credential not yet valid",
                Request::card("front", In, card(None, 888)),
                now(),
                false,
                "credential valid from 2026-07-01 00:00",
                Some("208"),
            ),
            case(
                "credential expired",
                Request::card("front", In, card(None, 999)),
                now(),
                false,
                "credential expired 2026-01-01 00:00",
                Some("209"),
            ),
            case(
                "mobile key by token at an allowed entrance",
                Request::mobile_key("lab", In, "tok-fay"),
                now(),
                true,
                "credential allowed at this door",
                Some("206"),
            ),
            case(
                "mobile key by credential id",
                Request::mobile_key("lab", Out, "c-fay-mobile"),
                now(),
                true,
                "credential allowed at this door",
                Some("206"),
            ),
            case(
                "mobile key elsewhere",
                Request::mobile_key("front", In, "tok-fay"),
                now(),
                false,
                "credential not allowed at Front Door",
                Some("206"),
            ),
            case(
                "mobile key before its window",
                Request::mobile_key("lab", In, "tok-fay"),
                at("2026-02-01T00:00"),
                false,
                "credential valid from 2026-03-01 00:00",
                Some("206"),
            ),
            case(
                "mobile key after its window",
                Request::mobile_key("lab", In, "tok-fay"),
                at("2027-01-01T00:00"),
                false,
                "credential expired 2026-12-31 00:00",
                Some("206"),
            ),
            // Hive: door_access_id, barcode, memberships, instructors.
            case(
                "door_access_id as raw card",
                Request::card("front", In, raw_ann),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "door_access_id as number, membership by door type",
                Request::card("front", In, card(Some(5), 555_000)),
                now(),
                true,
                "membership Standard Monthly",
                Some("202"),
            ),
            case(
                "membership by door_ids",
                Request::barcode("gym", In, "bob-barcode"),
                now(),
                true,
                "membership Unlimited Access",
                Some("202"),
            ),
            case(
                "membership expired",
                Request::card("front", In, card(None, 555_000)),
                at("2026-10-01T00:00"),
                false,
                "membership Standard Monthly expired 2026-10-01",
                Some("202"),
            ),
            case(
                "membership not for this door",
                Request::check("back", bob_by_barcode),
                now(),
                false,
                "no access to Back Door",
                Some("202"),
            ),
            case(
                "instructor allowed",
                Request::check("front", id("203")),
                now(),
                true,
                "instructor",
                Some("203"),
            ),
            case(
                "instructor not allowed",
                Request::check("back", id("203")),
                now(),
                false,
                "instructors not allowed at Back Door",
                Some("203"),
            ),
            case(
                "check with every identifier",
                Request::check("front", all_of_ann),
                now(),
                true,
                "access Staff",
                ann,
            ),
            case(
                "check identifiers of two users",
                Request::check("front", mixed),
                now(),
                false,
                "id, door_access_id and barcode_id match different users",
                None,
            ),
            case(
                "check unknown user",
                Request::check("front", id("999")),
                now(),
                false,
                "user not found",
                None,
            ),
            case(
                "check without identifier",
                Request::check("front", CheckQuery::default()),
                now(),
                false,
                "no id, door_access_id or barcode_id given",
                None,
            ),
            // Biometric platform: members and events.
            case(
                "member anywhere",
                Request::biometric("back", In, "acs-204"),
                now(),
                true,
                "member",
                Some("204"),
            ),
            case(
                "member at night",
                Request::biometric("lab", Out, "acs-204"),
                at("2026-06-07T03:00"),
                true,
                "member",
                Some("204"),
            ),
            case(
                "event attendee during the event",
                Request::biometric("front", In, "acs-205"),
                at("2026-06-05T19:00"),
                true,
                "event Gala until 2026-06-05 23:00",
                Some("205"),
            ),
            case(
                "event at another facility door",
                Request::biometric("lobby", In, "acs-205"),
                at("2026-06-05T18:00"),
                true,
                "event Gala until 2026-06-05 23:00",
                Some("205"),
            ),
            case(
                "event not started",
                Request::biometric("front", In, "acs-205"),
                at("2026-06-05T17:59"),
                false,
                "event Gala starts 2026-06-05 18:00",
                Some("205"),
            ),
            case(
                "event ended",
                Request::biometric("front", In, "acs-205"),
                at("2026-06-05T23:00"),
                false,
                "event Gala ended 2026-06-05 23:00",
                Some("205"),
            ),
            case(
                "door outside the facility",
                Request::biometric("back", In, "acs-205"),
                at("2026-06-05T19:00"),
                false,
                "no access to Back Door",
                Some("205"),
            ),
            // Seam access codes.
            case(
                "ongoing code",
                Request::pin("front", In, pin("2468")),
                now(),
                true,
                "access code Guest",
                None,
            ),
            case(
                "code on another door",
                Request::pin("back", In, pin("2468")),
                now(),
                false,
                "unknown PIN",
                None,
            ),
            case(
                "time-bound code before",
                Request::pin("front", In, pin("1357")),
                now(),
                false,
                "access code Visit active from 2026-06-10 10:00",
                None,
            ),
            case(
                "time-bound code during",
                Request::pin("front", In, pin("1357")),
                at("2026-06-11T10:00"),
                true,
                "access code Visit",
                None,
            ),
            case(
                "time-bound code after",
                Request::pin("front", In, pin("1357")),
                at("2026-06-13T10:00"),
                false,
                "access code Visit expired 2026-06-12 12:00",
                None,
            ),
            case(
                "one-time code",
                Request::pin("front", In, pin("8642")),
                now(),
                true,
                "one-time access code Courier, now used",
                None,
            ),
            case(
                "deleted code",
                Request::pin("lab", In, pin("1122")),
                now(),
                false,
                "access code Old Guest removed",
                None,
            ),
            case(
                "code that cannot be set",
                Request::pin("lab", In, pin("3344")),
                now(),
                false,
                "access code Backwards not set: ends before it starts",
                None,
            ),
            case(
                "code clashing with a PIN credential",
                Request::pin("front", In, pin("4321")),
                at("2026-06-06T10:00"),
                false,
                "outside schedule Weekdays 07:00-19:00",
                ann,
            ),
            // Unknown things.
            case(
                "unknown PIN",
                Request::pin("front", In, pin("0000")),
                now(),
                false,
                "unknown PIN",
                None,
            ),
            case(
                "unknown card",
                Request::card("front", In, card(Some(1), 87_654_321)),
                now(),
                false,
                "unknown card ****4321",
                None,
            ),
            case(
                "unknown mobile key",
                Request::mobile_key("lab", In, "tok-x"),
                now(),
                false,
                "unknown mobile key",
                None,
            ),
            case(
                "unknown barcode",
                Request::barcode("front", In, "nope"),
                now(),
                false,
                "unknown barcode",
                None,
            ),
            case(
                "unknown biometric id",
                Request::biometric("front", In, "acs-0"),
                now(),
                false,
                "unknown biometric id",
                None,
            ),
            case(
                "unknown door",
                Request::biometric("attic", In, "acs-204"),
                now(),
                false,
                "unknown door",
                None,
            ),
            case(
                "card then someone else's PIN",
                Request::card_and_pin("back", In, card(None, 777), pin("4321")),
                now(),
                false,
                "PIN does not match the card",
                None,
            ),
            case(
                "card then unknown PIN",
                Request::card_and_pin("back", In, card(None, 777), pin("0000")),
                now(),
                false,
                "unknown PIN",
                None,
            ),
            case(
                "unknown card then PIN",
                Request::card_and_pin("back", In, card(None, 1), pin("4321")),
                now(),
                false,
                "unknown card ****",
                None,
            ),
            // Hive: inactive door.
            case(
                "inactive door",
                Request::biometric("vault", In, "acs-204"),
                now(),
                false,
                "door inactive",
                None,
            ),
        ];
        run_cases(&view(), &cases);
    }

    #[test]
    fn decision_fields() {
        let view = view();
        let d = decide(
            &Request::card("front", In, card(Some(12), 34567)),
            &view,
            now(),
        );
        assert!(d.granted && d.extended_unlock && d.records_entry);
        assert_eq!(d.door.as_str(), "front");
        assert_eq!(d.credential, Some("c-ann-card".into()));
        assert_eq!(d.access_code, None);
        assert!(!d.code_consumed && !d.first_card_unlock);
        let user = d.user.as_ref().unwrap();
        assert_eq!((&*user.first_name, &*user.last_name), ("Ann", "Lee"));

        // Extended unlock only for users who need it, only on grants.
        let d = decide(&Request::barcode("gym", In, "bob-barcode"), &view, now());
        assert!(d.granted && !d.extended_unlock);
        assert_eq!(d.user.as_ref().unwrap().memberships.len(), 2);
        assert_eq!(
            &*d.user.as_ref().unwrap().memberships[0].type_name,
            "Standard Monthly"
        );
        let d = decide(
            &Request::card("front", In, card(Some(12), 34567)),
            &view,
            at("2026-06-06T10:00"),
        );
        assert!(!d.granted && !d.extended_unlock);

        // Card then PIN reports the card's credential.
        let d = decide(
            &Request::card_and_pin("back", In, card(Some(12), 34567), pin("4321")),
            &view,
            now(),
        );
        assert_eq!(d.credential, Some("c-ann-card".into()));
        // A PIN alone, the PIN's.
        let d = decide(&Request::pin("front", In, pin("4321")), &view, now());
        assert_eq!(d.credential, Some("c-ann-pin".into()));

        // Codes: which code, and whether it was used up.
        let d = decide(&Request::pin("front", In, pin("2468")), &view, now());
        assert_eq!(d.access_code, Some("code-guest".into()));
        assert!(!d.code_consumed && d.user.is_none() && !d.extended_unlock);
        let d = decide(&Request::pin("front", In, pin("8642")), &view, now());
        assert!(d.code_consumed);

        // check_only: no entry recorded.
        let q = CheckQuery {
            check_only: true,
            ..id("203")
        };
        let d = decide(&Request::check("front", q), &view, now());
        assert!(d.granted && !d.records_entry);
        assert_eq!(d.method, Method::Check);

        // Unknown door keeps the requested id.
        let d = decide(&Request::pin("attic", In, pin("2468")), &view, now());
        assert_eq!(d.door.as_str(), "attic");
    }

    #[test]
    fn one_time_code_is_used_once() {
        let view = view();
        let request = Request::pin("front", In, pin("8642"));
        // `decide` alone marks nothing: asking twice grants twice.
        assert!(decide(&request, &view, now()).code_consumed);
        let first = decide_entry(&request, &view, now());
        assert!(first.granted && first.code_consumed);
        assert_eq!(view.code_used_at("code-once"), Some(first.at));
        let again = decide_entry(&request, &view, at("2026-06-03T10:05"));
        assert!(!again.granted && !again.code_consumed && !again.is_wrong_pin());
        assert_eq!(
            again.message(),
            "one-time access code Courier already used 2026-06-03 10:00"
        );
        assert_eq!(decide(&request, &view, at("2026-06-03T10:05")), again);
    }

    #[test]
    fn racing_entries_with_one_code_open_once() {
        let request = Request::pin("front", In, pin("8642"));
        for round in 0..20 {
            let view = std::sync::Arc::new(view());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
            let decisions: Vec<Decision> = (0..3)
                .map(|_| {
                    let (view, barrier) = (view.clone(), barrier.clone());
                    let request = request.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        decide_entry(&request, &view, now())
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            let granted = decisions.iter().filter(|d| d.granted).count();
            assert_eq!(granted, 1, "round {round}");
            for d in decisions.iter().filter(|d| !d.granted) {
                assert!(!d.code_consumed);
                assert!(d.message().contains("already used"), "{}", d.message());
            }
        }
    }

    #[test]
    fn duplicate_and_conflicting_codes() {
        let view = view();
        // Guest and Dup share 2468 on the front door: the older, Guest, is
        // the one that opens.
        let d = decide(&Request::pin("front", In, pin("2468")), &view, now());
        assert_eq!(d.access_code, Some("code-guest".into()));
        // Once Guest is deleted, Dup takes over.
        let mut data = data();
        data.access_codes[0].deleted = true;
        let view = View::build(data).unwrap();
        let d = decide(&Request::pin("front", In, pin("2468")), &view, now());
        assert_eq!(d.access_code, Some("code-dup".into()));
        assert_eq!(d.message(), "access code Dup");
        // A code that is unset and whose PIN holder has expired reports the
        // newest code with the PIN.
        let mut data = super::super::fixture::data();
        let mut later =
            super::super::fixture::code("later", "front", "Later", "1357", "2026-03-01T00:00");
        later.starts_at = Some(at("2026-07-01T00:00"));
        data.access_codes.push(later);
        let view = View::build(data).unwrap();
        let d = decide(
            &Request::pin("front", In, pin("1357")),
            &view,
            at("2026-06-20T00:00"),
        );
        assert_eq!(
            d.message(),
            "access code Later active from 2026-07-01 00:00"
        );
    }

    #[test]
    fn lockdown_beats_everything() {
        let mut view = view();
        view.set_site_lockdown(true);
        let requests = [
            Request::biometric("back", In, "acs-204"),
            Request::pin("front", In, pin("2468")),
            Request::check("front", id("203")),
            Request::mobile_key("lab", In, "tok-fay"),
            Request::card("front", Out, card(Some(12), 34567)),
            Request::biometric("vault", In, "acs-204"),
            Request::pin("front", In, pin("4321")).with_lockout(Lockout {
                until: at("2026-06-03T11:00"),
                failed_attempts: 5,
            }),
        ];
        for request in &requests {
            let d = decide(request, &view, now());
            assert!(!d.granted, "{request}");
            assert_eq!(d.reason, Reason::SiteLockdown, "{request}");
            assert_eq!(d.message(), "site in lockdown");
        }
        for door in ["front", "lobby", "lab", "vault"] {
            assert_eq!(door_mode(&view, door, now()), Some(DoorMode::Lockdown));
        }
        view.set_site_lockdown(false);
        view.set_door_lockdown("back", true);
        let d = decide(&Request::biometric("back", In, "acs-204"), &view, now());
        assert_eq!(
            (d.granted, d.message().as_str()),
            (false, "door in lockdown")
        );
        let d = decide(&Request::biometric("front", In, "acs-204"), &view, now());
        assert!(d.granted, "other doors are not locked down");
        assert_eq!(door_mode(&view, "back", now()), Some(DoorMode::Lockdown));
        // A door in lockdown that is also inactive says lockdown.
        view.set_door_lockdown("vault", true);
        let d = decide(&Request::biometric("vault", In, "acs-204"), &view, now());
        assert_eq!(d.reason, Reason::DoorLockdown);
    }

    #[test]
    fn reader_lockout() {
        let view = view();
        let lockout = Lockout {
            until: at("2026-06-03T10:05"),
            failed_attempts: 5,
        };
        for request in [
            Request::pin("front", In, pin("4321")),
            Request::pin("front", In, pin("2468")),
            Request::card_and_pin("back", In, card(Some(12), 34567), pin("4321")),
        ] {
            let d = decide(&request.with_lockout(lockout), &view, now());
            assert!(!d.granted);
            assert_eq!(d.message(), "PIN locked after 5 wrong tries, until 10:05");
            assert!(
                !d.is_wrong_pin(),
                "a locked reader does not count further tries"
            );
        }
        // Over once the time has come.
        let d = decide(
            &Request::pin("front", In, pin("4321")).with_lockout(lockout),
            &view,
            at("2026-06-03T10:05"),
        );
        assert!(d.granted);
        // Cards alone are not PIN requests.
        let d = decide(
            &Request::card("front", In, card(Some(12), 34567)).with_lockout(lockout),
            &view,
            now(),
        );
        assert!(d.granted);
        // What the caller counts as wrong tries.
        let wrong = decide(&Request::pin("front", In, pin("0000")), &view, now());
        assert!(wrong.is_wrong_pin());
        let mismatch = decide(
            &Request::card_and_pin("back", In, card(None, 777), pin("4321")),
            &view,
            now(),
        );
        assert!(mismatch.is_wrong_pin());
        let right_pin_wrong_time = decide(
            &Request::pin("front", In, pin("4321")),
            &view,
            at("2026-06-06T10:00"),
        );
        assert!(!right_pin_wrong_time.is_wrong_pin());
    }

    #[test]
    fn lock_unlock_and_first_card() {
        let view = view();
        let cases = [
            ("lobby", now(), DoorMode::Unlocked),
            ("lobby", at("2026-06-03T07:59:59"), DoorMode::Locked),
            ("lobby", at("2026-06-03T08:00"), DoorMode::Unlocked),
            ("lobby", at("2026-06-03T18:00"), DoorMode::Locked),
            ("lobby", at("2026-06-06T10:00"), DoorMode::Locked),
            ("lobby", at("2026-12-25T10:00"), DoorMode::Locked),
            ("lab", now(), DoorMode::UnlockAfterFirstCard),
            ("lab", at("2026-06-03T19:00"), DoorMode::Locked),
            ("front", now(), DoorMode::Locked),
            ("vault", now(), DoorMode::Inactive),
        ];
        for (door, t, mode) in cases {
            assert_eq!(door_mode(&view, door, t), Some(mode), "{door} at {t}");
        }
        assert_eq!(door_mode(&view, "attic", now()), None);

        // The first grant in the period unlocks the first-card door.
        let d = decide(&Request::mobile_key("lab", In, "tok-fay"), &view, now());
        assert!(d.granted && d.first_card_unlock);
        let d = decide(&Request::biometric("lab", In, "acs-204"), &view, now());
        assert!(d.granted && d.first_card_unlock);
        // Outside the period, or a denial, or a check only: no.
        let d = decide(
            &Request::biometric("lab", In, "acs-204"),
            &view,
            at("2026-06-06T10:00"),
        );
        assert!(d.granted && !d.first_card_unlock);
        let d = decide(&Request::pin("lab", In, pin("0000")), &view, now());
        assert!(!d.first_card_unlock);
        let q = CheckQuery {
            check_only: true,
            ..CheckQuery::default()
        };
        let q = CheckQuery {
            id: Some("204"),
            ..q
        };
        let d = decide(&Request::check("lab", q), &view, now());
        assert!(d.granted && !d.first_card_unlock);
        // A plain lock/unlock door needs no first card.
        let d = decide(&Request::biometric("lobby", In, "acs-204"), &view, now());
        assert!(d.granted && !d.first_card_unlock);

        // Lock/unlock follows the access's validity and status too.
        let mut data = data();
        data.accesses[4].valid_to = Some(at("2026-06-01T00:00"));
        data.accesses[5].status = AccessStatus::Deleted;
        let view = View::build(data).unwrap();
        assert_eq!(door_mode(&view, "lobby", now()), Some(DoorMode::Locked));
        assert_eq!(door_mode(&view, "lab", now()), Some(DoorMode::Locked));

        // A plain and a first-card entry on one door: plain wins.
        let mut data = super::super::fixture::data();
        let mut plain = AccessDoor::new("lab");
        plain.lock_unlock = true;
        data.accesses[4].doors.push(plain);
        let view = View::build(data).unwrap();
        assert_eq!(door_mode(&view, "lab", now()), Some(DoorMode::Unlocked));
    }

    #[test]
    fn dst_days_at_the_door() {
        // Staff: weekdays 07:00-19:00 Berlin; the Mondays after both changes
        // and the Fridays before them.
        let view = view();
        let ann = Request::card("front", In, card(Some(12), 34567));
        let table = [
            ("2026-03-27T05:59:59Z", false), // Fri 06:59:59 CET
            ("2026-03-27T06:00:00Z", true),  // Fri 07:00 CET
            ("2026-03-27T17:59:59Z", true),
            ("2026-03-27T18:00:00Z", false), // Fri 19:00 CET
            ("2026-03-30T04:59:59Z", false), // Mon 06:59:59 CEST
            ("2026-03-30T05:00:00Z", true),  // Mon 07:00 CEST
            ("2026-03-30T16:59:59Z", true),
            ("2026-03-30T17:00:00Z", false), // Mon 19:00 CEST
            ("2026-10-23T05:00:00Z", true),  // Fri 07:00 CEST
            ("2026-10-23T04:59:59Z", false),
            ("2026-10-26T05:59:59Z", false), // Mon 06:59:59 CET
            ("2026-10-26T06:00:00Z", true),  // Mon 07:00 CET
            ("2026-10-26T17:59:59Z", true),
            ("2026-10-26T18:00:00Z", false),
        ];
        for (t, granted) in table {
            let t: Timestamp = t.parse().unwrap();
            assert_eq!(decide(&ann, &view, t).granted, granted, "{t}");
        }
        // The night shift (22:00-06:00 daily) across both change nights.
        let gus = Request::card("back", In, card(None, 777));
        let table = [
            ("2026-03-28T20:59:59Z", false), // Sat 21:59:59 CET
            ("2026-03-28T21:00:00Z", true),  // Sat 22:00 CET
            ("2026-03-29T01:30:00Z", true),  // Sun 03:30 CEST
            ("2026-03-29T03:59:59Z", true),  // Sun 05:59:59 CEST
            ("2026-03-29T04:00:00Z", false), // Sun 06:00 CEST
            ("2026-10-24T20:00:00Z", true),  // Sat 22:00 CEST
            ("2026-10-25T01:30:00Z", true),  // Sun 02:30 CET (second time)
            ("2026-10-25T04:59:59Z", true),  // Sun 05:59:59 CET
            ("2026-10-25T05:00:00Z", false), // Sun 06:00 CET
        ];
        for (t, granted) in table {
            let t: Timestamp = t.parse().unwrap();
            assert_eq!(decide(&gus, &view, t).granted, granted, "{t}");
        }
        // Messages show the wall clock of the day: CEST after the change.
        let d = decide(
            &Request::card("front", In, card(None, 1010)),
            &view,
            "2026-03-30T08:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            d.message(),
            "access Contractors valid from 2026-06-10 00:00"
        );
    }

    #[test]
    fn closest_miss_is_reported() {
        // Bob in Staff too: on a Saturday after his membership expired, the
        // schedule (closer) is reported, not the membership.
        let mut data = data();
        data.accesses[0].users.push("202".into());
        let view = View::build(data).unwrap();
        let d = decide(
            &Request::card("front", In, card(None, 555_000)),
            &view,
            at("2026-10-03T10:00"),
        );
        assert_eq!(d.message(), "outside schedule Weekdays 07:00-19:00");
        // On a weekday, Staff grants despite the expired membership.
        let d = decide(
            &Request::card("front", In, card(None, 555_000)),
            &view,
            at("2026-10-05T10:00"),
        );
        assert_eq!(d.message(), "access Staff");
        // A wrong authentication type is closer still.
        let d = decide(
            &Request::barcode("front", In, "bob-barcode"),
            &view,
            at("2026-10-05T10:00"),
        );
        assert_eq!(
            d.message(),
            "barcode not allowed for entry at Front Door (access Staff)"
        );
    }

    #[test]
    fn accesses_are_found_from_either_side() {
        // One user in many accesses; one door in one access; and the other
        // way round. Both walks find the grant and the misses.
        let mut data = data();
        for i in 0..20 {
            let mut a = Access::new(format!("many-{i}"), format!("Many {i}"));
            a.users = vec!["206".into()];
            a.doors = vec![AccessDoor::new(if i == 19 { "gym" } else { "back" })];
            a.schedule = Some("weekdays".into());
            data.accesses.push(a);
        }
        for i in 0..20 {
            let mut a = Access::new(format!("crowd-{i}"), format!("Crowd {i}"));
            a.users = vec!["210".into()];
            a.doors = vec![AccessDoor::new("store")];
            a.valid_to = Some(at("2026-01-01T00:00"));
            data.accesses.push(a);
        }
        let view = View::build(data).unwrap();
        // Fay: 20 accesses, the gym has 1.
        let d = decide(&Request::check("gym", id("206")), &view, now());
        assert_eq!(d.message(), "access Many 19");
        let d = decide(
            &Request::check("gym", id("206")),
            &view,
            at("2026-06-06T10:00"),
        );
        assert_eq!(d.message(), "outside schedule Weekdays 07:00-19:00");
        // Jon: 21 accesses; the store has 20, all expired.
        let d = decide(&Request::check("store", id("210")), &view, now());
        assert_eq!(d.message(), "access Crowd 0 expired 2026-01-01 00:00");
        let d = decide(
            &Request::check("front", id("210")),
            &view,
            at("2026-06-15T00:00"),
        );
        assert_eq!(d.message(), "access Contractors");
    }

    const REASON_VARIANTS: usize = 40;

    /// Exhaustive: a new variant does not compile until it is numbered here
    /// and then fails `messages_read_well` until it is in its table.
    fn variant_index(reason: &Reason) -> usize {
        match reason {
            Reason::Access { .. } => 0,
            Reason::Membership { .. } => 1,
            Reason::Instructor => 2,
            Reason::Member => 3,
            Reason::Event { .. } => 4,
            Reason::CredentialEntrance => 5,
            Reason::AccessCode { .. } => 6,
            Reason::UnknownDoor => 7,
            Reason::SiteLockdown => 8,
            Reason::DoorLockdown => 9,
            Reason::DoorInactive => 10,
            Reason::ReaderLocked { .. } => 11,
            Reason::UnknownCard { .. } => 12,
            Reason::UnknownPin => 13,
            Reason::UnknownMobileKey => 14,
            Reason::UnknownBarcode => 15,
            Reason::UnknownBiometric => 16,
            Reason::UnknownUser => 17,
            Reason::NoIdentifier => 18,
            Reason::IdentifiersMismatch => 19,
            Reason::PinMismatch => 20,
            Reason::CredentialNotYetValid { .. } => 21,
            Reason::CredentialExpired { .. } => 22,
            Reason::CredentialNotForDoor { .. } => 23,
            Reason::CodeNotYetActive { .. } => 24,
            Reason::CodeExpired { .. } => 25,
            Reason::CodeUsed { .. } => 26,
            Reason::CodeRemoved { .. } => 27,
            Reason::CodeFailed { .. } => 28,
            Reason::AuthTypeNotAllowed { .. } => 29,
            Reason::OutsideSchedule { .. } => 30,
            Reason::HolidayClosed { .. } => 31,
            Reason::AccessNotYetValid { .. } => 32,
            Reason::AccessExpired { .. } => 33,
            Reason::AccessNotInForce { .. } => 34,
            Reason::MembershipExpired { .. } => 35,
            Reason::EventNotStarted { .. } => 36,
            Reason::EventEnded { .. } => 37,
            Reason::InstructorsNotAllowed { .. } => 38,
            Reason::NoAccess { .. } => 39,
        }
    }

    #[test]
    fn messages_read_well() {
        let lt = |s: &str| LocalTime {
            at: at(s),
            local: s.parse().unwrap(),
        };
        let name = |s: &str| -> Arc<str> { s.into() };
        let table: Vec<(Reason, &str)> = vec![
            (
                Reason::Access {
                    access: name("Staff"),
                },
                "access Staff",
            ),
            (
                Reason::Membership {
                    membership: name("Standard Monthly"),
                },
                "membership Standard Monthly",
            ),
            (Reason::Instructor, "instructor"),
            (Reason::Member, "member"),
            (
                Reason::Event {
                    event: name("Gala"),
                    until: lt("2026-06-05T23:00"),
                },
                "event Gala until 2026-06-05 23:00",
            ),
            (
                Reason::CredentialEntrance,
                "credential allowed at this door",
            ),
            (
                Reason::AccessCode {
                    code: name("Guest"),
                    one_time: false,
                },
                "access code Guest",
            ),
            (
                Reason::AccessCode {
                    code: name("Courier"),
                    one_time: true,
                },
                "one-time access code Courier, now used",
            ),
            (Reason::UnknownDoor, "unknown door"),
            (Reason::SiteLockdown, "site in lockdown"),
            (Reason::DoorLockdown, "door in lockdown"),
            (Reason::DoorInactive, "door inactive"),
            (
                Reason::ReaderLocked {
                    failed_attempts: 5,
                    until: lt("2026-06-03T14:05"),
                },
                "PIN locked after 5 wrong tries, until 14:05",
            ),
            (
                Reason::UnknownCard {
                    card: MaskedCard(12_344_567),
                },
                "unknown card ****4567",
            ),
            (Reason::UnknownPin, "unknown PIN"),
            (Reason::UnknownMobileKey, "unknown mobile key"),
            (Reason::UnknownBarcode, "unknown barcode"),
            (Reason::UnknownBiometric, "unknown biometric id"),
            (Reason::UnknownUser, "user not found"),
            (
                Reason::NoIdentifier,
                "no id, door_access_id or barcode_id given",
            ),
            (
                Reason::IdentifiersMismatch,
                "id, door_access_id and barcode_id match different users",
            ),
            (Reason::PinMismatch, "PIN does not match the card"),
            (
                Reason::CredentialNotYetValid {
                    starts: lt("2024-03-01T10:40"),
                },
                "credential valid from 2024-03-01 10:40",
            ),
            (
                Reason::CredentialExpired {
                    ended: lt("2024-03-04T10:40"),
                },
                "credential expired 2024-03-04 10:40",
            ),
            (
                Reason::CredentialNotForDoor {
                    door: name("Back Door"),
                },
                "credential not allowed at Back Door",
            ),
            (
                Reason::CodeNotYetActive {
                    code: name("my time-bound code"),
                    starts: lt("2025-01-01T17:00"),
                },
                "access code my time-bound code active from 2025-01-01 17:00",
            ),
            (
                Reason::CodeExpired {
                    code: name("Visit"),
                    ended: lt("2025-01-22T13:00"),
                },
                "access code Visit expired 2025-01-22 13:00",
            ),
            (
                Reason::CodeUsed {
                    code: name("Courier"),
                    used: lt("2026-06-03T10:00"),
                },
                "one-time access code Courier already used 2026-06-03 10:00",
            ),
            (
                Reason::CodeRemoved { code: name("Old") },
                "access code Old removed",
            ),
            (
                Reason::CodeFailed {
                    code: name("Dup"),
                    failure: CodeFailure::DuplicatePin {
                        other: "code-guest".into(),
                    },
                },
                "access code Dup not set: PIN already set on this door by code code-guest",
            ),
            (
                Reason::AuthTypeNotAllowed {
                    method: Method::Card,
                    direction: In,
                    door: name("Back Door"),
                    access: name("Staff"),
                },
                "card not allowed for entry at Back Door (access Staff)",
            ),
            (
                Reason::AuthTypeNotAllowed {
                    method: Method::MobileKey,
                    direction: Out,
                    door: name("Lab"),
                    access: name("Lab Team"),
                },
                "mobile key not allowed for exit at Lab (access Lab Team)",
            ),
            (
                Reason::OutsideSchedule {
                    schedule: name("Weekdays 07:00-19:00"),
                },
                "outside schedule Weekdays 07:00-19:00",
            ),
            (
                Reason::HolidayClosed {
                    holiday: name("Christmas Day"),
                    schedule: name("Weekdays 07:00-19:00"),
                },
                "closed for holiday Christmas Day (schedule Weekdays 07:00-19:00)",
            ),
            (
                Reason::AccessNotYetValid {
                    access: name("Contractors"),
                    from: lt("2026-06-10T00:00"),
                },
                "access Contractors valid from 2026-06-10 00:00",
            ),
            (
                Reason::AccessExpired {
                    access: name("Contractors"),
                    ended: lt("2026-06-20T00:00"),
                },
                "access Contractors expired 2026-06-20 00:00",
            ),
            (
                Reason::AccessNotInForce {
                    access: name("Old"),
                    status: AccessStatus::Deleting,
                },
                "access Old is being deleted",
            ),
            (
                Reason::AccessNotInForce {
                    access: name("Old"),
                    status: AccessStatus::Deleted,
                },
                "access Old was deleted",
            ),
            (
                Reason::MembershipExpired {
                    membership: name("Standard Monthly"),
                    expired: lt("2026-10-01T00:00"),
                },
                "membership Standard Monthly expired 2026-10-01",
            ),
            (
                Reason::EventNotStarted {
                    event: name("Gala"),
                    starts: lt("2026-06-05T18:00"),
                },
                "event Gala starts 2026-06-05 18:00",
            ),
            (
                Reason::EventEnded {
                    event: name("Gala"),
                    ended: lt("2026-06-05T23:00"),
                },
                "event Gala ended 2026-06-05 23:00",
            ),
            (
                Reason::InstructorsNotAllowed {
                    door: name("Back Door"),
                },
                "instructors not allowed at Back Door",
            ),
            (
                Reason::NoAccess {
                    door: name("Front Door"),
                },
                "no access to Front Door",
            ),
        ];
        for (reason, text) in &table {
            let message = reason.to_string();
            assert_eq!(&message, text);
            // Reads as a phrase: lower-case start (names aside), no
            // trailing punctuation, no debug syntax.
            assert!(!message.ends_with('.') && !message.contains('{') && !message.contains("\""));
        }
        // Every variant is in the table.
        let mut seen: Vec<usize> = table.iter().map(|(r, _)| variant_index(r)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..REASON_VARIANTS).collect::<Vec<_>>());

        // A whole decision, as a log line.
        let view = view();
        let d = decide(
            &Request::card("front", In, card(Some(12), 34567)),
            &view,
            at("2026-06-03T19:30"),
        );
        assert_eq!(
            d.to_string(),
            "denied at front (entry, card), user 201 Ann Lee: outside schedule Weekdays 07:00-19:00"
        );
        let d = decide(&Request::pin("front", In, pin("2468")), &view, now());
        assert_eq!(
            d.to_string(),
            "granted at front (entry, PIN): access code Guest"
        );
    }

    #[test]
    fn secrets_never_show() {
        let view = view();
        let c = card(Some(12), 12_344_567);
        let requests = [
            Request::card("front", In, c),
            Request::pin("front", In, pin("824759")),
            Request::card_and_pin("back", In, c, pin("824759")),
            Request::mobile_key("lab", In, "tok-secret-1"),
            Request::barcode("front", In, "barcode-secret-1"),
            Request::check(
                "front",
                CheckQuery {
                    id: Some("201"),
                    door_access_id: Some("FFCC12344567"),
                    barcode_id: Some("barcode-secret-1"),
                    check_only: true,
                },
            ),
        ];
        let secrets = [
            "12344567",
            "1234456",
            "824759",
            "tok-secret",
            "barcode-secret",
            "FFCC",
        ];
        for request in &requests {
            let decision = decide(request, &view, now());
            let texts = [
                format!("{request:?}"),
                request.to_string(),
                format!("{decision:?}"),
                decision.to_string(),
                serde_json::to_string(&decision).unwrap(),
            ];
            for text in texts {
                for secret in secrets {
                    assert!(!text.contains(secret), "{secret} in {text}");
                }
            }
        }
        assert_eq!(
            Request::card("front", In, c).to_string(),
            "card ****4567 at door front (entry)"
        );
        assert_eq!(
            Request::card_and_pin("back", Out, c, pin("1234")).to_string(),
            "card ****4567 and PIN at door back (exit)"
        );
        assert_eq!(
            format!("{:?}", Request::pin("front", In, pin("1234")).presented),
            "Pin(Pin(****))"
        );
        assert_eq!(
            requests[5].to_string(),
            "check of user 201, door access id ****4567, barcode ****et-1 at door front (entry)"
        );
        let d = decide(&Request::card("front", In, c), &view, now());
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["reason"],
            serde_json::json!({"rule": "unknown_card", "card": "****4567"})
        );
    }

    #[test]
    fn shareable_between_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<View>();
        send_sync::<Decision>();
        send_sync::<DataSet>();
        send_sync::<Request<'static>>();
    }

    #[test]
    fn decision_serializes_for_logs() {
        let view = view();
        let d = decide(
            &Request::card("front", In, card(Some(12), 34567)),
            &view,
            now(),
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["granted"], true);
        assert_eq!(
            json["reason"],
            serde_json::json!({"rule": "access", "access": "Staff"})
        );
        assert_eq!(json["door"], "front");
        assert_eq!(json["direction"], "in");
        assert_eq!(json["method"], "card");
        assert_eq!(json["user"]["id"], "201");
        assert_eq!(json["credential"], "c-ann-card");
    }

    /// The generated site of the scale benchmark, small: every kind of
    /// request takes the path it is meant to. The figures at full scale come
    /// from `cargo bench -p hub --bench decide_scale` (docs/benchmarks.md).
    #[test]
    fn scale_generator_takes_grant_and_deny_paths() {
        use crate::access::scale::{self, Kind, Spec};
        let spec = Spec {
            credentials: 20_000,
            users: 1_000,
            accesses: 100,
            codes: 100,
        };
        let view = View::build(scale::data_set(spec)).unwrap();
        let mut granted = std::collections::BTreeMap::<Kind, (usize, usize)>::new();
        for g in scale::requests(spec, 4_000) {
            let d = decide(&g.request(), &view, scale::now());
            let e = granted.entry(g.kind).or_default();
            e.0 += usize::from(d.granted);
            e.1 += 1;
        }
        let all = |k| granted[&k].0 == granted[&k].1 && granted[&k].1 > 0;
        let none = |k| granted[&k].0 == 0 && granted[&k].1 > 0;
        let some = |k| granted[&k].0 > 0 && granted[&k].0 < granted[&k].1;
        assert!(all(Kind::CardAtOwnDoor), "{granted:?}");
        assert!(some(Kind::CardAtRandomDoor), "{granted:?}");
        assert!(none(Kind::UnknownCard), "{granted:?}");
        assert!(some(Kind::CodePin), "{granted:?}");
        assert!(all(Kind::CredentialPin), "{granted:?}");
        assert!(none(Kind::UnknownPin), "{granted:?}");
        assert!(all(Kind::CardAndPin), "{granted:?}");
        assert!(none(Kind::CardAndWrongPin), "{granted:?}");
        assert!(some(Kind::Check), "{granted:?}");
    }
}
