//! Access-log events: what the hub records about decisions, refusals, door
//! alarms and devices, in the store's durable outbox.
//!
//! A [`HubEvent`] is a plain serde record. [`HubEvent::encode`] turns it into
//! the bytes the outbox stores: a format byte ([`FORMAT`]) followed by the
//! record in [`postcard`]; [`HubEvent::decode`] reverses it. [`EventLog`]
//! appends events to the outbox of a shared [`Store`] and lists them;
//! [`router`] serves the list as `GET /api/v1/events?after=SEQ&limit=N`
//! (JSON, `X-API-Key`) for technicians and tests while the daemon runs
//! (sled allows one process per store, so nobody else can read it then).
//! Cloud sync reads the same outbox ([`EventLog::store`]) and acknowledges
//! what the cloud has taken, which deletes it from the outbox; the newest
//! [`RECENT`] events stay in memory for the web page
//! ([`EventLog::recent`]).
//!
//! No event holds a secret: card numbers are masked (`****4567`) before
//! they get here, PINs never do.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::access::Decision;
use crate::check_api::{self, reason_code, ApiKey};
use crate::store::{Appended, Store, StoreError};

/// The format byte in front of every encoded event.
pub const FORMAT: u8 = 1;

/// The path of the event list.
pub const EVENTS_PATH: &str = "/api/v1/events";

/// Most events one `GET /api/v1/events` returns.
pub const MAX_LIMIT: usize = 1000;

/// How many of the newest events [`EventLog::recent`] keeps.
pub const RECENT: usize = 50;

/// What kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An access decision (a reader, or the HTTP check recording an entry).
    Decision,
    /// A presentation that could not be decided (bad read, PIN timeout,
    /// wrong credential type for the reader).
    Refused,
    /// A door alarm started.
    AlarmRaised,
    /// A door alarm ended.
    AlarmCleared,
    /// A device came online, went offline, tamper, power, port lost.
    Device,
    /// A one-time access code was used up.
    CodeUsed,
    /// The hub started.
    HubStarted,
    /// The hub stopped cleanly.
    HubStopped,
    /// The store was damaged and replaced at start (an alarm).
    StoreRecovered,
    /// The data set was seeded from the configured file.
    DataSeeded,
    /// A technician's action on the web page (unlock, identify, check,
    /// present); the message names the technician.
    Action,
}

/// One access-log event. Secrets never reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubEvent {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What kind.
    pub kind: EventKind,
    /// The door, if the event is about one.
    pub door: Option<String>,
    /// The reader's name (from the config), if at a reader.
    pub reader: Option<String>,
    /// The card presented, masked (`****4567`).
    pub credential: Option<String>,
    /// How the person authenticated (`card`, `pin`, `card and PIN`, ...).
    pub method: Option<String>,
    /// The user, when identified.
    pub user: Option<String>,
    /// Decisions: granted or not.
    pub granted: Option<bool>,
    /// Decisions: the reason's machine code (`membership`, `unknown_card`,
    /// ...); alarms: `forced_open`, `held_open` (doors), `outbox_high`,
    /// `outbox_full` (the hub); devices: what happened; actions: the
    /// action's name.
    pub reason: Option<String>,
    /// A line for people (masked).
    pub message: String,
}

/// Why an event could not be encoded, decoded or stored.
#[derive(Debug, Error)]
pub enum EventError {
    /// postcard refused the event.
    #[error("cannot encode an event: {0}")]
    Encode(postcard::Error),
    /// The bytes are not an event of a known format.
    #[error("cannot decode an event (format byte {format:?})")]
    Decode {
        /// The format byte found, if any.
        format: Option<u8>,
    },
    /// The outbox refused or failed the append.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubEvent {
    /// An event of `kind` now, with only a message.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        HubEvent {
            at_ms: Timestamp::now().as_millisecond(),
            kind,
            door: None,
            reader: None,
            credential: None,
            method: None,
            user: None,
            granted: None,
            reason: None,
            message: message.into(),
        }
    }

    /// A decision at `reader` (`None`: the HTTP check) with the masked card.
    pub fn decision(decision: &Decision, reader: Option<&str>, credential: Option<String>) -> Self {
        HubEvent {
            at_ms: decision.at.as_millisecond(),
            kind: EventKind::Decision,
            door: Some(decision.door.as_str().to_owned()),
            reader: reader.map(str::to_owned),
            credential,
            method: Some(decision.method.to_string()),
            user: decision.user.as_ref().map(|u| u.id.as_str().to_owned()),
            granted: Some(decision.granted),
            reason: Some(reason_code(&decision.reason)),
            message: decision.to_string(),
        }
    }

    /// The bytes stored in the outbox.
    pub fn encode(&self) -> Result<Vec<u8>, EventError> {
        let mut out = vec![FORMAT];
        out.extend(postcard::to_stdvec(self).map_err(EventError::Encode)?);
        Ok(out)
    }

    /// An event from outbox bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|_| EventError::Decode {
                format: Some(FORMAT),
            }),
            other => Err(EventError::Decode {
                format: other.map(|(f, _)| *f),
            }),
        }
    }

    /// The event as JSON with its sequence number and an RFC 3339 time.
    pub fn to_json(&self, seq: u64) -> Value {
        let at = Timestamp::from_millisecond(self.at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        json!({
            "seq": seq,
            "at": at,
            "kind": self.kind,
            "door": self.door,
            "reader": self.reader,
            "credential": self.credential,
            "method": self.method,
            "user": self.user,
            "granted": self.granted,
            "reason": self.reason,
            "message": self.message,
        })
    }
}

