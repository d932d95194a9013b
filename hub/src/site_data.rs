//! The cloud's access data set ([`DataSet`]) in the [`store`].
//!
//! One store collection per kind of record, each record under its id (UTF-8
//! bytes of the id), except credentials, which are stored in chunks of
//! about [`CHUNK`] (a store record each costs sled about 35 bytes of memory
//! and a page-table slot; a million of them were most of the hub's memory,
//! docs/benchmarks.md):
//!
//! | collection | key | record |
//! |---|---|---|
//! | `site` | `site` | [`Site`] |
//! | `doors` | door id | [`Door`] |
//! | `users` | user id | [`User`](crate::access::User) |
//! | `credential_chunks` | the chunk's lowest credential id | `Vec<`[`Credential`]`>`, ascending ids, every id at or above the key and below the next chunk's key (the first chunk also takes ids below its key) |
//! | `access_codes` | access code id | [`AccessCode`] |
//! | `schedules` | schedule id | [`Schedule`] |
//! | `holidays` | date (`YYYY-MM-DD`), NUL, name | [`Holiday`] |
//! | `accesses` | access id | [`Access`](crate::access::Access) |
//! | `facilities` | facility id | [`Facility`] |
//! | `events` | event id | [`Event`](crate::access::Event) |
//! | `members` | user id | [`Member`](crate::access::Member) |
//!
//! [`save_snapshot`] writes a whole data set as one store snapshot: it becomes
//! visible atomically at commit, with its revision. [`load`] reads every
//! collection from one store view, so it never mixes two revisions. Records
//! come back ordered by key (id), not in the order they were saved; nothing
//! in [`View`] depends on that order.
//!
//! One-time access codes this hub used are not in these collections: the
//! store keeps them apart ([`Store::record_code_use`]) and every view built
//! here ([`load_view`], [`load_view_with_changes`], [`staged_view`]) is
//! marked with them, so a use survives restarts, revisions and snapshots
//! that still carry the code unused.
//!
//! [`load_view`] builds the decision [`View`] straight
//! from the store instead (no `DataSet` in between; the hub's path, see
//! docs/benchmarks.md for its memory).
//!
//! A store that never received a snapshot gives [`SiteDataError::NoData`]:
//! the hub asks the cloud for a full snapshot
//! ([`SiteDataError::needs_full_resync`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hub::store::{Store, StoreConfig};
//! let (store, _report) = Store::open(StoreConfig::new("/var/lib/hub/store"))?;
//! match hub::site_data::load(&store) {
//!     Ok((data, revision)) => {
//!         let view = hub::access::View::build(data)?;
//!         # let _ = (view, revision);
//!     }
//!     Err(e) if e.needs_full_resync() => { /* ask the cloud for a snapshot */ }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Serialize;

use jiff::tz::TimeZoneDatabase;
use jiff::Timestamp;

use crate::access::view::ViewBuilder;
use crate::access::{
    AccessCode, Credential, DataSet, Door, Facility, Holiday, ModelError, Schedule, Site, View,
};
use crate::store::{self, ChangeSet, SnapshotInfo, Store, StoreError};

/// Collection of the site record.
pub const SITE: &str = "site";
/// Key of the site record in [`SITE`].
pub const SITE_KEY: &[u8] = b"site";
/// Collection of doors.
pub const DOORS: &str = "doors";
/// Collection of users.
pub const USERS: &str = "users";
/// The kind name of credentials in change sets and snapshots
/// ([`DataChange::upsert`], [`stage`]): they are stored in
/// [`CREDENTIAL_CHUNKS`]. A store holding a collection of this name has the
/// former layout (one record per credential): [`SiteDataError::OldLayout`].
pub const CREDENTIALS: &str = "credentials";
/// Collection of credential chunks (see the module documentation).
pub const CREDENTIAL_CHUNKS: &str = "credential_chunks";
/// Credentials a chunk gets when a snapshot is written. Revisions add to or
/// remove from one chunk; a chunk that grows past twice this is split.
pub const CHUNK: usize = 1000;
/// Where a streamed snapshot keeps credentials one by one (in any order)
/// until [`seal`] writes them as chunks.
const CREDENTIALS_STAGING: &str = "credentials_staging";
/// Collection of access codes.
pub const ACCESS_CODES: &str = "access_codes";
/// Collection of schedules.
pub const SCHEDULES: &str = "schedules";
/// Collection of holidays.
pub const HOLIDAYS: &str = "holidays";
/// Collection of accesses.
pub const ACCESSES: &str = "accesses";
/// Collection of facilities.
pub const FACILITIES: &str = "facilities";
/// Collection of events.
pub const EVENTS: &str = "events";
/// Collection of members.
pub const MEMBERS: &str = "members";

