//! Access control at the hub: the cached model and the pure decision.
//!
//! - [`model`]: [`DataSet`], everything the hub caches from the cloud as
//!   serde data, and the reader-side values [`CardNumber`] and [`Pin`].
//! - [`view`]: [`View::build`] checks a data set (a bad record is a
//!   [`ModelError`] naming it) and indexes it; access code statuses
//!   ([`View::code_statuses`]) for sync.
//! - [`schedule`]: weekly intervals, overnight intervals and holidays on the
//!   site's wall clock, correct across DST.
//! - [`decide`](mod@decide): [`decide()`] turns a [`Request`] into a
//!   [`Decision`] with a typed [`Reason`] and a message for people;
//!   [`door_mode`] says whether a door is held unlocked.
//!
//! Typical use: the store loads a [`DataSet`], builds a [`View`] once, and
//! shares it; each card read, PIN or check becomes a [`Request`] and a call
//! to [`decide()`] with the current time. Nothing in this module tree does
//! I/O or reads the clock. How each vendor's concepts map onto the model is
//! in `docs/access-model.md`.

mod compact;
pub mod decide;
pub mod model;
#[doc(hidden)]
pub mod scale;
pub mod schedule;
pub mod view;

pub use decide::{
    decide, decide_entry, door_mode, CheckQuery, Decision, Direction, DoorMode, LocalTime, Lockout,
    MaskedCard, MembershipSummary, Presented, Reason, Request, UserSummary,
};
pub use model::{
    Access, AccessCode, AccessCodeId, AccessDoor, AccessId, AccessKind, AccessMethod, AccessStatus,
    AuthTypes, CardError, CardKey, CardNumber, Credential, CredentialId, DataSet, Day, Door,
    DoorId, Event, EventId, Facility, FacilityId, Holiday, Member, Membership, Method, OnHolidays,
    Pin, PinError, RawCard, Schedule, ScheduleId, Secret, Site, TimeRange, User, UserId,
    WeeklyInterval,
};
pub use schedule::{CompiledSchedule, HolidayCalendar, ScheduleError, ScheduleState};
pub use view::{
    CodeFailure, CodeStatus, ModelError, RecordCounts, RecordKind, RecordRef, RemovedReason, View,
};

