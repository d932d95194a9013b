//! A large synthetic site for the scale benchmark (`hub/benches/decide_scale.rs`)
//! and the ignored scale test: 1,000,000 credentials, 100,000 users, 10,000
//! accesses and 1,000 access codes on 100 doors, and a deterministic mix of
//! requests that takes the grant and the deny paths. Not part of the API.
//!
//! Layout, for [`Spec::FULL`]:
//!
//! - users `u0`…`u99999`; doors `d0`…`d99`; one schedule `wk` (weekdays
//!   07:00-19:00, closed on holidays; [`now`] is inside it).
//! - credentials `c0`…: 95 % cards (`c % 250` facility, `1_000_000 + c`
//!   number) of user `u{c % users}`; the last 5 % PIN credentials
//!   (`20_000_000 + i`, 8 digits) of user `u{i % users}`.
//! - access `a{a}`: doors `d{(a + 7k) % 100}` for k < 10, users
//!   `u{(30a + k) % users}` for k < 30, all authentication types. User `u`
//!   is therefore granted at door `d{(u / 30) % 100}` ([`grant_door`]).
//! - access code `k{k}`: PIN `100000 + k` at door `d{k % 100}`.

use jiff::Timestamp;

use super::decide::{CheckQuery, Direction, Request};
use super::model::{
    Access, AccessCode, AccessDoor, AccessMethod, CardNumber, Credential, DataSet, Day, Door,
    OnHolidays, Pin, Schedule, Secret, User, UserId, WeeklyInterval,
};

/// Sizes of the generated site.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Credentials (cards and PIN credentials).
    pub credentials: u64,
    /// Users.
    pub users: u64,
    /// Accesses.
    pub accesses: u64,
    /// Access codes.
    pub codes: u64,
}

impl Spec {
    /// The figures.
    pub const FULL: Spec = Spec {
        credentials: 1_000_000,
        users: 100_000,
        accesses: 10_000,
        codes: 1_000,
    };

    /// Number of card credentials (the rest are PIN credentials).
    pub fn cards(&self) -> u64 {
        self.credentials - self.credentials / 20
    }
}

const DOORS: u64 = 100;

/// Wednesday 2026-06-03 10:00 in Berlin: inside the schedule.
pub fn now() -> Timestamp {
    // 08:00 UTC is 10:00 CEST.
    "2026-06-03T08:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The door where user `u` is granted.
pub fn grant_door(u: u64) -> u64 {
    (u / 30) % DOORS
}

/// The generated data set.
pub fn data_set(spec: Spec) -> DataSet {
    let mut data = DataSet::default();
    data.site.id = "scale".into();
    data.site.time_zone = "Europe/Berlin".into();
    data.doors = (0..DOORS)
        .map(|d| Door::new(format!("d{d}"), format!("Door {d}")))
        .collect();
    data.schedules = vec![Schedule {
        id: "wk".into(),
        name: "Weekdays".into(),
        intervals: vec![WeeklyInterval {
            days: Day::WEEKDAYS.to_vec(),
            start: jiff::civil::time(7, 0, 0, 0),
            end: jiff::civil::time(19, 0, 0, 0),
        }],
        on_holidays: OnHolidays::Closed,
    }];
    data.users = (0..spec.users)
        .map(|u| User::new(format!("u{u}"), "First", "Last"))
        .collect();
    let cards = spec.cards();
    data.credentials = (0..spec.credentials)
        .map(|c| {
            let (method, code) = if c < cards {
                (AccessMethod::Card, format!("{}:{}", c % 250, 1_000_000 + c))
            } else {
                (AccessMethod::Code, format!("{}", 20_000_000 + (c - cards)))
            };
            let user = if c < cards { c } else { c - cards } % spec.users;
            Credential {
                id: format!("c{c}").into(),
                user: format!("u{user}").into(),
                access_method: method,
                code: Some(Secret::new(code)),
                starts_at: None,
                ends_at: None,
                allowed_entrances: Vec::new(),
                multi_phone_sync: false,
                metadata: Default::default(),
            }
        })
        .collect();
    data.accesses = (0..spec.accesses)
        .map(|a| {
            let mut access = Access::new(format!("a{a}"), format!("Access {a}"));
            access.schedule = Some("wk".into());
            access.doors = (0..10)
                .map(|k| AccessDoor::new(format!("d{}", (a + k * 7) % DOORS)))
                .collect();
            access.users = (0..30)
                .map(|k| UserId::from(format!("u{}", (a * 30 + k) % spec.users)))
                .collect();
            access
        })
        .collect();
    let created: Timestamp = "2026-01-01T00:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    data.access_codes = (0..spec.codes)
        .map(|k| AccessCode {
            id: format!("k{k}").into(),
            door: format!("d{}", k % DOORS).into(),
            name: "Code".into(),
            code: Secret::new(format!("{}", 100_000 + k)),
            starts_at: None,
            ends_at: None,
            one_time_use: false,
            created_at: created,
            used_at: None,
            deleted: false,
        })
        .collect();
    data
}

/// What kind of request, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A known card at the holder's door.
    CardAtOwnDoor,
    /// A known card at a random door.
    CardAtRandomDoor,
    /// A card nobody holds.
    UnknownCard,
    /// An access code PIN at its door or a random one.
    CodePin,
    /// A PIN credential at its holder's door.
    CredentialPin,
    /// An unknown PIN.
    UnknownPin,
    /// The holder's card and PIN at the holder's door.
    CardAndPin,
    /// A card with another user's PIN.
    CardAndWrongPin,
    /// A check by user id at the user's door or an unknown id.
    Check,
}

