//! The access model ⇄ the `hub.v1` protobuf entities, both ways.
//!
//! [`from_proto`] parses once: every id non-empty, every enum known, every
//! time stamp and time of day in range, required fields present. What it
//! cannot check alone (references between records, duplicate cards or
//! PINs) [`View::build`](crate::access::View::build) checks on the whole
//! data set. [`to_proto`] is what the reference cloud (`hubctl`) sends.

use std::collections::HashMap;

use hub_proto::v1 as pb;
use hub_proto::v1::entity::Kind as PbKind;
use jiff::{civil, Timestamp};
use thiserror::Error;

use crate::access::{
    Access, AccessCode, AccessDoor, AccessKind, AccessMethod, AccessStatus, AuthTypes, Credential,
    DataSet, Day, Door, Event, Facility, Holiday, Member, Membership, Method, OnHolidays,
    RecordKind, Schedule, Secret, Site, TimeRange, User, WeeklyInterval,
};
use crate::site_data;

/// A protobuf entity that is not a valid record. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertError {
    /// An `Entity` without any record in it.
    #[error("an entity without a record")]
    Empty,
    /// A required field is missing or empty.
    #[error("{kind} {id:?}: {field} is required")]
    Missing {
        /// The kind of record.
        kind: &'static str,
        /// Its id (may be empty when the id is what is missing).
        id: String,
        /// The field.
        field: &'static str,
    },
    /// A field has a value outside its range (an unknown enum value, a time
    /// stamp out of range, a bad date).
    #[error("{kind} {id:?}: invalid {field}: {reason}")]
    Invalid {
        /// The kind of record.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ConvertError {
    /// The record at fault, as an entity key of the contract.
    pub fn key(&self) -> Option<pb::EntityKey> {
        let (kind, id) = match self {
            ConvertError::Empty => return None,
            ConvertError::Missing { kind, id, .. } | ConvertError::Invalid { kind, id, .. } => {
                (*kind, id)
            }
        };
        Some(pb::EntityKey {
            kind: kind_by_name(kind) as i32,
            id: id.clone(),
        })
    }
}

fn kind_by_name(name: &str) -> pb::EntityKind {
    use pb::EntityKind as K;
    match name {
        "site" => K::Site,
        "door" => K::Door,
        "user" => K::User,
        "credential" => K::Credential,
        "access code" => K::AccessCode,
        "schedule" => K::Schedule,
        "holiday" => K::Holiday,
        "access" => K::Access,
        "facility" => K::Facility,
        "event" => K::Event,
        "member" => K::Member,
        _ => K::Unspecified,
    }
}

/// The contract's entity kind of a model record kind.
pub fn entity_kind(kind: RecordKind) -> pb::EntityKind {
    use pb::EntityKind as K;
    match kind {
        RecordKind::Site => K::Site,
        RecordKind::Door => K::Door,
        RecordKind::User => K::User,
        RecordKind::Credential => K::Credential,
        RecordKind::AccessCode => K::AccessCode,
        RecordKind::Schedule => K::Schedule,
        RecordKind::Access => K::Access,
        RecordKind::Facility => K::Facility,
        RecordKind::Event => K::Event,
        RecordKind::Member => K::Member,
    }
}

/// One record of the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// The site.
    Site(Site),
    /// A door.
    Door(Door),
    /// A user.
    User(User),
    /// A credential.
    Credential(Credential),
    /// An access code.
    AccessCode(AccessCode),
    /// A schedule.
    Schedule(Schedule),
    /// A holiday.
    Holiday(Holiday),
    /// An access.
    Access(Access),
    /// A facility.
    Facility(Facility),
    /// An event.
    Event(Event),
    /// A member.
    Member(Member),
}

struct Ctx {
    kind: &'static str,
    id: String,
}