/// Errors of saving or loading the data set.
#[derive(Debug, thiserror::Error)]
pub enum SiteDataError {
    /// The store holds no data set yet (no snapshot was ever committed, or
    /// the store was replaced after damage): ask the cloud for a full
    /// snapshot.
    #[error("no data set in the store yet: a full snapshot is needed")]
    NoData,
    /// The store has a revision but no site record: not written by
    /// [`save_snapshot`]. Ask for a full snapshot.
    #[error("the stored data set has no site record: a full snapshot is needed")]
    MissingSite,
    /// Two records of one kind share a key; nothing was committed.
    #[error("duplicate key in collection {collection:?}: {key:?}")]
    DuplicateKey {
        /// The collection.
        collection: &'static str,
        /// The record's id (ids are not secret).
        key: String,
    },
    /// The store failed (including a record that does not decode, which
    /// also calls for a full snapshot).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored data set is not usable ([`load_view`]); the error names
    /// the record, as [`View::build`] would.
    #[error("stored data set: {0}")]
    Model(#[from] ModelError),
    /// The store holds credentials in the former layout (one record each):
    /// ask for a full snapshot.
    #[error("the stored data set has the former credential layout: a full snapshot is needed")]
    OldLayout,
}

impl SiteDataError {
    /// Whether the hub should ask the cloud for a full snapshot: no data
    /// yet, or stored data this build cannot read.
    pub fn needs_full_resync(&self) -> bool {
        matches!(
            self,
            SiteDataError::NoData
                | SiteDataError::MissingSite
                | SiteDataError::OldLayout
                | SiteDataError::Store(StoreError::Decode { .. })
        )
    }
}

/// Writes `data` as the store's whole data set at `revision`, atomically
/// (one store snapshot, committed at the end). Fails without changing the
/// stored data set if two records of one kind share an id.
pub fn save_snapshot(
    store: &Store,
    data: &DataSet,
    revision: u64,
) -> Result<SnapshotInfo, SiteDataError> {
    let mut w = store.begin_snapshot(revision)?;
    w.put(SITE, SITE_KEY, &data.site)?;
    put_all(&mut w, DOORS, &data.doors, |r| r.id.as_str().into())?;
    put_all(&mut w, USERS, &data.users, |r| r.id.as_str().into())?;
    put_credentials(&mut w, &data.credentials)?;
    put_all(&mut w, ACCESS_CODES, &data.access_codes, |r| {
        r.id.as_str().into()
    })?;
    put_all(&mut w, SCHEDULES, &data.schedules, |r| r.id.as_str().into())?;
    put_all(&mut w, HOLIDAYS, &data.holidays, |r| holiday_key(r).into())?;
    put_all(&mut w, ACCESSES, &data.accesses, |r| r.id.as_str().into())?;
    put_all(&mut w, FACILITIES, &data.facilities, |r| {
        r.id.as_str().into()
    })?;
    put_all(&mut w, EVENTS, &data.events, |r| r.id.as_str().into())?;
    put_all(&mut w, MEMBERS, &data.members, |r| r.user.as_str().into())?;
    Ok(w.commit()?)
}

/// Reads the data set and its revision, all from one store view.
/// [`SiteDataError::NoData`] when the store has none yet.
pub fn load(store: &Store) -> Result<(DataSet, u64), SiteDataError> {
    let view = store.view();
    let revision = view.revision().ok_or(SiteDataError::NoData)?;
    let site: Site = view
        .get(SITE, SITE_KEY)?
        .ok_or(SiteDataError::MissingSite)?;
    if !view.is_empty(CREDENTIALS) {
        return Err(SiteDataError::OldLayout);
    }
    let data = DataSet {
        site,
        doors: read_all(&view, DOORS)?,
        users: read_all(&view, USERS)?,
        credentials: read_credentials(&view)?,
        access_codes: read_all(&view, ACCESS_CODES)?,
        schedules: read_all(&view, SCHEDULES)?,
        holidays: read_all(&view, HOLIDAYS)?,
        accesses: read_all(&view, ACCESSES)?,
        facilities: read_all(&view, FACILITIES)?,
        events: read_all(&view, EVENTS)?,
        members: read_all(&view, MEMBERS)?,
    };
    Ok((data, revision))
}

/// Builds the [`View`] straight from the store, in one walk of each
/// collection from one store view, and returns it with the data set's
/// revision. Nothing holds the whole data set at once: users, credentials,
/// accesses, events and members go from the store into the view's compact
/// index record by record, so the peak is the view plus one record (about
/// 300 bytes a credential less than [`load`] then [`View::build`]). The
/// view keeps the small collections as records (see [`View::data`]). The
/// site's time zone is resolved in the bundled database.
///
/// Decisions on this view are the same as on `View::build(load(store)?.0)`.
pub fn load_view(store: &Store) -> Result<(View, u64), SiteDataError> {
    load_view_with_tzdb(store, &TimeZoneDatabase::bundled())
}

/// Like [`load_view`], resolving the site's time zone in `tzdb` (for
/// example the system's, `jiff::tz::db()`).
pub fn load_view_with_tzdb(
    store: &Store,
    tzdb: &TimeZoneDatabase,
) -> Result<(View, u64), SiteDataError> {
    let view = build_view(&store.view(), tzdb)?;
    merge_code_uses(&view.0, store)?;
    Ok(view)
}

/// The [`View`] the store's data set would give after `change`, without
/// writing anything: the change set's records laid over the stored ones
/// ([`Store::view_with`]). A change set that would leave a bad data set
/// fails here as [`load_view`] would, so the caller can refuse it before
/// [`Store::apply`]. The store must be at the change set's base revision
/// ([`StoreError::RevisionMismatch`] otherwise).
pub fn load_view_with_changes(
    store: &Store,
    change: &ChangeSet,
) -> Result<(View, u64), SiteDataError> {
    let view = build_view(&store.view_with(change)?, &TimeZoneDatabase::bundled())?;
    merge_code_uses(&view.0, store)?;
    Ok(view)
}

/// The [`View`] of a snapshot being written, before its commit (to refuse
/// a bad one while the old data set is still in force).
pub fn staged_view(writer: &store::SnapshotWriter<'_>) -> Result<(View, u64), SiteDataError> {
    let view = build_view(&writer.view(), &TimeZoneDatabase::bundled())?;
    merge_code_uses(&view.0, writer.store())?;
    Ok(view)
}

/// Marks in `view` the one-time code uses this hub recorded in the store
/// ([`Store::record_code_use`]): a use outlives a restart and every new
/// data set, even one that still carries the code unused. Uses of codes
/// the view does not have are ignored here (the cloud sync drops them,
/// [`Store::forget_code_uses`]).
fn merge_code_uses(view: &View, store: &Store) -> Result<(), SiteDataError> {
    for (id, ms) in store.code_uses()? {
        if let Ok(at) = Timestamp::from_millisecond(ms) {
            view.record_code_use(&id.into(), at);
        }
    }
    Ok(())
}

/// [`load_view`] over any store view (current, with changes laid over, or
/// a staged snapshot).
fn build_view(
    view: &store::View<'_>,
    tzdb: &TimeZoneDatabase,
) -> Result<(View, u64), SiteDataError> {
    let revision = view.revision().ok_or(SiteDataError::NoData)?;
    let site: Site = view
        .get(SITE, SITE_KEY)?
        .ok_or(SiteDataError::MissingSite)?;
    if !view.is_empty(CREDENTIALS) {
        return Err(SiteDataError::OldLayout);
    }
    let holidays: Vec<Holiday> = read_all(view, HOLIDAYS)?;
    let mut b = ViewBuilder::new(&site, &holidays, tzdb)?;
    // The records the view keeps.
    let mut kept = DataSet {
        site,
        holidays,
        ..DataSet::default()
    };
    kept.doors = read_all::<Door>(view, DOORS)?;
    for door in &kept.doors {
        b.door(door)?;
    }
    for item in view.iter(USERS) {
        b.user(&item?.1)?;
    }
    for item in view.iter(MEMBERS) {
        b.member(&item?.1)?;
    }
    for item in view.iter::<Vec<Credential>>(CREDENTIAL_CHUNKS) {
        for credential in &item?.1 {
            b.credential(credential)?;
        }
    }
    b.end_credentials()?;
    kept.schedules = read_all::<Schedule>(view, SCHEDULES)?;
    for schedule in &kept.schedules {
        b.schedule(schedule)?;
    }
    for item in view.iter(ACCESSES) {
        b.access(&item?.1)?;
    }
    kept.facilities = read_all::<Facility>(view, FACILITIES)?;
    for facility in &kept.facilities {
        b.facility(facility)?;
    }
    for item in view.iter(EVENTS) {
        b.event(&item?.1)?;
    }
    kept.access_codes = read_all::<AccessCode>(view, ACCESS_CODES)?;
    for code in &kept.access_codes {
        b.access_code(code)?;
    }
    Ok((b.finish(kept), revision))
}

/// A holiday's key: its date, then its name (two holidays may share a day).
pub fn holiday_key(holiday: &Holiday) -> String {
    format!("{}\0{}", holiday.date, holiday.name)
}

fn put_all<'r, T: Serialize>(
    w: &mut store::SnapshotWriter<'_>,
    collection: &'static str,
    records: &'r [T],
    key: impl Fn(&'r T) -> std::borrow::Cow<'r, str>,
) -> Result<(), SiteDataError> {
    let mut seen = HashSet::with_capacity(records.len());
    for record in records {
        let k = key(record);
        if seen.contains(&k) {
            // Dropping the writer discards the snapshot.
            return Err(SiteDataError::DuplicateKey {
                collection,
                key: k.replace('\0', " "),
            });
        }
        w.put(collection, k.as_bytes(), record)?;
        seen.insert(k);
    }
    Ok(())
}

/// Writes credentials as chunks of [`CHUNK`] in id order; two with one id
/// are [`SiteDataError::DuplicateKey`].
fn put_credentials(
    w: &mut store::SnapshotWriter<'_>,
    credentials: &[Credential],
) -> Result<(), SiteDataError> {
    let mut sorted: Vec<&Credential> = credentials.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    if let Some(pair) = sorted.windows(2).find(|p| p[0].id == p[1].id) {
        return Err(SiteDataError::DuplicateKey {
            collection: CREDENTIALS,
            key: pair[0].id.to_string(),
        });
    }
    for chunk in sorted.chunks(CHUNK) {
        w.put(CREDENTIAL_CHUNKS, chunk[0].id.as_str().as_bytes(), chunk)?;
    }
    Ok(())
}

fn read_credentials(view: &store::View<'_>) -> Result<Vec<Credential>, SiteDataError> {
    let mut out = Vec::new();
    for item in view.iter::<Vec<Credential>>(CREDENTIAL_CHUNKS) {
        out.extend(item?.1);
    }
    out.shrink_to_fit();
    Ok(out)
}

/// Puts one record of a streamed snapshot (records in any order, each kind
/// under [`convert`](crate::cloud::convert)'s collection name, credentials
/// under [`CREDENTIALS`]). Returns `false` (nothing written) when the
/// snapshot already has a record of this kind with this key. Call [`seal`]
/// after the last record.
pub fn stage<T: Serialize + ?Sized>(
    w: &mut store::SnapshotWriter<'_>,
    collection: &str,
    key: impl AsRef<[u8]>,
    value: &T,
) -> Result<bool, SiteDataError> {
    let collection = if collection == CREDENTIALS {
        CREDENTIALS_STAGING
    } else {
        collection
    };
    Ok(w.put_new(collection, key, value)?)
}

/// Rewrites the credentials [`stage`]d one by one as chunks (in id order)
/// and drops the staging collection. After it, [`staged_view`] and the
/// commit see the store layout.
pub fn seal(w: &mut store::SnapshotWriter<'_>) -> Result<(), SiteDataError> {
    let mut chunk: Vec<Credential> = Vec::with_capacity(CHUNK);
    for item in w.records_of(CREDENTIALS_STAGING) {
        let (_, bytes) = item?;
        chunk.push(
            postcard::from_bytes(&bytes).map_err(|source| StoreError::Decode {
                collection: CREDENTIALS_STAGING.to_owned(),
                source,
            })?,
        );
        if chunk.len() == CHUNK {
            w.put(CREDENTIAL_CHUNKS, chunk[0].id.as_str().as_bytes(), &chunk)?;
            chunk.clear();
        }
    }
    if let Some(first) = chunk.first() {
        w.put(CREDENTIAL_CHUNKS, first.id.as_str().as_bytes(), &chunk)?;
    }
    w.remove(CREDENTIALS_STAGING)?;
    Ok(())
}

/// One credential by id, from its chunk.
pub fn credential(store: &Store, id: &str) -> Result<Option<Credential>, SiteDataError> {
    let view = store.view();
    let Some((_, bytes)) = view.floor_or_first_raw(CREDENTIAL_CHUNKS, id)? else {
        return Ok(None);
    };
    let chunk: Vec<Credential> = decode_chunk(&bytes)?;
    Ok(chunk
        .binary_search_by(|c| c.id.as_str().cmp(id))
        .ok()
        .and_then(|i| chunk.into_iter().nth(i)))
}

fn decode_chunk(bytes: &[u8]) -> Result<Vec<Credential>, SiteDataError> {
    postcard::from_bytes(bytes).map_err(|source| {
        SiteDataError::Store(StoreError::Decode {
            collection: CREDENTIAL_CHUNKS.to_owned(),
            source,
        })
    })
}

/// A change of the data set from one revision to the next, in the store's
/// terms: records by collection and key as in a [`ChangeSet`], with
/// credentials given one by one ([`DataChange::upsert_credential`],
/// [`DataChange::delete_credential`]) and turned into changes of their
/// chunks by [`DataChange::resolve`].
#[derive(Debug)]
pub struct DataChange {
    change: ChangeSet,
    credentials: Vec<(String, Option<Credential>)>,
}

impl DataChange {
    /// A change from `base_revision` to `revision`.
    pub fn new(base_revision: u64, revision: u64) -> Self {
        Self {
            change: ChangeSet::new(base_revision, revision),
            credentials: Vec::new(),
        }
    }