/// The access log: events appended to the store's outbox. Cheap to clone
/// (clones share the store and the wake-up below).
#[derive(Clone, Debug)]
pub struct EventLog {
    store: Arc<Store>,
    /// Woken after each append (the cloud sync sends the new events).
    appended: Arc<std::sync::OnceLock<Arc<tokio::sync::Notify>>>,
    /// The newest events, oldest first: the cloud's acknowledgement deletes
    /// them from the outbox, but the web page still shows them.
    recent: Arc<Mutex<VecDeque<(u64, HubEvent)>>>,
}

impl EventLog {
    /// The log in `store`'s outbox; [`EventLog::recent`] starts with the
    /// newest events still in it (not yet acknowledged).
    pub fn new(store: Arc<Store>) -> Self {
        let outbox = store.outbox();
        let from = outbox.next_seq().saturating_sub(RECENT as u64);
        // Unreadable here is unreadable for the list too: start empty.
        let recent = outbox
            .peek(from, RECENT)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(seq, bytes)| Some((seq, HubEvent::decode(&bytes).ok()?)))
            .collect();
        EventLog {
            store,
            appended: Arc::default(),
            recent: Arc::new(Mutex::new(recent)),
        }
    }

    /// Wakes `notify` after every append from now on (set once; later
    /// calls are ignored). The cloud sync's outbox signal goes here.
    pub fn notify_on_append(&self, notify: Arc<tokio::sync::Notify>) {
        let _ = self.appended.set(notify);
    }

    /// The store (for sync: peek and acknowledge the outbox).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Appends one event; returns its sequence number and the outbox level.
    /// Durable within the store's group-commit interval.
    pub fn append(&self, event: &HubEvent) -> Result<Appended, EventError> {
        let appended = self.store.outbox().append(&event.encode()?)?;
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            // Appends from two tasks may get here out of order.
            let at = recent
                .iter()
                .rposition(|(seq, _)| *seq < appended.seq)
                .map_or(0, |i| i + 1);
            recent.insert(at, (appended.seq, event.clone()));
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        if let Some(notify) = self.appended.get() {
            notify.notify_one();
        }
        Ok(appended)
    }

    /// The newest [`RECENT`] events appended (or found in the outbox at
    /// start), oldest first, whether or not the cloud has taken them.
    pub fn recent(&self) -> Vec<(u64, HubEvent)> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().cloned().collect()
    }

    /// Up to `limit` events with a sequence number above `after`, in order.
    /// Events this build cannot decode are listed as `None`.
    pub fn list(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Option<HubEvent>)>, EventError> {
        let from = after.saturating_add(1);
        Ok(self
            .store
            .outbox()
            .peek(from, limit)?
            .into_iter()
            .map(|(seq, bytes)| (seq, HubEvent::decode(&bytes).ok()))
            .collect())
    }
}

#[derive(Clone)]
struct ListState {
    log: EventLog,
    api_key: ApiKey,
}

/// Query of `GET /api/v1/events`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListQuery {
    after: u64,
    limit: Option<usize>,
}

impl ListQuery {
    /// `after=N&limit=N`, both optional; anything else is an error.
    fn parse(query: Option<&str>) -> Result<Self, ()> {
        let mut q = ListQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("after", v)) => q.after = v.parse().map_err(|_| ())?,
                Some(("limit", v)) => q.limit = Some(v.parse().map_err(|_| ())?),
                _ => return Err(()),
            }
        }
        Ok(q)
    }
}