impl Ctx {
    fn new(kind: &'static str, id: &str) -> Result<Ctx, ConvertError> {
        let ctx = Ctx {
            kind,
            id: id.to_owned(),
        };
        if id.is_empty() {
            return Err(ctx.missing("id"));
        }
        Ok(ctx)
    }
    fn missing(&self, field: &'static str) -> ConvertError {
        ConvertError::Missing {
            kind: self.kind,
            id: self.id.clone(),
            field,
        }
    }
    fn invalid(&self, field: &'static str, reason: impl ToString) -> ConvertError {
        ConvertError::Invalid {
            kind: self.kind,
            id: self.id.clone(),
            field,
            reason: reason.to_string(),
        }
    }
    fn time(
        &self,
        field: &'static str,
        t: Option<pb::Time>,
    ) -> Result<Option<Timestamp>, ConvertError> {
        t.map(|t| Timestamp::new(t.seconds, t.nanos).map_err(|e| self.invalid(field, e)))
            .transpose()
    }
    fn required_time(
        &self,
        field: &'static str,
        t: Option<pb::Time>,
    ) -> Result<Timestamp, ConvertError> {
        self.time(field, t)?.ok_or_else(|| self.missing(field))
    }
    fn nonempty(&self, field: &'static str, s: String) -> Result<String, ConvertError> {
        if s.is_empty() {
            Err(self.missing(field))
        } else {
            Ok(s)
        }
    }
    fn ids<T: From<String>>(
        &self,
        field: &'static str,
        v: Vec<String>,
    ) -> Result<Vec<T>, ConvertError> {
        v.into_iter()
            .map(|s| self.nonempty(field, s).map(T::from))
            .collect()
    }
    fn time_of_day(&self, field: &'static str, s: u32) -> Result<civil::Time, ConvertError> {
        if s >= 86_400 {
            return Err(self.invalid(field, format!("{s} is not a second of a day (0..86399)")));
        }
        civil::Time::new((s / 3600) as i8, ((s / 60) % 60) as i8, (s % 60) as i8, 0)
            .map_err(|e| self.invalid(field, e))
    }
    fn enum_value<E: TryFrom<i32>>(&self, field: &'static str, v: i32) -> Result<E, ConvertError> {
        E::try_from(v).map_err(|_| self.invalid(field, format!("unknown value {v}")))
    }
}