    /// Inserts or replaces a record of any kind but credentials.
    pub fn upsert<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), SiteDataError> {
        self.change.upsert(collection, key, value)?;
        Ok(())
    }

    /// Removes a record of any kind; [`CREDENTIALS`] goes to
    /// [`DataChange::delete_credential`].
    pub fn delete(&mut self, collection: &str, key: &[u8]) {
        if collection == CREDENTIALS {
            self.delete_credential(&String::from_utf8_lossy(key));
        } else {
            self.change.delete(collection, key);
        }
    }

    /// Inserts or replaces a credential.
    pub fn upsert_credential(&mut self, credential: Credential) {
        self.credentials
            .push((credential.id.to_string(), Some(credential)));
    }

    /// Removes a credential (an unknown id is fine).
    pub fn delete_credential(&mut self, id: &str) {
        self.credentials.push((id.to_owned(), None));
    }

    /// The store change set: the records, and the credential chunks the
    /// credential changes touch, read from `store` and rewritten (a chunk
    /// is replaced under its new lowest id, split past twice [`CHUNK`],
    /// removed when empty). The store must be at the base revision and
    /// stay there until [`Store::apply`] (one writer: the sync).
    pub fn resolve(self, store: &Store) -> Result<ChangeSet, SiteDataError> {
        let mut change = self.change;
        if self.credentials.is_empty() {
            return Ok(change);
        }
        let view = store.view();
        if view.revision() != Some(change.base_revision()) {
            return Err(StoreError::RevisionMismatch {
                base: change.base_revision(),
                current: view.revision(),
            }
            .into());
        }
        // Touched chunks by their stored key (empty: no chunk at all yet).
        let mut touched: std::collections::BTreeMap<Vec<u8>, Vec<Credential>> =
            std::collections::BTreeMap::new();
        for (id, value) in self.credentials {
            let (key, stored) = match view.floor_or_first_raw(CREDENTIAL_CHUNKS, &id)? {
                Some((key, bytes)) => (key.to_vec(), Some(bytes)),
                None => (Vec::new(), None),
            };
            let chunk = match touched.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(match stored {
                    Some(bytes) => decode_chunk(&bytes)?,
                    None => Vec::new(),
                }),
            };
            match (chunk.binary_search_by(|c| c.id.as_str().cmp(&id)), value) {
                (Ok(i), Some(c)) => chunk[i] = c,
                (Ok(i), None) => {
                    chunk.remove(i);
                }
                (Err(i), Some(c)) => chunk.insert(i, c),
                (Err(_), None) => {}
            }
        }
        drop(view);
        for (key, credentials) in touched {
            // The old key first: a later op on the same key wins.
            if !key.is_empty() {
                change.delete(CREDENTIAL_CHUNKS, &key);
            }
            let size = if credentials.len() > 2 * CHUNK {
                CHUNK
            } else {
                credentials.len().max(1)
            };
            for piece in credentials.chunks(size) {
                change.upsert(CREDENTIAL_CHUNKS, piece[0].id.as_str().as_bytes(), piece)?;
            }
        }
        Ok(change)
    }
}