/// One request, owned (build the borrowed [`Request`] with
/// [`Generated::request`]).
#[derive(Debug, Clone)]
pub struct Generated {
    /// What it exercises.
    pub kind: Kind,
    door: String,
    card: Option<CardNumber>,
    pin: Option<Pin>,
    user: Option<String>,
}

impl Generated {
    /// The request.
    pub fn request(&self) -> Request<'_> {
        let door = self.door.as_str();
        match (self.card, &self.pin, &self.user) {
            (Some(card), Some(pin), _) => {
                Request::card_and_pin(door, Direction::In, card, pin.clone())
            }
            (Some(card), None, _) => Request::card(door, Direction::In, card),
            (None, Some(pin), _) => Request::pin(door, Direction::In, pin.clone()),
            (None, None, user) => Request::check(
                door,
                CheckQuery {
                    id: user.as_deref(),
                    door_access_id: None,
                    barcode_id: None,
                    check_only: true,
                },
            ),
        }
    }
}

/// `n` requests, deterministic (xorshift from a fixed seed).
pub fn requests(spec: Spec, n: usize) -> Vec<Generated> {
    let cards = spec.cards();
    let pins = spec.credentials - cards;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let card_of = |c: u64| CardNumber::new(Some((c % 250) as u32), 1_000_000 + c);
    let pin_of = |text: String| Pin::parse(&text).ok();
    (0..n)
        .map(|i| {
            let r = next();
            let c = r % cards;
            let holder = c % spec.users;
            let own_door = format!("d{}", grant_door(holder));
            let random_door = format!("d{}", (r >> 32) % DOORS);
            let g = |kind, door, card, pin, user| Generated {
                kind,
                door,
                card,
                pin,
                user,
            };
            match i % 20 {
                0..=6 => g(Kind::CardAtOwnDoor, own_door, Some(card_of(c)), None, None),
                7..=9 => g(
                    Kind::CardAtRandomDoor,
                    random_door,
                    Some(card_of(c)),
                    None,
                    None,
                ),
                10 => g(
                    Kind::UnknownCard,
                    own_door,
                    Some(CardNumber::new(Some(251), 1_000_000 + c)),
                    None,
                    None,
                ),
                11 | 12 => {
                    let k = (r >> 20) % spec.codes.max(1);
                    // Half at the code's own door.
                    let door = if r & 1 == 0 {
                        format!("d{}", k % DOORS)
                    } else {
                        random_door
                    };
                    g(
                        Kind::CodePin,
                        door,
                        None,
                        pin_of(format!("{}", 100_000 + k)),
                        None,
                    )
                }
                13 => {
                    let p = (r >> 8) % pins.max(1);
                    let door = format!("d{}", grant_door(p % spec.users));
                    g(
                        Kind::CredentialPin,
                        door,
                        None,
                        pin_of(format!("{}", 20_000_000 + p)),
                        None,
                    )
                }
                14 => g(
                    Kind::UnknownPin,
                    own_door,
                    None,
                    pin_of(format!("{}", 90_000_000 + (r >> 8) % 1_000_000)),
                    None,
                ),
                15 | 16 => {
                    // A user with a PIN credential: PIN credential p belongs
                    // to user p % users, and so does card p.
                    let p = (r >> 8) % pins.max(1);
                    let u = p % spec.users;
                    g(
                        Kind::CardAndPin,
                        format!("d{}", grant_door(u)),
                        Some(card_of(u)),
                        pin_of(format!("{}", 20_000_000 + p)),
                        None,
                    )
                }
                17 => {
                    let p = (r >> 8) % pins.max(1);
                    let u = (p + 1) % spec.users;
                    g(
                        Kind::CardAndWrongPin,
                        format!("d{}", grant_door(u)),
                        Some(card_of(u)),
                        pin_of(format!("{}", 20_000_000 + p)),
                        None,
                    )
                }
                _ => {
                    let user = if r & 1 == 0 {
                        format!("u{holder}")
                    } else {
                        format!("nobody{holder}")
                    };
                    g(Kind::Check, own_door, None, None, Some(user))
                }
            }
        })
        .collect()
}