/// Parses one protobuf entity into a model record.
pub fn from_proto(entity: pb::Entity) -> Result<Record, ConvertError> {
    Ok(match entity.kind.ok_or(ConvertError::Empty)? {
        PbKind::Site(s) => {
            let c = Ctx::new("site", &s.id)?;
            let time_zone = if s.time_zone.is_empty() {
                "UTC".to_owned()
            } else {
                s.time_zone
            };
            let _ = c;
            Record::Site(Site {
                id: s.id,
                name: s.name,
                time_zone,
                tenant: s.tenant,
                lockdown: s.lockdown,
            })
        }
        PbKind::Door(d) => {
            Ctx::new("door", &d.id)?;
            Record::Door(Door {
                id: d.id.into(),
                name: d.name,
                active: d.active.unwrap_or(true),
                lockdown: d.lockdown,
                membership_type_ids: d.membership_type_ids,
                allow_instructors: d.allow_instructors,
                keypad: d.keypad.unwrap_or(true),
            })
        }
        PbKind::User(u) => {
            let c = Ctx::new("user", &u.id)?;
            let memberships = u
                .memberships
                .into_iter()
                .map(|m| {
                    Ok(Membership {
                        id: m.id,
                        type_id: m.type_id,
                        type_name: m.type_name,
                        expires: c.time("memberships.expires", m.expires)?,
                        door_ids: c.ids("memberships.door_ids", m.door_ids)?,
                    })
                })
                .collect::<Result<_, ConvertError>>()?;
            Record::User(User {
                id: u.id.into(),
                first_name: u.first_name,
                last_name: u.last_name,
                email: u.email,
                phone: u.phone,
                is_instructor: u.is_instructor,
                door_access_id: u.door_access_id.map(Secret::new),
                barcode_id: u.barcode_id,
                acs_id: u.acs_id,
                biometric_user_id: u.biometric_user_id,
                extended_unlock: u.extended_unlock,
                memberships,
            })
        }
        PbKind::Credential(r) => {
            let c = Ctx::new("credential", &r.id)?;
            let access_method =
                match c.enum_value::<pb::AccessMethod>("access_method", r.access_method)? {
                    pb::AccessMethod::Code => AccessMethod::Code,
                    pb::AccessMethod::Card => AccessMethod::Card,
                    pb::AccessMethod::MobileKey => AccessMethod::MobileKey,
                    pb::AccessMethod::Unspecified => return Err(c.missing("access_method")),
                };
            Record::Credential(Credential {
                user: c.nonempty("user", r.user)?.into(),
                access_method,
                code: r.code.map(Secret::new),
                starts_at: c.time("starts_at", r.starts_at)?,
                ends_at: c.time("ends_at", r.ends_at)?,
                allowed_entrances: c.ids("allowed_entrances", r.allowed_entrances)?,
                multi_phone_sync: r.multi_phone_sync,
                metadata: r.metadata,
                id: r.id.into(),
            })
        }
        PbKind::AccessCode(r) => {
            let c = Ctx::new("access code", &r.id)?;
            Record::AccessCode(AccessCode {
                door: c.nonempty("door", r.door)?.into(),
                name: r.name,
                code: Secret::new(r.code),
                starts_at: c.time("starts_at", r.starts_at)?,
                ends_at: c.time("ends_at", r.ends_at)?,
                one_time_use: r.one_time_use,
                created_at: c.required_time("created_at", r.created_at)?,
                used_at: c.time("used_at", r.used_at)?,
                deleted: r.deleted,
                id: r.id.into(),
            })
        }
        PbKind::Schedule(s) => {
            let c = Ctx::new("schedule", &s.id)?;
            let intervals = s
                .intervals
                .into_iter()
                .map(|i| {
                    let days = i
                        .days
                        .into_iter()
                        .map(|d| day_from(&c, d))
                        .collect::<Result<_, _>>()?;
                    Ok(WeeklyInterval {
                        days,
                        start: c.time_of_day("intervals.start_second", i.start_second)?,
                        end: c.time_of_day("intervals.end_second", i.end_second)?,
                    })
                })
                .collect::<Result<_, ConvertError>>()?;
            let on_holidays = match c.enum_value::<pb::HolidayRule>("on_holidays", s.on_holidays)? {
                pb::HolidayRule::Unspecified | pb::HolidayRule::Closed => OnHolidays::Closed,
                pb::HolidayRule::Normal => OnHolidays::Normal,
                pb::HolidayRule::Ranges => OnHolidays::Intervals(
                    s.holiday_ranges
                        .into_iter()
                        .map(|r| {
                            Ok(TimeRange {
                                start: c
                                    .time_of_day("holiday_ranges.start_second", r.start_second)?,
                                end: c.time_of_day("holiday_ranges.end_second", r.end_second)?,
                            })
                        })
                        .collect::<Result<_, ConvertError>>()?,
                ),
            };
            Record::Schedule(Schedule {
                id: s.id.into(),
                name: s.name,
                intervals,
                on_holidays,
            })
        }
        PbKind::Holiday(h) => {
            let c = Ctx::new("holiday", &format!("{}/{}", h.date, h.name))?;
            let date: civil::Date = h.date.parse().map_err(|e| c.invalid("date", e))?;
            Record::Holiday(Holiday { date, name: h.name })
        }
        PbKind::Access(a) => {
            let c = Ctx::new("access", &a.id)?;
            let kind = match c.enum_value::<pb::AccessKind>("kind", a.kind)? {
                pb::AccessKind::Unspecified | pb::AccessKind::Permanent => AccessKind::Permanent,
                pb::AccessKind::Temporary => AccessKind::Temporary,
            };
            let status = match c.enum_value::<pb::AccessStatus>("status", a.status)? {
                pb::AccessStatus::Unspecified | pb::AccessStatus::Ready => AccessStatus::Ready,
                pb::AccessStatus::Initial => AccessStatus::Initial,
                pb::AccessStatus::Creating => AccessStatus::Creating,
                pb::AccessStatus::Updating => AccessStatus::Updating,
                pb::AccessStatus::Deleting => AccessStatus::Deleting,
                pb::AccessStatus::Deleted => AccessStatus::Deleted,
            };
            let doors = a
                .doors
                .into_iter()
                .map(|d| {
                    Ok(AccessDoor {
                        door: c.nonempty("doors.door", d.door)?.into(),
                        lock_unlock: d.lock_unlock,
                        first_card_unlock: d.first_card_unlock,
                        in_auth: auth_from(&c, d.in_auth)?,
                        out_auth: auth_from(&c, d.out_auth)?,
                    })
                })
                .collect::<Result<_, ConvertError>>()?;
            Record::Access(Access {
                name: a.name,
                kind,
                status,
                valid_from: c.time("valid_from", a.valid_from)?,
                valid_to: c.time("valid_to", a.valid_to)?,
                schedule: a
                    .schedule
                    .map(|s| c.nonempty("schedule", s).map(Into::into))
                    .transpose()?,
                doors,
                users: c.ids("users", a.users)?,
                description: a.description,
                preferences: a.preferences,
                welcome_email_required: a.welcome_email_required,
                created_at: c.time("created_at", a.created_at)?,
                updated_at: c.time("updated_at", a.updated_at)?,
                id: a.id.into(),
            })
        }
        PbKind::Facility(f) => {
            let c = Ctx::new("facility", &f.id)?;
            Record::Facility(Facility {
                doors: c.ids("doors", f.doors)?,
                id: f.id.into(),
                name: f.name,
            })
        }
        PbKind::Event(e) => {
            let c = Ctx::new("event", &e.id)?;
            Record::Event(Event {
                name: e.name,
                facility: c.nonempty("facility", e.facility)?.into(),
                starts_at: c.required_time("starts_at", e.starts_at)?,
                ends_at: c.required_time("ends_at", e.ends_at)?,
                attendees: c.ids("attendees", e.attendees)?,
                id: e.id.into(),
            })
        }
        PbKind::Member(m) => {
            Ctx::new("member", &m.user)?;
            Record::Member(Member {
                user: m.user.into(),
            })
        }
    })
}

