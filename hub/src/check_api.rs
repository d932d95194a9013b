//! The door-access check, as JSON and as an HTTP endpoint.
//!
//! Mirrors the Hive door access API's `/access` call (see
//! `docs/access-check.md`): identify a user by `id`, `door_access_id` and/or
//! `barcode_id`, decide for one door with [`access::decide()`], and answer
//! `{"success", "message", "reason", "user"}`.
//!
//! - [`response_json`]: the answer for a [`Decision`], a pure function
//!   shared by `hub access check` and the endpoint.
//! - [`router`]: `POST /api/v1/access/check` (and `GET /api/v1/test`) on
//!   axum, authenticated by the `X-API-Key` header, compared in constant
//!   time. The endpoint stores nothing: a check with `check_only: false`
//!   hands its decision to the caller's [`EntrySink`], and the daemon
//!   records the entry in its outbox before the answer goes out; the
//!   answer then carries the entry's sequence number as `entry_seq`.
//!
//! The current [`View`] lives in an [`ArcSwap`] ([`SharedView`]): every
//! request loads it without a lock (a decision takes about a microsecond and
//! must never wait behind a writer), and sync swaps in a new view atomically
//! while requests in flight finish on the old one.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::access::{self, CheckQuery, Decision, Reason, Request, View};

/// Largest request body accepted, in bytes (a check is well under 1 KB).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Longest identifier accepted (the Hive API's limit for `door_id`,
/// `door_access_id` and `barcode_id`).
pub const MAX_ID_LEN: usize = 191;

/// The path of the check endpoint.
pub const CHECK_PATH: &str = "/api/v1/access/check";

/// The path of the authentication test endpoint (Hive `/test`).
pub const TEST_PATH: &str = "/api/v1/test";

/// The header carrying the API key. `X-DOOR-API-KEY` (the Hive name) is
/// accepted too.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The Hive API's name for the key header, also accepted.
pub const HIVE_API_KEY_HEADER: &str = "x-door-api-key";

/// The view the endpoint decides on; sync stores a new one to replace it.
pub type SharedView = Arc<ArcSwap<View>>;

/// The stable machine code of a reason: the snake_case name of its
/// variant (`membership`, `unknown_door`, `outside_schedule`, ...), the
/// same as the `rule` field of a serialized [`Reason`].
pub fn reason_code(reason: &Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("rule").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The answer for a decision, in the door access API's shape:
///
/// ```json
/// {"success": true, "message": "membership Standard Monthly", "reason": "membership",
///  "user": {"id": "201", "first_name": "Ann", "last_name": "Lee", "is_instructor": false,
///           "memberships": [{"id": 1234, "type_id": 1, "type_name": "Standard Monthly",
///                            "expires": 1893456000, "door_ids": ["front"]}]}}
/// ```
///
/// `user` is `null` when nobody was identified. `expires` is Unix seconds
/// (as in the Hive API) or `null`; `door_ids` are the doors of this hub the
/// membership opens (listed in its `door_ids`, or whose
/// `membership_type_ids` hold its type). No card number, PIN or
/// `door_access_id` appears; a card in a message is masked (`****4567`).
pub fn response_json(decision: &Decision, view: &View) -> Value {
    let user = decision.user.as_ref().map(|summary| {
        let memberships: Vec<Value> = summary
            .memberships
            .iter()
            .map(|m| {
                let door_ids: Vec<&str> = view
                    .membership_doors(summary.id.as_str(), m.id)
                    .into_iter()
                    .map(|d| d.as_str())
                    .collect();
                json!({
                    "id": m.id,
                    "type_id": m.type_id,
                    "type_name": &*m.type_name,
                    "expires": m.expires.map(|t| t.as_second()),
                    "door_ids": door_ids,
                })
            })
            .collect();
        json!({
            "id": summary.id.as_str(),
            "first_name": &*summary.first_name,
            "last_name": &*summary.last_name,
            "is_instructor": summary.is_instructor,
            "memberships": memberships,
        })
    });
    json!({
        "success": decision.granted,
        "message": decision.message(),
        "reason": reason_code(&decision.reason),
        "user": user,
    })
}

/// Where the endpoint hands the decisions of checks with `check_only:
/// false`, for the daemon to record the entry. The endpoint itself stores
/// nothing.
pub trait EntrySink: Send + Sync + 'static {
    /// Takes one decision to record and returns the sequence number of the
    /// stored entry when it was stored before returning (the daemon's
    /// outbox), `None` when it was only queued. The endpoint answers after
    /// this returns, with the number as `entry_seq`. An error makes the
    /// endpoint answer 503 (the entry could not be recorded), so the caller
    /// can retry.
    fn record(&self, decision: Decision) -> Result<Option<u64>, SinkError>;
}