/// `GET /api/v1/events?after=SEQ&limit=N` on `log`, with `api_key`.
///
/// Answers `{"events": [{"seq", "at", "kind", "door", "reader",
/// "credential", "method", "user", "granted", "reason", "message"}, ...],
/// "next_after": SEQ}`: the events after `after` (default 0), at most
/// `limit` (default 100, at most [`MAX_LIMIT`]). Ask again with
/// `after=next_after` for more.
pub fn router(log: EventLog, api_key: ApiKey) -> Router {
    Router::new()
        .route(EVENTS_PATH, get(list))
        .with_state(ListState { log, api_key })
}

async fn list(State(state): State<ListState>, headers: HeaderMap, uri: Uri) -> Response {
    if !state.api_key.authorizes(&headers) {
        return check_api::unauthorized();
    }
    let Ok(query) = ListQuery::parse(uri.query()) else {
        let body = json!({"success": false, "message": "expected ?after=SEQ&limit=N (numbers)"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    match state.log.list(query.after, limit) {
        Ok(events) => {
            let next_after = events.last().map_or(query.after, |(seq, _)| *seq);
            let events: Vec<Value> = events
                .iter()
                .map(|(seq, e)| match e {
                    Some(e) => e.to_json(*seq),
                    None => json!({"seq": seq, "kind": "unreadable"}),
                })
                .collect();
            Json(json!({"events": events, "next_after": next_after})).into_response()
        }
        Err(e) => {
            tracing::warn!("listing events failed: {e}");
            let body = json!({"success": false, "message": "the event log cannot be read"});
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_outbox_encoding() {
        let mut e = HubEvent::new(EventKind::AlarmRaised, "door front forced open");
        e.door = Some("front".into());
        e.reason = Some("forced_open".into());
        let bytes = e.encode().unwrap();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(HubEvent::decode(&bytes).unwrap(), e);
        assert!(matches!(
            HubEvent::decode(&[9, 1, 2]),
            Err(EventError::Decode { format: Some(9) })
        ));
        assert!(HubEvent::decode(&[]).is_err());
        assert!(HubEvent::decode(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn list_queries() {
        assert_eq!(ListQuery::parse(None), Ok(ListQuery::default()));
        assert_eq!(
            ListQuery::parse(Some("after=7&limit=3")),
            Ok(ListQuery {
                after: 7,
                limit: Some(3)
            })
        );
        assert!(ListQuery::parse(Some("after=-1")).is_err());
        assert!(ListQuery::parse(Some("from=1")).is_err());
    }

    #[test]
    fn the_log_lists_what_was_appended_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(crate::store::StoreConfig::new(dir.path())).unwrap();
        let log = EventLog::new(Arc::new(store));
        let a = log
            .append(&HubEvent::new(EventKind::HubStarted, "a"))
            .unwrap();
        let b = log.append(&HubEvent::new(EventKind::Device, "b")).unwrap();
        assert!(b.seq > a.seq);
        let all = log.list(0, 10).unwrap();
        let messages: Vec<_> = all
            .iter()
            .map(|(_, e)| e.as_ref().unwrap().message.as_str())
            .collect();
        assert_eq!(messages, ["a", "b"]);
        assert_eq!(log.list(a.seq, 10).unwrap()[0].0, b.seq);
        assert!(log.list(b.seq, 10).unwrap().is_empty());
    }

    #[test]
    fn recent_events_outlive_the_acknowledgement_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(crate::store::StoreConfig::new(dir.path())).unwrap();
        let store = Arc::new(store);
        let log = EventLog::new(Arc::clone(&store));
        let mut seqs = Vec::new();
        for i in 0..RECENT + 5 {
            let e = HubEvent::new(EventKind::Device, format!("e{i}"));
            seqs.push(log.append(&e).unwrap().seq);
        }
        let acked = seqs[RECENT + 2];
        store.outbox().ack_through(acked).unwrap();
        // The newest RECENT, in order, acknowledged or not.
        let recent = log.recent();
        let shown: Vec<u64> = recent.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(shown, seqs[5..]);
        assert_eq!(recent[0].1.message, "e5");
        // Another log on the same store (a restart) starts with what the
        // outbox still holds.
        let shown: Vec<u64> = EventLog::new(store)
            .recent()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(shown, seqs[RECENT + 3..]);
    }
}