fn read_all<T: DeserializeOwned>(
    view: &store::View<'_>,
    collection: &str,
) -> Result<Vec<T>, SiteDataError> {
    // One walk (counting first would walk the collection twice), then the
    // spare capacity back.
    let mut out = Vec::new();
    for item in view.iter::<T>(collection) {
        out.push(item?.1);
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{fixture, View};
    use crate::store::StoreConfig;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(StoreConfig::new(dir.path().join("store")))
            .unwrap()
            .0
    }

    /// The fixture with every list in key order (the order `load` returns).
    fn by_key(mut d: DataSet) -> DataSet {
        d.doors.sort_by(|a, b| a.id.cmp(&b.id));
        d.users.sort_by(|a, b| a.id.cmp(&b.id));
        d.credentials.sort_by(|a, b| a.id.cmp(&b.id));
        d.access_codes.sort_by(|a, b| a.id.cmp(&b.id));
        d.schedules.sort_by(|a, b| a.id.cmp(&b.id));
        d.holidays.sort_by_key(holiday_key);
        d.accesses.sort_by(|a, b| a.id.cmp(&b.id));
        d.facilities.sort_by(|a, b| a.id.cmp(&b.id));
        d.events.sort_by(|a, b| a.id.cmp(&b.id));
        d.members.sort_by(|a, b| a.user.cmp(&b.user));
        d
    }

    #[test]
    fn round_trip_of_the_fixture() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let original = fixture::data();
        let info = save_snapshot(&store, &original, 42).unwrap();
        assert_eq!(info.revision, 42);
        let (loaded, revision) = load(&store).unwrap();
        assert_eq!(revision, 42);
        assert_eq!(loaded, by_key(original.clone()));
        View::build(loaded).unwrap();

        // And after reopening the store.
        store.close().unwrap();
        let store = open(&dir);
        let (loaded, revision) = load(&store).unwrap();
        assert_eq!((revision, loaded), (42, by_key(original)));
    }

    #[test]
    fn loaded_view_decides_without_its_credential_records() {
        use crate::access::{decide, CardNumber, Direction, Request};
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        save_snapshot(&store, &fixture::data(), 5).unwrap();
        let mut view = View::build(load(&store).unwrap().0).unwrap();
        assert_eq!(view.release_credential_records(), 10);
        assert!(view.data().credentials.is_empty());
        let card = CardNumber::new(Some(12), 34567);
        let d = decide(
            &Request::card("front", Direction::In, card),
            &view,
            fixture::now(),
        );
        assert!(d.granted, "{d}");
    }

    /// Every request the data set can produce (each card, PIN, code, key,
    /// barcode, biometric id and check, at every door, both ways, at a few
    /// times), decided on both views: the decisions must be equal.
    fn assert_same_decisions(data: &DataSet, times: &[jiff::Timestamp]) {
        use crate::access::{
            decide, door_mode, AccessMethod, CardKey, CardNumber, CheckQuery, Direction, Pin,
            Presented, Request,
        };
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        save_snapshot(&store, data, 9).unwrap();
        let (from_store, revision) = load_view(&store).unwrap();
        assert_eq!(revision, 9);
        // The same records in the same (key) order, through a DataSet.
        let built = View::build(load(&store).unwrap().0).unwrap();

        let card_of = |text: &str| match CardKey::parse(text) {
            Ok(CardKey::Number { facility, number }) => {
                Some(CardNumber::new(facility.or(Some(99)), number))
            }
            Ok(CardKey::Raw(raw)) => CardNumber::new(None, 1).with_raw(raw.as_bytes()).ok(),
            Err(_) => None,
        };
        let mut cards = vec![CardNumber::new(Some(1), 424242)];
        let mut pins = vec![Pin::parse("000000").unwrap()];
        let mut texts: Vec<String> = vec!["nobody".into()];
        for c in &data.credentials {
            let code = c.code.as_ref().map(|s| s.expose().to_owned());
            match c.access_method {
                AccessMethod::Card => cards.extend(code.as_deref().and_then(card_of)),
                AccessMethod::Code => pins.extend(code.as_deref().and_then(|p| Pin::parse(p).ok())),
                AccessMethod::MobileKey => texts.extend(code.into_iter().chain([c.id.to_string()])),
            }
        }
        for code in &data.access_codes {
            pins.extend(Pin::parse(code.code.expose()).ok());
        }
        for u in &data.users {
            texts.push(u.id.to_string());
            texts.extend(u.barcode_id.clone());
            texts.extend(u.acs_id.clone());
            if let Some(id) = &u.door_access_id {
                texts.push(id.expose().to_owned());
                cards.extend(card_of(id.expose()));
            }
        }
        let mut doors: Vec<&str> = data.doors.iter().map(|d| d.id.as_str()).collect();
        doors.push("no-such-door");
        let mut compared = 0;
        for &now in times {
            assert_eq!(
                from_store.code_statuses(now).collect::<Vec<_>>(),
                built.code_statuses(now).collect::<Vec<_>>()
            );
            for &door in &doors {
                assert_eq!(
                    door_mode(&from_store, door, now),
                    door_mode(&built, door, now)
                );
                for direction in [Direction::In, Direction::Out] {
                    let mut presented: Vec<Presented<'_>> = Vec::new();
                    presented.extend(cards.iter().map(|&c| Presented::Card(c)));
                    presented.extend(pins.iter().map(|p| Presented::Pin(p.clone())));
                    for (i, &card) in cards.iter().enumerate() {
                        let pin = pins[i % pins.len()].clone();
                        presented.push(Presented::CardAndPin { card, pin });
                    }
                    for text in &texts {
                        presented.push(Presented::MobileKey(text));
                        presented.push(Presented::Barcode(text));
                        presented.push(Presented::Biometric(text));
                        presented.push(Presented::Check(CheckQuery {
                            id: Some(text),
                            ..CheckQuery::default()
                        }));
                        presented.push(Presented::Check(CheckQuery {
                            door_access_id: Some(text),
                            barcode_id: Some(text),
                            ..CheckQuery::default()
                        }));
                    }
                    for p in presented {
                        let request = Request::new(door, direction, p);
                        let a = decide(&request, &from_store, now);
                        let b = decide(&request, &built, now);
                        assert_eq!(a, b, "{request}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn view_from_the_store_decides_like_view_build() {
        use crate::access::fixture::at;
        let times = [
            "2026-06-03T10:00",
            "2026-06-03T23:30",
            "2026-06-05T19:00",
            "2026-06-11T12:00",
            "2026-07-02T09:00",
            "2026-12-25T10:00",
        ]
        .map(at);
        assert_same_decisions(&fixture::data(), &times);
    }

    #[test]
    fn view_from_the_store_decides_like_view_build_at_scale() {
        use crate::access::scale::{self, Spec};
        use crate::access::{decide, Request};
        let spec = Spec {
            credentials: 5_000,
            users: 500,
            accesses: 50,
            codes: 50,
        };
        let data = scale::data_set(spec);
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        save_snapshot(&store, &data, 3).unwrap();
        let (from_store, _) = load_view(&store).unwrap();
        let built = View::build(load(&store).unwrap().0).unwrap();
        let mut granted = 0;
        for g in scale::requests(spec, 5_000) {
            let request: Request<'_> = g.request();
            let a = decide(&request, &from_store, scale::now());
            assert_eq!(a, decide(&request, &built, scale::now()), "{request}");
            granted += usize::from(a.granted);
        }
        assert!(granted > 1_000, "{granted}");
    }

    #[test]
    fn a_bad_stored_record_is_named_like_view_build_names_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let mut bad = fixture::data();
        bad.credentials[3].code = Some(crate::access::Secret::from("12:34567"));
        save_snapshot(&store, &bad, 4).unwrap();
        let err = load_view(&store).unwrap_err();
        let expected = View::build(load(&store).unwrap().0).unwrap_err();
        assert!(
            matches!(&err, SiteDataError::Model(e) if *e == expected),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "stored data set: credential c-gus-card and credential c-ann-card have the same card number"
        );
    }

    #[test]
    fn a_new_snapshot_replaces_the_old_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        save_snapshot(&store, &fixture::data(), 1).unwrap();
        let mut smaller = fixture::data();
        smaller.credentials.truncate(2);
        smaller.holidays.clear();
        save_snapshot(&store, &smaller, 2).unwrap();
        let (loaded, revision) = load(&store).unwrap();
        assert_eq!((revision, loaded), (2, by_key(smaller)));
    }

    #[test]
    fn empty_store_has_no_data_yet() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let err = load(&store).unwrap_err();
        assert!(matches!(err, SiteDataError::NoData), "{err}");
        assert!(err.needs_full_resync());

        // An empty data set is data: it loads as such.
        save_snapshot(&store, &DataSet::default(), 3).unwrap();
        let (loaded, revision) = load(&store).unwrap();
        assert_eq!((revision, loaded), (3, DataSet::default()));
    }

    #[test]
    fn duplicate_ids_commit_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        save_snapshot(&store, &fixture::data(), 1).unwrap();
        let mut bad = fixture::data();
        bad.doors.push(bad.doors[0].clone());
        let err = save_snapshot(&store, &bad, 2).unwrap_err();
        assert!(
            matches!(err, SiteDataError::DuplicateKey { collection: DOORS, ref key } if key == "front"),
            "{err}"
        );
        let (loaded, revision) = load(&store).unwrap();
        assert_eq!((revision, loaded), (1, by_key(fixture::data())));
    }

    /// The chunks as stored: (key, ids), in key order.
    fn chunks(store: &Store) -> Vec<(String, Vec<String>)> {
        store
            .view()
            .iter::<Vec<Credential>>(CREDENTIAL_CHUNKS)
            .map(|item| {
                let (key, chunk) = item.unwrap();
                (
                    String::from_utf8(key).unwrap(),
                    chunk.iter().map(|c| c.id.to_string()).collect(),
                )
            })
            .collect()
    }

    fn scale_data(credentials: u64) -> DataSet {
        crate::access::scale::data_set(crate::access::scale::Spec {
            credentials,
            users: 100,
            accesses: 10,
            codes: 10,
        })
    }

    #[test]
    fn credentials_are_stored_in_chunks_and_changed_one_by_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let n = 2 * CHUNK + CHUNK / 2;
        let data = scale_data(n as u64);
        save_snapshot(&store, &data, 1).unwrap();
        let stored = chunks(&store);
        assert_eq!(
            stored.iter().map(|(_, ids)| ids.len()).collect::<Vec<_>>(),
            [CHUNK, CHUNK, CHUNK / 2]
        );
        for (key, ids) in &stored {
            assert_eq!(key, &ids[0]);
        }
        assert_eq!(load(&store).unwrap(), (by_key(data.clone()), 1));

        // One replaced inside the second chunk, one deleted from the first
        // (its lowest: the chunk gets a new key), one added below every id.
        let inside = stored[1].1[10].clone();
        let lowest = stored[0].1[0].clone();
        let mut expected = data.clone();
        let mut changed = expected
            .credentials
            .iter()
            .find(|c| c.id.as_str() == inside)
            .unwrap()
            .clone();
        changed.starts_at = Some(fixture::now());
        let mut below = changed.clone();
        below.id = "a-first".into();
        below.code = Some("7:4242".into());
        let mut change = DataChange::new(1, 2);
        change.upsert_credential(changed.clone());
        change.delete(CREDENTIALS, lowest.as_bytes());
        change.upsert_credential(below.clone());
        change.delete_credential("no-such-id");
        let change = change.resolve(&store).unwrap();
        // Two chunks rewritten (first: re-keyed), the third untouched.
        assert_eq!(store.revision(), Some(1));
        let (view, revision) = load_view_with_changes(&store, &change).unwrap();
        assert_eq!((view.counts().credentials, revision), (n, 2));
        store.apply(&change).unwrap();
        for c in expected.credentials.iter_mut() {
            if c.id.as_str() == inside {
                *c = changed.clone();
            }
        }
        expected.credentials.retain(|c| c.id.as_str() != lowest);
        expected.credentials.push(below.clone());
        assert_eq!(load(&store).unwrap(), (by_key(expected.clone()), 2));
        let after = chunks(&store);
        assert_eq!(after.len(), 3);
        assert_eq!(after[0].0, "a-first");
        assert_eq!(after[0].1.len(), CHUNK);
        assert_eq!(after[2], stored[2]);
        assert_eq!(credential(&store, &inside).unwrap(), Some(changed));
        assert_eq!(credential(&store, "a-first").unwrap(), Some(below));
        assert_eq!(credential(&store, &lowest).unwrap(), None);
        let (view, _) = load_view(&store).unwrap();
        assert_eq!(view.counts().credentials, n);

        // A chunk that grows past twice CHUNK is split.
        let mut change = DataChange::new(2, 3);
        let template = expected.credentials[0].clone();
        for i in 0..2 * CHUNK {
            let mut c = template.clone();
            // Ids sorting inside the last chunk.
            c.id = format!("{}-x{i:04}", stored[2].1[0]).into();
            c.code = Some(crate::access::Secret::new(format!("9:{}", 5_000_000 + i)));
            expected.credentials.push(c.clone());
            change.upsert_credential(c);
        }
        store.apply(&change.resolve(&store).unwrap()).unwrap();
        let after = chunks(&store);
        assert_eq!(
            after.iter().map(|(_, ids)| ids.len()).collect::<Vec<_>>(),
            [CHUNK, CHUNK, CHUNK, CHUNK, CHUNK / 2]
        );
        for (key, ids) in &after {
            assert_eq!(key, &ids[0]);
        }
        assert_eq!(load(&store).unwrap(), (by_key(expected.clone()), 3));

        // Emptied chunks go; a change set for another revision changes
        // nothing (atomic with its revision, as every change set).
        let mut change = DataChange::new(3, 4);
        for (_, ids) in &after[1..] {
            for id in ids {
                change.delete_credential(id);
            }
        }
        let resolved = change.resolve(&store).unwrap();
        let mut stale = DataChange::new(2, 4);
        stale.delete_credential(&after[0].1[0]);
        assert!(matches!(
            stale.resolve(&store),
            Err(SiteDataError::Store(StoreError::RevisionMismatch { .. }))
        ));
        assert_eq!(load(&store).unwrap().1, 3);
        store.apply(&resolved).unwrap();
        assert_eq!(chunks(&store).len(), 1);
        assert_eq!(load(&store).unwrap().0.credentials.len(), CHUNK);
    }

    #[test]
    fn a_streamed_snapshot_chunks_its_credentials_and_refuses_a_repeated_id() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let data = scale_data((CHUNK + CHUNK / 2) as u64);
        let mut w = store.begin_snapshot(5).unwrap();
        stage(&mut w, SITE, SITE_KEY, &data.site).unwrap();
        for d in &data.doors {
            stage(&mut w, DOORS, d.id.as_str(), d).unwrap();
        }
        for u in &data.users {
            stage(&mut w, USERS, u.id.as_str(), u).unwrap();
        }
        for s in &data.schedules {
            stage(&mut w, SCHEDULES, s.id.as_str(), s).unwrap();
        }
        // Credentials in reverse order.
        for c in data.credentials.iter().rev() {
            assert!(stage(&mut w, CREDENTIALS, c.id.as_str(), c).unwrap());
        }
        assert!(!stage(&mut w, CREDENTIALS, "c7", &data.credentials[0]).unwrap());
        seal(&mut w).unwrap();
        let (view, revision) = staged_view(&w).unwrap();
        assert_eq!(
            (view.counts().credentials, revision),
            (CHUNK + CHUNK / 2, 5)
        );
        w.commit().unwrap();
        let mut expected = data.clone();
        expected.accesses.clear();
        expected.access_codes.clear();
        assert_eq!(load(&store).unwrap(), (by_key(expected), 5));
        assert_eq!(
            chunks(&store)
                .iter()
                .map(|(_, ids)| ids.len())
                .collect::<Vec<_>>(),
            [CHUNK, CHUNK / 2]
        );
    }

    #[test]
    fn a_store_with_one_record_per_credential_asks_for_a_snapshot() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = open(&dir);
        let data = fixture::data();
        let mut w = store.begin_snapshot(3).unwrap();
        w.put(SITE, SITE_KEY, &data.site).unwrap();
        w.put(CREDENTIALS, b"c1", &data.credentials[0]).unwrap();
        w.commit().unwrap();
        let e = load_view(&store).unwrap_err();
        assert!(e.needs_full_resync(), "{e}");
        assert!(load(&store).unwrap_err().needs_full_resync());
    }
}