/// An [`EntrySink`] refused a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SinkError {
    /// The sink is full (backpressure); try again later.
    #[error("entry log is full")]
    Full,
    /// The receiving side is gone (the daemon is shutting down).
    #[error("entry log is closed")]
    Closed,
    /// The entry log failed to store the entry (a storage error).
    #[error("entry log failed")]
    Failed,
}

/// A bounded tokio channel is a sink: a full channel answers 503 rather
/// than waiting.
impl EntrySink for mpsc::Sender<Decision> {
    fn record(&self, decision: Decision) -> Result<Option<u64>, SinkError> {
        self.try_send(decision).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })?;
        Ok(None)
    }
}

/// The configured API key. `Debug` never prints it; compared in constant
/// time; wiped from memory when dropped.
#[derive(Clone)]
pub struct ApiKey(Arc<Zeroizing<Vec<u8>>>);

/// An API key that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ApiKeyError {
    /// The key is empty (after trimming whitespace).
    #[error("the API key is empty")]
    Empty,
    /// The key holds characters an HTTP header cannot carry.
    #[error("the API key must be printable ASCII without spaces")]
    NotPrintable,
}

impl ApiKey {
    /// A key from its text; surrounding whitespace (a key file's newline)
    /// is dropped.
    pub fn new(key: &str) -> Result<Self, ApiKeyError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError::NotPrintable);
        }
        Ok(Self(Arc::new(Zeroizing::new(key.as_bytes().to_vec()))))
    }

    /// Whether `presented` is the key, in time independent of where they
    /// differ (only the length may show).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(presented))
    }

    /// Whether a request's `X-API-Key` (or `X-DOOR-API-KEY`) header holds
    /// the key.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        [API_KEY_HEADER, HIVE_API_KEY_HEADER]
            .iter()
            .filter_map(|name| headers.get(*name))
            .any(|value| self.matches(value.as_bytes()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

/// The endpoint's state: the view, the key, the sink and the clock.
#[derive(Clone)]
pub struct CheckState {
    view: SharedView,
    api_key: ApiKey,
    sink: Arc<dyn EntrySink>,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl fmt::Debug for CheckState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckState")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl CheckState {
    /// State deciding on `view` at the current time.
    pub fn new(view: SharedView, api_key: ApiKey, sink: Arc<dyn EntrySink>) -> Self {
        Self {
            view,
            api_key,
            sink,
            clock: Arc::new(Timestamp::now),
        }
    }

    /// The same state with another clock (tests, replays).
    pub fn with_clock(self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            ..self
        }
    }
}

/// The check endpoint's routes on `state`: `POST /api/v1/access/check` and
/// `GET /api/v1/test`, bodies limited to [`BODY_LIMIT`].
pub fn router(state: CheckState) -> Router {
    Router::new()
        .route(CHECK_PATH, post(check))
        .route(TEST_PATH, get(test))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// A check request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    door_id: Option<String>,
    #[serde(default)]
    id: Option<IdValue>,
    #[serde(default)]
    door_access_id: Option<String>,
    #[serde(default)]
    barcode_id: Option<String>,
    /// Hive: omitted or false records the entry.
    #[serde(default)]
    check_only: bool,
}

/// The Hive user id is numeric; text is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(u64),
}

/// A failed request: its status and a JSON body in the API's shape.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"success": false, "message": message.into(), "reason": Value::Null, "user": Value::Null});
    (status, Json(body)).into_response()
}

fn authorized(state: &CheckState, headers: &HeaderMap) -> bool {
    state.api_key.authorizes(headers)
}