/// A small site used by the tests of every file here: one of each vendor
/// concept, in Europe/Berlin. The default test time is Wednesday
/// 2026-06-03 10:00 local.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use jiff::{civil, Timestamp};

    pub(crate) const TZ: &str = "Europe/Berlin";

    /// Local Berlin wall-clock time ("2026-06-03T10:00") as an instant.
    pub(crate) fn at(local: &str) -> Timestamp {
        let dt: civil::DateTime = local.parse().unwrap();
        dt.to_zoned(jiff::tz::TimeZoneDatabase::bundled().get(TZ).unwrap())
            .unwrap()
            .timestamp()
    }

    /// Wednesday 2026-06-03 10:00 in Berlin.
    pub(crate) fn now() -> Timestamp {
        at("2026-06-03T10:00")
    }

    fn interval(days: &[Day], start: (i8, i8), end: (i8, i8)) -> WeeklyInterval {
        WeeklyInterval {
            days: days.to_vec(),
            start: civil::time(start.0, start.1, 0, 0),
            end: civil::time(end.0, end.1, 0, 0),
        }
    }

    fn credential(id: &str, user: &str, method: AccessMethod, code: Option<&str>) -> Credential {
        Credential {
            id: id.into(),
            user: user.into(),
            access_method: method,
            code: code.map(Secret::from),
            starts_at: None,
            ends_at: None,
            allowed_entrances: Vec::new(),
            multi_phone_sync: false,
            metadata: Default::default(),
        }
    }

    pub(crate) fn code(id: &str, door: &str, name: &str, pin: &str, created: &str) -> AccessCode {
        AccessCode {
            id: id.into(),
            door: door.into(),
            name: name.into(),
            code: Secret::from(pin),
            starts_at: None,
            ends_at: None,
            one_time_use: false,
            created_at: at(created),
            used_at: None,
            deleted: false,
        }
    }

    fn access(
        id: &str,
        name: &str,
        schedule: Option<&str>,
        doors: Vec<AccessDoor>,
        users: &[&str],
    ) -> Access {
        let mut a = Access::new(id, name);
        a.schedule = schedule.map(ScheduleId::from);
        a.doors = doors;
        a.users = users.iter().map(|&u| UserId::from(u)).collect();
        a
    }

    pub(crate) fn data() -> DataSet {
        let mut front = Door::new("front", "Front Door");
        front.membership_type_ids = vec![1];
        front.allow_instructors = true;
        let back = Door::new("back", "Back Door");
        let mut gym = Door::new("gym", "Gym");
        gym.membership_type_ids = vec![3];
        let mut vault = Door::new("vault", "Vault");
        vault.active = false;
        let lab = Door::new("lab", "Lab");
        let lobby = Door::new("lobby", "Lobby");
        let mut store = Door::new("store", "Store Room");
        store.keypad = false;

        let mut ann = User::new("201", "Ann", "Lee");
        ann.door_access_id = Some(Secret::from("FFCC8899"));
        ann.barcode_id = Some("123456789abc".into());
        ann.extended_unlock = true;
        let mut bob = User::new("202", "Bob", "Stone");
        bob.door_access_id = Some(Secret::from("555000"));
        bob.barcode_id = Some("bob-barcode".into());
        bob.memberships = vec![
            Membership {
                id: 1234,
                type_id: 1,
                type_name: "Standard Monthly".into(),
                expires: Some(at("2026-10-01T00:00")),
                door_ids: vec![],
            },
            Membership {
                id: 1235,
                type_id: 3,
                type_name: "Unlimited Access".into(),
                expires: Some(at("2027-01-01T00:00")),
                door_ids: vec!["gym".into(), "other-hub-door".into()],
            },
        ];
        let mut cid = User::new("203", "Cid", "Park");
        cid.is_instructor = true;
        let mut dee = User::new("204", "Dee", "Moss");
        dee.acs_id = Some("acs-204".into());
        let mut eve = User::new("205", "Eve", "Hart");
        eve.acs_id = Some("acs-205".into());
        eve.biometric_user_id = Some("bio-9".into());
        let users = vec![
            ann,
            bob,
            cid,
            dee,
            eve,
            User::new("206", "Fay", "Wu"),
            User::new("207", "Gus", "Kim"),
            User::new("208", "Hal", "Ito"),
            User::new("209", "Ida", "Roe"),
            User::new("210", "Jon", "Fox"),
            User::new("211", "Kay", "Orr"),
        ];

        let mut fay_key = credential(
            "c-fay-mobile",
            "206",
            AccessMethod::MobileKey,
            Some("tok-fay"),
        );
        fay_key.allowed_entrances = vec!["lab".into(), "elsewhere".into()];
        fay_key.starts_at = Some(at("2026-03-01T00:00"));
        fay_key.ends_at = Some(at("2026-12-31T00:00"));
        fay_key.multi_phone_sync = true;
        let mut hal_card = credential("c-hal-card", "208", AccessMethod::Card, Some("888"));
        hal_card.starts_at = Some(at("2026-07-01T00:00"));
        let mut ida_card = credential("c-ida-card", "209", AccessMethod::Card, Some("999"));
        ida_card.ends_at = Some(at("2026-01-01T00:00"));
        let credentials = vec![
            credential("c-ann-card", "201", AccessMethod::Card, Some("12:34567")),
            credential("c-ann-pin", "201", AccessMethod::Code, Some("4321")),
            fay_key,
            credential("c-gus-card", "207", AccessMethod::Card, Some("777")),
            credential("c-gus-pin", "207", AccessMethod::Code, Some("9999")),
            hal_card,
            ida_card,
            credential("c-jon-card", "210", AccessMethod::Card, Some("1010")),
            credential("c-kay-card", "211", AccessMethod::Card, Some("1111")),
            credential("c-unissued", "211", AccessMethod::Card, None),
        ];

        let schedules = vec![
            Schedule {
                id: "weekdays".into(),
                name: "Weekdays".into(),
                intervals: vec![interval(&Day::WEEKDAYS, (7, 0), (19, 0))],
                on_holidays: OnHolidays::Closed,
            },
            Schedule {
                id: "nights".into(),
                name: "Night Shift".into(),
                intervals: vec![interval(&Day::ALL, (22, 0), (6, 0))],
                on_holidays: OnHolidays::Normal,
            },
            Schedule {
                id: "lobby-hours".into(),
                name: "Lobby Hours".into(),
                intervals: vec![interval(&Day::WEEKDAYS, (8, 0), (18, 0))],
                on_holidays: OnHolidays::Closed,
            },
        ];

        let mut staff_front = AccessDoor::new("front");
        staff_front.in_auth = AuthTypes::of(&[Method::Card, Method::Pin, Method::MobileKey]);
        let mut staff_back = AccessDoor::new("back");
        staff_back.in_auth = AuthTypes::of(&[Method::CardAndPin]);
        staff_back.out_auth = AuthTypes::of(&[Method::Card]);
        let mut contractors = access(
            "contractors",
            "Contractors",
            None,
            vec![AccessDoor::new("front")],
            &["210"],
        );
        contractors.kind = AccessKind::Temporary;
        contractors.valid_from = Some(at("2026-06-10T00:00"));
        contractors.valid_to = Some(at("2026-06-20T00:00"));
        let mut old = access("old", "Old", None, vec![AccessDoor::new("front")], &["211"]);
        old.status = AccessStatus::Deleting;
        let mut lobby_open = AccessDoor::new("lobby");
        lobby_open.lock_unlock = true;
        let mut lab_open = AccessDoor::new("lab");
        lab_open.lock_unlock = true;
        lab_open.first_card_unlock = true;
        let accesses = vec![
            access(
                "staff",
                "Staff",
                Some("weekdays"),
                vec![staff_front, staff_back, AccessDoor::new("elsewhere")],
                &["201", "208", "209"],
            ),
            access(
                "nights",
                "Night Shift",
                Some("nights"),
                vec![AccessDoor::new("back")],
                &["207"],
            ),
            contractors,
            old,
            access(
                "lobby-open",
                "Lobby Open",
                Some("lobby-hours"),
                vec![lobby_open],
                &[],
            ),
            access(
                "lab-open",
                "Lab Open",
                Some("weekdays"),
                vec![lab_open],
                &[],
            ),
        ];

        let mut visit = code("code-visit", "front", "Visit", "1357", "2026-01-02T00:00");
        visit.starts_at = Some(at("2026-06-10T10:00"));
        visit.ends_at = Some(at("2026-06-12T12:00"));
        let mut once = code("code-once", "front", "Courier", "8642", "2026-01-03T00:00");
        once.one_time_use = true;
        let mut deleted = code(
            "code-deleted",
            "lab",
            "Old Guest",
            "1122",
            "2026-01-04T00:00",
        );
        deleted.deleted = true;
        let mut window = code(
            "code-window",
            "lab",
            "Backwards",
            "3344",
            "2026-01-05T00:00",
        );
        window.starts_at = Some(at("2026-06-02T00:00"));
        window.ends_at = Some(at("2026-06-01T00:00"));
        let access_codes = vec![
            code("code-guest", "front", "Guest", "2468", "2026-01-01T00:00"),
            visit,
            once,
            code("code-dup", "front", "Dup", "2468", "2026-02-01T00:00"),
            code("code-nodoor", "nowhere", "Lost", "1111", "2026-01-01T00:00"),
            code("code-store", "store", "Store", "5555", "2026-01-01T00:00"),
            code("code-bad", "front", "Bad", "12ab", "2026-01-01T00:00"),
            code("code-clash", "front", "Clash", "4321", "2026-01-01T00:00"),
            deleted,
            window,
        ];

        DataSet {
            site: Site {
                id: "site-1".into(),
                name: "Test Site".into(),
                time_zone: TZ.into(),
                tenant: Some("acme".into()),
                lockdown: false,
            },
            doors: vec![front, back, gym, vault, lab, lobby, store],
            users,
            credentials,
            access_codes,
            schedules,
            holidays: vec![Holiday {
                date: civil::date(2026, 12, 25),
                name: "Christmas Day".into(),
            }],
            accesses,
            facilities: vec![Facility {
                id: "hall".into(),
                name: "Hall".into(),
                doors: vec!["front".into(), "lobby".into()],
            }],
            events: vec![Event {
                id: "gala".into(),
                name: "Gala".into(),
                facility: "hall".into(),
                starts_at: at("2026-06-05T18:00"),
                ends_at: at("2026-06-05T23:00"),
                attendees: vec!["205".into()],
            }],
            members: vec![Member { user: "204".into() }],
        }
    }

    pub(crate) fn view() -> View {
        View::build(data()).unwrap()
    }
}