fn day_from(c: &Ctx, d: i32) -> Result<Day, ConvertError> {
    Ok(match c.enum_value::<pb::Day>("intervals.days", d)? {
        pb::Day::Mon => Day::Mon,
        pb::Day::Tue => Day::Tue,
        pb::Day::Wed => Day::Wed,
        pb::Day::Thu => Day::Thu,
        pb::Day::Fri => Day::Fri,
        pb::Day::Sat => Day::Sat,
        pb::Day::Sun => Day::Sun,
        pb::Day::Unspecified => return Err(c.invalid("intervals.days", "unspecified day")),
    })
}

fn auth_from(c: &Ctx, a: Option<pb::AuthTypes>) -> Result<AuthTypes, ConvertError> {
    let Some(a) = a else {
        return Ok(AuthTypes::ALL);
    };
    let methods = a
        .methods
        .into_iter()
        .map(|m| {
            Ok(match c.enum_value::<pb::AuthMethod>("auth_types", m)? {
                pb::AuthMethod::Card => Method::Card,
                pb::AuthMethod::Pin => Method::Pin,
                pb::AuthMethod::CardAndPin => Method::CardAndPin,
                pb::AuthMethod::MobileKey => Method::MobileKey,
                pb::AuthMethod::Barcode => Method::Barcode,
                pb::AuthMethod::Biometric => Method::Biometric,
                pb::AuthMethod::Unspecified => {
                    return Err(c.invalid("auth_types", "unspecified method"))
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AuthTypes::of(&methods))
}

fn time_to(t: Timestamp) -> pb::Time {
    pb::Time {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn tod_to(t: civil::Time) -> u32 {
    (t.hour() as u32) * 3600 + (t.minute() as u32) * 60 + t.second() as u32
}

fn auth_to(a: AuthTypes) -> Option<pb::AuthTypes> {
    if a == AuthTypes::ALL {
        return None;
    }
    // The set's methods through its serde form (a list of methods).
    let methods: Vec<Method> = serde_json::to_value(a)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    Some(pb::AuthTypes {
        methods: methods
            .into_iter()
            .map(|m| {
                (match m {
                    Method::Card => pb::AuthMethod::Card,
                    Method::Pin => pb::AuthMethod::Pin,
                    Method::CardAndPin => pb::AuthMethod::CardAndPin,
                    Method::MobileKey => pb::AuthMethod::MobileKey,
                    Method::Barcode => pb::AuthMethod::Barcode,
                    Method::Biometric => pb::AuthMethod::Biometric,
                    Method::Check => pb::AuthMethod::Unspecified,
                }) as i32
            })
            .collect(),
    })
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// A model record as a protobuf entity.
pub fn to_proto(record: &Record) -> pb::Entity {
    let kind = match record {
        Record::Site(s) => PbKind::Site(pb::Site {
            id: s.id.clone(),
            name: s.name.clone(),
            time_zone: s.time_zone.clone(),
            tenant: s.tenant.clone(),
            lockdown: s.lockdown,
        }),
        Record::Door(d) => PbKind::Door(pb::Door {
            id: d.id.to_string(),
            name: d.name.clone(),
            active: Some(d.active),
            lockdown: d.lockdown,
            membership_type_ids: d.membership_type_ids.clone(),
            allow_instructors: d.allow_instructors,
            keypad: Some(d.keypad),
        }),
        Record::User(u) => PbKind::User(pb::User {
            id: u.id.to_string(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            email: u.email.clone(),
            phone: u.phone.clone(),
            is_instructor: u.is_instructor,
            door_access_id: u.door_access_id.as_ref().map(|s| s.expose().to_owned()),
            barcode_id: u.barcode_id.clone(),
            acs_id: u.acs_id.clone(),
            biometric_user_id: u.biometric_user_id.clone(),
            extended_unlock: u.extended_unlock,
            memberships: u
                .memberships
                .iter()
                .map(|m| pb::Membership {
                    id: m.id,
                    type_id: m.type_id,
                    type_name: m.type_name.clone(),
                    expires: m.expires.map(time_to),
                    door_ids: strings(&m.door_ids),
                })
                .collect(),
        }),
        Record::Credential(r) => PbKind::Credential(pb::Credential {
            id: r.id.to_string(),
            user: r.user.to_string(),
            access_method: (match r.access_method {
                AccessMethod::Code => pb::AccessMethod::Code,
                AccessMethod::Card => pb::AccessMethod::Card,
                AccessMethod::MobileKey => pb::AccessMethod::MobileKey,
            }) as i32,
            code: r.code.as_ref().map(|s| s.expose().to_owned()),
            starts_at: r.starts_at.map(time_to),
            ends_at: r.ends_at.map(time_to),
            allowed_entrances: strings(&r.allowed_entrances),
            multi_phone_sync: r.multi_phone_sync,
            metadata: r.metadata.clone(),
        }),
        Record::AccessCode(r) => PbKind::AccessCode(pb::AccessCode {
            id: r.id.to_string(),
            door: r.door.to_string(),
            name: r.name.clone(),
            code: r.code.expose().to_owned(),
            starts_at: r.starts_at.map(time_to),
            ends_at: r.ends_at.map(time_to),
            one_time_use: r.one_time_use,
            created_at: Some(time_to(r.created_at)),
            used_at: r.used_at.map(time_to),
            deleted: r.deleted,
        }),
        Record::Schedule(s) => {
            let (rule, ranges) = match &s.on_holidays {
                OnHolidays::Closed => (pb::HolidayRule::Closed, Vec::new()),
                OnHolidays::Normal => (pb::HolidayRule::Normal, Vec::new()),
                OnHolidays::Intervals(r) => (
                    pb::HolidayRule::Ranges,
                    r.iter()
                        .map(|r| pb::TimeRange {
                            start_second: tod_to(r.start),
                            end_second: tod_to(r.end),
                        })
                        .collect(),
                ),
            };
            PbKind::Schedule(pb::Schedule {
                id: s.id.to_string(),
                name: s.name.clone(),
                intervals: s
                    .intervals
                    .iter()
                    .map(|i| pb::WeeklyInterval {
                        days: i.days.iter().map(|d| d.index() as i32 + 1).collect(),
                        start_second: tod_to(i.start),
                        end_second: tod_to(i.end),
                    })
                    .collect(),
                on_holidays: rule as i32,
                holiday_ranges: ranges,
            })
        }
        Record::Holiday(h) => PbKind::Holiday(pb::Holiday {
            date: h.date.to_string(),
            name: h.name.clone(),
        }),
        Record::Access(a) => PbKind::Access(pb::Access {
            id: a.id.to_string(),
            name: a.name.clone(),
            kind: (match a.kind {
                AccessKind::Permanent => pb::AccessKind::Permanent,
                AccessKind::Temporary => pb::AccessKind::Temporary,
            }) as i32,
            status: (match a.status {
                AccessStatus::Initial => pb::AccessStatus::Initial,
                AccessStatus::Ready => pb::AccessStatus::Ready,
                AccessStatus::Creating => pb::AccessStatus::Creating,
                AccessStatus::Updating => pb::AccessStatus::Updating,
                AccessStatus::Deleting => pb::AccessStatus::Deleting,
                AccessStatus::Deleted => pb::AccessStatus::Deleted,
            }) as i32,
            valid_from: a.valid_from.map(time_to),
            valid_to: a.valid_to.map(time_to),
            schedule: a.schedule.as_ref().map(ToString::to_string),
            doors: a
                .doors
                .iter()
                .map(|d| pb::AccessDoor {
                    door: d.door.to_string(),
                    lock_unlock: d.lock_unlock,
                    first_card_unlock: d.first_card_unlock,
                    in_auth: auth_to(d.in_auth),
                    out_auth: auth_to(d.out_auth),
                })
                .collect(),
            users: strings(&a.users),
            description: a.description.clone(),
            preferences: a.preferences.clone(),
            welcome_email_required: a.welcome_email_required,
            created_at: a.created_at.map(time_to),
            updated_at: a.updated_at.map(time_to),
        }),
        Record::Facility(f) => PbKind::Facility(pb::Facility {
            id: f.id.to_string(),
            name: f.name.clone(),
            doors: strings(&f.doors),
        }),
        Record::Event(e) => PbKind::Event(pb::Event {
            id: e.id.to_string(),
            name: e.name.clone(),
            facility: e.facility.to_string(),
            starts_at: Some(time_to(e.starts_at)),
            ends_at: Some(time_to(e.ends_at)),
            attendees: strings(&e.attendees),
        }),
        Record::Member(m) => PbKind::Member(pb::Member {
            user: m.user.to_string(),
        }),
    };
    pb::Entity { kind: Some(kind) }
}

/// The contract key of a holiday: `YYYY-MM-DD/name`.
pub fn holiday_id(h: &Holiday) -> String {
    format!("{}/{}", h.date, h.name)
}

impl Record {
    /// The record's key in the contract.
    pub fn key(&self) -> pb::EntityKey {
        use pb::EntityKind as K;
        let (kind, id) = match self {
            Record::Site(r) => (K::Site, r.id.clone()),
            Record::Door(r) => (K::Door, r.id.to_string()),
            Record::User(r) => (K::User, r.id.to_string()),
            Record::Credential(r) => (K::Credential, r.id.to_string()),
            Record::AccessCode(r) => (K::AccessCode, r.id.to_string()),
            Record::Schedule(r) => (K::Schedule, r.id.to_string()),
            Record::Holiday(r) => (K::Holiday, holiday_id(r)),
            Record::Access(r) => (K::Access, r.id.to_string()),
            Record::Facility(r) => (K::Facility, r.id.to_string()),
            Record::Event(r) => (K::Event, r.id.to_string()),
            Record::Member(r) => (K::Member, r.user.to_string()),
        };
        pb::EntityKey {
            kind: kind as i32,
            id,
        }
    }
}

/// Every record of a data set, site first.
pub fn records(data: &DataSet) -> Vec<Record> {
    let mut out = vec![Record::Site(data.site.clone())];
    out.extend(data.doors.iter().cloned().map(Record::Door));
    out.extend(data.users.iter().cloned().map(Record::User));
    out.extend(data.credentials.iter().cloned().map(Record::Credential));
    out.extend(data.access_codes.iter().cloned().map(Record::AccessCode));
    out.extend(data.schedules.iter().cloned().map(Record::Schedule));
    out.extend(data.holidays.iter().cloned().map(Record::Holiday));
    out.extend(data.accesses.iter().cloned().map(Record::Access));
    out.extend(data.facilities.iter().cloned().map(Record::Facility));
    out.extend(data.events.iter().cloned().map(Record::Event));
    out.extend(data.members.iter().cloned().map(Record::Member));
    out
}

/// Adds a record to a data set being assembled (no duplicate check: the
/// snapshot writer and [`View::build`](crate::access::View::build) do it).
pub fn push(data: &mut DataSet, record: Record) {
    match record {
        Record::Site(r) => data.site = r,
        Record::Door(r) => data.doors.push(r),
        Record::User(r) => data.users.push(r),
        Record::Credential(r) => data.credentials.push(r),
        Record::AccessCode(r) => data.access_codes.push(r),
        Record::Schedule(r) => data.schedules.push(r),
        Record::Holiday(r) => data.holidays.push(r),
        Record::Access(r) => data.accesses.push(r),
        Record::Facility(r) => data.facilities.push(r),
        Record::Event(r) => data.events.push(r),
        Record::Member(r) => data.members.push(r),
    }
}

/// The store collection and key of a record (as [`site_data`] lays it out).
pub fn store_key(key: &pb::EntityKey) -> Option<(&'static str, Vec<u8>)> {
    use pb::EntityKind as K;
    let collection = match pb::EntityKind::try_from(key.kind).ok()? {
        K::Unspecified => return None,
        K::Site => return Some((site_data::SITE, site_data::SITE_KEY.to_vec())),
        K::Door => site_data::DOORS,
        K::User => site_data::USERS,
        K::Credential => site_data::CREDENTIALS,
        K::AccessCode => site_data::ACCESS_CODES,
        K::Schedule => site_data::SCHEDULES,
        K::Holiday => {
            let (date, name) = split_holiday_id(&key.id)?;
            return Some((site_data::HOLIDAYS, format!("{date}\0{name}").into_bytes()));
        }
        K::Access => site_data::ACCESSES,
        K::Facility => site_data::FACILITIES,
        K::Event => site_data::EVENTS,
        K::Member => site_data::MEMBERS,
    };
    Some((collection, key.id.as_bytes().to_vec()))
}

/// `YYYY-MM-DD/name` → (date, name).
pub fn split_holiday_id(id: &str) -> Option<(&str, &str)> {
    let (date, name) = id.split_at_checked(10)?;
    Some((date, name.strip_prefix('/')?))
}

/// Applies upserts and deletes to a data set in memory, each by key.
/// `Err` names the first change that cannot apply (a site delete, an
/// unknown kind).
pub fn apply_changes(data: &mut DataSet, changes: Vec<ChangeOp>) -> Result<(), ConvertError> {
    let mut idx = Indexes::default();
    for change in changes {
        match change {
            ChangeOp::Upsert(record) => idx.upsert(data, record),
            ChangeOp::Delete(key) => idx.delete(data, &key)?,
        }
    }
    Ok(())
}

/// One parsed change.
// Short-lived (one revision's worth, consumed at once): boxing each record
// would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeOp {
    /// Insert or replace.
    Upsert(Record),
    /// Remove by key.
    Delete(pb::EntityKey),
}

/// Parses a revision's changes.
pub fn parse_changes(changes: Vec<pb::Change>) -> Result<Vec<ChangeOp>, ConvertError> {
    changes
        .into_iter()
        .map(|c| match c.op {
            Some(pb::change::Op::Upsert(e)) => from_proto(e).map(ChangeOp::Upsert),
            Some(pb::change::Op::Delete(k)) => {
                let kind = pb::EntityKind::try_from(k.kind).unwrap_or(pb::EntityKind::Unspecified);
                if kind == pb::EntityKind::Unspecified || k.id.is_empty() {
                    return Err(ConvertError::Invalid {
                        kind: "delete",
                        id: k.id,
                        field: "key",
                        reason: "a delete needs a known kind and an id".into(),
                    });
                }
                if kind == pb::EntityKind::Site {
                    return Err(ConvertError::Invalid {
                        kind: "site",
                        id: k.id,
                        field: "key",
                        reason: "the site cannot be deleted, only replaced".into(),
                    });
                }
                if kind == pb::EntityKind::Holiday && split_holiday_id(&k.id).is_none() {
                    return Err(ConvertError::Invalid {
                        kind: "holiday",
                        id: k.id,
                        field: "key",
                        reason: "a holiday key is YYYY-MM-DD/name".into(),
                    });
                }
                Ok(ChangeOp::Delete(k))
            }
            None => Err(ConvertError::Empty),
        })
        .collect()
}

/// Per-kind maps from key to position, built when a kind is first touched.
#[derive(Default)]
struct Indexes {
    maps: HashMap<i32, HashMap<String, usize>>,
}

macro_rules! with_list {
    ($data:expr, $kind:expr, |$list:ident, $key:ident| $body:expr) => {{
        use pb::EntityKind as K;
        match $kind {
            K::Door => {
                let $list = &mut $data.doors;
                let $key = |r: &Door| r.id.to_string();
                $body
            }
            K::User => {
                let $list = &mut $data.users;
                let $key = |r: &User| r.id.to_string();
                $body
            }
            K::Credential => {
                let $list = &mut $data.credentials;
                let $key = |r: &Credential| r.id.to_string();
                $body
            }
            K::AccessCode => {
                let $list = &mut $data.access_codes;
                let $key = |r: &AccessCode| r.id.to_string();
                $body
            }
            K::Schedule => {
                let $list = &mut $data.schedules;
                let $key = |r: &Schedule| r.id.to_string();
                $body
            }
            K::Holiday => {
                let $list = &mut $data.holidays;
                let $key = |r: &Holiday| holiday_id(r);
                $body
            }
            K::Access => {
                let $list = &mut $data.accesses;
                let $key = |r: &Access| r.id.to_string();
                $body
            }
            K::Facility => {
                let $list = &mut $data.facilities;
                let $key = |r: &Facility| r.id.to_string();
                $body
            }
            K::Event => {
                let $list = &mut $data.events;
                let $key = |r: &Event| r.id.to_string();
                $body
            }
            K::Member => {
                let $list = &mut $data.members;
                let $key = |r: &Member| r.user.to_string();
                $body
            }
            K::Site | K::Unspecified => {}
        }
    }};
}

fn index_of<'m, T>(
    maps: &'m mut HashMap<i32, HashMap<String, usize>>,
    kind: pb::EntityKind,
    list: &[T],
    key: impl Fn(&T) -> String,
) -> &'m mut HashMap<String, usize> {
    maps.entry(kind as i32)
        .or_insert_with(|| list.iter().enumerate().map(|(i, r)| (key(r), i)).collect())
}

fn upsert_in<T>(map: &mut HashMap<String, usize>, list: &mut Vec<T>, k: String, record: T) {
    match map.get(&k) {
        Some(&i) if i < list.len() => list[i] = record,
        _ => {
            map.insert(k, list.len());
            list.push(record);
        }
    }
}

fn delete_in<T>(
    map: &mut HashMap<String, usize>,
    list: &mut Vec<T>,
    k: &str,
    key: impl Fn(&T) -> String,
) {
    if let Some(i) = map.remove(k) {
        if i < list.len() {
            list.swap_remove(i);
            if let Some(moved) = list.get(i) {
                map.insert(key(moved), i);
            }
        }
    }
}

impl Indexes {
    fn upsert(&mut self, data: &mut DataSet, record: Record) {
        let key = record.key();
        let kind = pb::EntityKind::try_from(key.kind).unwrap_or(pb::EntityKind::Unspecified);
        let maps = &mut self.maps;
        macro_rules! up {
            ($list:expr, $r:expr, $keyf:expr) => {{
                let map = index_of(maps, kind, $list, $keyf);
                upsert_in(map, $list, key.id, $r)
            }};
        }
        match record {
            Record::Site(s) => data.site = s,
            Record::Door(r) => up!(&mut data.doors, r, |r: &Door| r.id.to_string()),
            Record::User(r) => up!(&mut data.users, r, |r: &User| r.id.to_string()),
            Record::Credential(r) => {
                up!(&mut data.credentials, r, |r: &Credential| r.id.to_string())
            }
            Record::AccessCode(r) => {
                up!(&mut data.access_codes, r, |r: &AccessCode| r.id.to_string())
            }
            Record::Schedule(r) => up!(&mut data.schedules, r, |r: &Schedule| r.id.to_string()),
            Record::Holiday(r) => up!(&mut data.holidays, r, holiday_id),
            Record::Access(r) => up!(&mut data.accesses, r, |r: &Access| r.id.to_string()),
            Record::Facility(r) => up!(&mut data.facilities, r, |r: &Facility| r.id.to_string()),
            Record::Event(r) => up!(&mut data.events, r, |r: &Event| r.id.to_string()),
            Record::Member(r) => up!(&mut data.members, r, |r: &Member| r.user.to_string()),
        }
    }

    fn delete(&mut self, data: &mut DataSet, key: &pb::EntityKey) -> Result<(), ConvertError> {
        let kind = pb::EntityKind::try_from(key.kind).unwrap_or(pb::EntityKind::Unspecified);
        let maps = &mut self.maps;
        with_list!(data, kind, |list, keyf| {
            let map = index_of(maps, kind, list, keyf);
            delete_in(map, list, &key.id, keyf)
        });
        Ok(())
    }
}