/// The 401 answer for a missing or wrong key, in the API's shape.
pub fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "missing or wrong X-API-Key")
}

async fn test(State(state): State<CheckState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    Json(json!({"success": true, "message": ""})).into_response()
}

/// Non-empty, at most [`MAX_ID_LEN`] long; empty counts as absent (a
/// form's empty field). The error is the 400 message.
fn field<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(v) if v.len() > MAX_ID_LEN => {
            Err(format!("{name} is longer than {MAX_ID_LEN} characters"))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// The door and the query of a parsed body; the error is the 400 message.
fn query<'a>(
    body: &'a CheckBody,
    id: Option<&'a str>,
) -> Result<(&'a str, CheckQuery<'a>), String> {
    let door = field("door_id", body.door_id.as_deref())?.ok_or("door_id is required")?;
    let query = CheckQuery {
        id: field("id", id)?,
        door_access_id: field("door_access_id", body.door_access_id.as_deref())?,
        barcode_id: field("barcode_id", body.barcode_id.as_deref())?,
        check_only: body.check_only,
    };
    if query.id.is_none() && query.door_access_id.is_none() && query.barcode_id.is_none() {
        return Err("one of id, door_access_id or barcode_id is required".into());
    }
    Ok((door, query))
}

async fn check(
    State(state): State<CheckState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(rejection.status(), rejection.body_text());
        }
    };
    let body: CheckBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    let id_text = body.id.as_ref().map(|id| match id {
        IdValue::Text(text) => text.clone(),
        IdValue::Number(n) => n.to_string(),
    });
    let (door, query) = match query(&body, id_text.as_deref()) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let view = state.view.load();
    let decision = access::decide(&Request::check(door, query), &view, (state.clock)());
    let mut answer = response_json(&decision, &view);
    tracing::info!(
        door = %decision.door,
        granted = decision.granted,
        reason = %reason_code(&decision.reason),
        check_only = query.check_only,
        "access check"
    );
    if decision.records_entry {
        match state.sink.record(decision) {
            Ok(Some(seq)) => answer["entry_seq"] = json!(seq),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(door, "access check: entry not recorded: {e}");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{e}: entry not recorded, try again"),
                );
            }
        }
    }
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Direction, Pin};
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const KEY: &str = "s3cret-key";

    fn view() -> View {
        crate::dataset_file::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/site.json"),
        )
        .unwrap()
    }

    /// Wednesday 2026-06-03 10:00 in Berlin.
    fn now() -> Timestamp {
        "2026-06-03T08:00:00Z".parse().unwrap()
    }

    fn app(capacity: usize) -> (Router, mpsc::Receiver<Decision>) {
        let (tx, rx) = mpsc::channel(capacity);
        let state = CheckState::new(
            Arc::new(ArcSwap::from_pointee(view())),
            ApiKey::new(KEY).unwrap(),
            Arc::new(tx),
        )
        .with_clock(now);
        (router(state), rx)
    }

    async fn call(app: &Router, key: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
        let mut req = HttpRequest::post(CHECK_PATH).header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("X-API-Key", key);
        }
        let response = app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    #[test]
    fn response_shape_for_a_grant() {
        let view = view();
        let query = CheckQuery {
            id: Some("201"),
            check_only: true,
            ..Default::default()
        };
        let d = access::decide(&Request::check("front", query), &view, now());
        let json = response_json(&d, &view);
        assert_eq!(
            json,
            json!({
                "success": true,
                "message": "membership Standard Monthly",
                "reason": "membership",
                "user": {
                    "id": "201",
                    "first_name": "Ann",
                    "last_name": "Lee",
                    "is_instructor": false,
                    "memberships": [{
                        "id": 1234,
                        "type_id": 1,
                        "type_name": "Standard Monthly",
                        "expires": 1_893_456_000,
                        "door_ids": ["front"],
                    }],
                },
            })
        );
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["success", "message", "reason", "user"]);
    }

    #[test]
    fn response_shape_for_denials() {
        let view = view();
        // Identified but not allowed: the user is there.
        let query = CheckQuery {
            barcode_id: Some("ann-barcode"),
            check_only: true,
            ..Default::default()
        };
        let d = access::decide(&Request::check("back", query), &view, now());
        let json = response_json(&d, &view);
        assert_eq!(json["success"], false);
        assert_eq!(json["reason"], "no_access");
        assert_eq!(json["message"], "no access to Back Door");
        assert_eq!(json["user"]["id"], "201");

        // Not identified: user is null.
        let query = CheckQuery {
            id: Some("999"),
            check_only: true,
            ..Default::default()
        };
        let d = access::decide(&Request::check("front", query), &view, now());
        let json = response_json(&d, &view);
        assert_eq!(json["reason"], "unknown_user");
        assert!(json["user"].is_null());

        // A card in a message is masked; a PIN never appears.
        let card = crate::access::CardNumber::new(Some(7), 99_123_456);
        let pin = Pin::parse("8642").unwrap();
        let d = access::decide(
            &Request::card_and_pin("back", Direction::In, card, pin),
            &view,
            now(),
        );
        let text = response_json(&d, &view).to_string();
        assert!(text.contains("****3456"), "{text}");
        assert!(
            !text.contains("99123456") && !text.contains("8642"),
            "{text}"
        );
    }

    #[test]
    fn reason_codes_are_snake_case_variant_names() {
        assert_eq!(reason_code(&Reason::UnknownDoor), "unknown_door");
        assert_eq!(reason_code(&Reason::Instructor), "instructor");
        assert_eq!(
            reason_code(&Reason::OutsideSchedule {
                schedule: "x".into()
            }),
            "outside_schedule"
        );
    }

    #[test]
    fn api_key_is_never_printed_and_compares_exactly() {
        let key = ApiKey::new(" abc\n").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(****)");
        assert!(key.matches(b"abc"));
        assert!(!key.matches(b"abd") && !key.matches(b"ab") && !key.matches(b"abcd"));
        assert_eq!(ApiKey::new(" \n").unwrap_err(), ApiKeyError::Empty);
        assert_eq!(ApiKey::new("a b").unwrap_err(), ApiKeyError::NotPrintable);
    }

    #[tokio::test]
    async fn grant_and_denial_answer_200() {
        let (app, _rx) = app(8);
        let (status, json) = call(
            &app,
            Some(KEY),
            r#"{"door_id": "front", "id": 201, "check_only": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["success"], true);
        assert_eq!(json["user"]["first_name"], "Ann");

        let (status, json) = call(
            &app,
            Some(KEY),
            r#"{"door_id": "back", "id": "201", "check_only": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["success"], false);
        assert_eq!(json["message"], "no access to Back Door");
        assert_eq!(json["reason"], "no_access");

        // Unknown door: a denied answer, as the Hive API does.
        let (status, json) = call(
            &app,
            Some(KEY),
            r#"{"door_id": "garage", "id": "201", "check_only": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["reason"], "unknown_door");
        assert_eq!(json["success"], false);
    }

    #[tokio::test]
    async fn missing_or_wrong_key_is_401() {
        let (app, mut rx) = app(8);
        let body = r#"{"door_id": "front", "id": "201"}"#;
        for key in [None, Some("wrong"), Some(""), Some("s3cret-key2")] {
            let (status, json) = call(&app, key, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
            assert_eq!(json["success"], false);
            assert!(!json.to_string().contains(KEY));
        }
        assert!(rx.try_recv().is_err(), "nothing recorded");

        // The Hive header name works too.
        let req = HttpRequest::get(TEST_PATH)
            .header("X-DOOR-API-KEY", KEY)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bad_requests_are_400() {
        let (app, _rx) = app(8);
        for (body, needle) in [
            (r#"{"door_id": "front", "id": "#, "invalid request body"),
            ("not json", "invalid request body"),
            (
                r#"{"door_id": "front", "id": "201", "pin": "1"}"#,
                "unknown field",
            ),
            (
                r#"{"door_id": "front", "check_only": "yes"}"#,
                "invalid request body",
            ),
            (r#"{"id": "201"}"#, "door_id is required"),
            (r#"{"door_id": "front"}"#, "one of id"),
            (r#"{"door_id": "front", "barcode_id": ""}"#, "one of id"),
        ] {
            let (status, json) = call(&app, Some(KEY), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let message = json["message"].as_str().unwrap();
            assert!(message.contains(needle), "{body}: {message}");
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        let body = json!({"door_id": "front", "barcode_id": long}).to_string();
        let (status, _) = call(&app, Some(KEY), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn only_recorded_checks_reach_the_sink() {
        let (app, mut rx) = app(8);
        let (status, _) = call(
            &app,
            Some(KEY),
            r#"{"door_id": "front", "id": "201", "check_only": true}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(rx.try_recv().is_err(), "check_only: nothing recorded");

        let (status, json) = call(
            &app,
            Some(KEY),
            r#"{"door_id": "front", "id": "201", "check_only": false}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["success"], true);
        let recorded = rx.try_recv().unwrap();
        assert!(recorded.granted && recorded.records_entry);
        assert_eq!(recorded.door.as_str(), "front");

        // Omitted check_only records too (Hive semantics), denials included.
        let (_, json) = call(&app, Some(KEY), r#"{"door_id": "back", "id": "201"}"#).await;
        assert_eq!(json["success"], false);
        assert!(!rx.try_recv().unwrap().granted);
    }

    #[tokio::test]
    async fn a_full_sink_is_503() {
        let (app, _rx) = app(1);
        let body = r#"{"door_id": "front", "id": "201"}"#;
        assert_eq!(call(&app, Some(KEY), body).await.0, StatusCode::OK);
        let (status, json) = call(&app, Some(KEY), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["success"], false);
    }

    /// A sink that stores entries and numbers them, like the daemon's.
    struct Numbered(std::sync::Mutex<Vec<Decision>>);

    impl EntrySink for Numbered {
        fn record(&self, decision: Decision) -> Result<Option<u64>, SinkError> {
            let mut stored = self.0.lock().unwrap();
            stored.push(decision);
            Ok(Some(100 + stored.len() as u64))
        }
    }

    #[tokio::test]
    async fn a_stored_entry_is_answered_with_its_sequence_number() {
        let sink = Arc::new(Numbered(std::sync::Mutex::new(Vec::new())));
        let shared: SharedView = Arc::new(ArcSwap::from_pointee(view()));
        let app = router(
            CheckState::new(shared, ApiKey::new(KEY).unwrap(), sink.clone()).with_clock(now),
        );
        let (_, json) = call(&app, Some(KEY), r#"{"door_id": "front", "id": "201"}"#).await;
        assert_eq!(json["entry_seq"], 101);
        let (_, json) = call(&app, Some(KEY), r#"{"door_id": "back", "id": "201"}"#).await;
        assert_eq!(json["entry_seq"], 102);
        // A check only is not stored and has no number.
        let body = r#"{"door_id": "front", "id": "201", "check_only": true}"#;
        assert!(call(&app, Some(KEY), body)
            .await
            .1
            .get("entry_seq")
            .is_none());
        assert_eq!(sink.0.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn oversized_body_is_rejected() {
        let (app, mut rx) = app(8);
        let padding = "x".repeat(BODY_LIMIT);
        let body = format!(r#"{{"door_id": "front", "id": "201", "barcode_id": "{padding}"}}"#);
        let (status, json) = call(&app, Some(KEY), body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["success"], false);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_swapped_view_is_used_at_once() {
        let (tx, _rx) = mpsc::channel(8);
        let shared: SharedView = Arc::new(ArcSwap::from_pointee(view()));
        let app = router(
            CheckState::new(shared.clone(), ApiKey::new(KEY).unwrap(), Arc::new(tx))
                .with_clock(now),
        );
        let body = r#"{"door_id": "front", "id": "201", "check_only": true}"#;
        assert_eq!(call(&app, Some(KEY), body).await.1["success"], true);
        let mut data = shared.load().data().clone();
        data.site.lockdown = true;
        shared.store(Arc::new(View::build(data).unwrap()));
        let (_, json) = call(&app, Some(KEY), body).await;
        assert_eq!(json["reason"], "site_lockdown");
    }
}
