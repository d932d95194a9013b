//! The technician's web page (axum): the hub's live status behind a login,
//! a few actions, and Prometheus `/metrics`.
//!
//! Drive it with [`router`]: give it a [`WebState`] holding the login
//! ([`auth::Credentials`]), the daemon's [`StatusWatch`] and the sending end
//! of an action channel. The daemon receives each [`ActionRequest`], carries
//! it out (it owns the doors and the buses), logs it as an event and answers
//! on the request's reply channel.
//!
//! | route | login | what |
//! |---|---|---|
//! | `GET /` | yes (else 303 to `/login`) | the status page; it updates itself from the stream below |
//! | `GET /login`, `POST /login` | no | the login form; success sets the `hub_session` cookie |
//! | `POST /logout` | yes | ends the session |
//! | `GET /api/v1/status` | yes | the newest [`crate::status::HubStatus`] as JSON |
//! | `GET /api/v1/status/stream` | yes | server-sent events: a `status` event with that JSON at each change |
//! | `POST /api/v1/actions/{unlock,identify,check,present}` | yes | an [`Action`] as JSON |
//! | `GET /metrics` | no | Prometheus (OpenMetrics) text |
//!
//! The session cookie is `HttpOnly` and `SameSite=Strict`, and actions take
//! only `application/json` bodies, which a cross-site form cannot send:
//! together they keep other sites from acting with a technician's login.

pub mod auth;
pub mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt;
use zeroize::Zeroizing;

use crate::status::StatusWatch;
use auth::{Credentials, Sessions};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hub_session";

/// Largest request body accepted (logins and actions are tiny).
pub const BODY_LIMIT: usize = 8 * 1024;

/// How long an action may take before the page is told it timed out.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(5);

const STATUS_PAGE: &str = include_str!("page.html");
const LOGIN_PAGE: &str = include_str!("login.html");

/// A technician action from the web page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Release a door's strike for its normal pulse time.
    Unlock {
        /// The door's id.
        door: String,
    },
    /// Blink and beep a reader so the technician finds it.
    Identify {
        /// The reader's name.
        reader: String,
    },
    /// Ask the decision engine about a credential at a door, without
    /// opening anything (the door-access API's `check_only`).
    Check {
        /// The door's id.
        door: String,
        /// User id.
        #[serde(default)]
        id: Option<String>,
        /// Card or fob value.
        #[serde(default)]
        door_access_id: Option<String>,
        /// Barcode.
        #[serde(default)]
        barcode_id: Option<String>,
    },
    /// Demo only: present a virtual card or type a PIN at a reader.
    Present {
        /// The reader's name.
        reader: String,
        /// Card number (decimal), for a card.
        #[serde(default)]
        card: Option<String>,
        /// Keypad digits, for a PIN (`#` is added).
        #[serde(default)]
        pin: Option<PinDigits>,
    },
    /// Cloud only: release a door's strike for `pulse` (`None`: its
    /// normal pulse time).
    #[serde(skip)]
    CloudUnlock {
        /// The door's id.
        door: String,
        /// How long.
        pulse: Option<Duration>,
    },
    /// Cloud only: lockdown of one door, or of the site when `door` is
    /// `None`, on or off.
    #[serde(skip)]
    Lockdown {
        /// The door's id; `None`: the whole site.
        door: Option<String>,
        /// Start (`true`) or end the lockdown.
        on: bool,
    },
    /// Cloud only: a door's operating mode.
    #[serde(skip)]
    DoorMode {
        /// The door's id.
        door: String,
        /// The mode.
        mode: DoorModeCommand,
    },
    /// Cloud only: drive a reader's LED, buzzer and display.
    #[serde(skip)]
    ReaderOutput(ReaderOutput),
}

/// The door modes a cloud command sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorModeCommand {
    /// Back to the schedule: locked, opens for granted credentials (and no
    /// door lockdown set by a command).
    Normal,
    /// Held unlocked until the next door mode command (a lockdown wins).
    Unlocked,
    /// Locked for everybody: a door lockdown.
    Locked,
}

/// What to show on a reader: LED colour, beeps, text, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOutput {
    /// The reader's name.
    pub reader: String,
    /// LED colour; `None`: unchanged.
    pub led: Option<osdp::command::LedColor>,
    /// Buzzer beeps, 0 to 10.
    pub beeps: u8,
    /// Text for the display (at most 32 characters); `None`: unchanged.
    pub text: Option<String>,
    /// How long LED and text stay.
    pub duration: Duration,
}

/// PIN digits typed on the demo page: zeroized on drop, never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct PinDigits(pub Zeroizing<String>);

impl std::fmt::Debug for PinDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinDigits(****)")
    }
}

impl Action {
    /// The action's name, for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Unlock { .. } => "unlock",
            Action::Identify { .. } => "identify",
            Action::Check { .. } => "check",
            Action::Present { .. } => "present",
            Action::CloudUnlock { .. } => "unlock",
            Action::Lockdown { .. } => "lockdown",
            Action::DoorMode { .. } => "door_mode",
            Action::ReaderOutput(_) => "reader_output",
        }
    }
}

/// The daemon's answer to an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// The action was carried out (for `check`: the credential would be
    /// granted).
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
}

/// One action for the daemon, with where to answer.
#[derive(Debug)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
    /// The logged-in technician who asked.
    pub by: String,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<ActionOutcome>,
}

/// What the web page's handlers share.
#[derive(Clone)]
pub struct WebState {
    credentials: Credentials,
    sessions: Arc<Sessions>,
    status: StatusWatch,
    actions: mpsc::Sender<ActionRequest>,
}

impl WebState {
    /// The state for [`router`].
    pub fn new(
        credentials: Credentials,
        status: StatusWatch,
        actions: mpsc::Sender<ActionRequest>,
    ) -> Self {
        Self {
            credentials,
            sessions: Arc::new(Sessions::default()),
            status,
            actions,
        }
    }
}

/// The web page's routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/status/stream", get(status_stream))
        .route("/api/v1/actions/{action}", post(action))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then_some(value)
        })
}

fn logged_in(state: &WebState, headers: &HeaderMap) -> Option<String> {
    state.sessions.user(session_token(headers)?, Instant::now())
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "ok": false, "message": message }))).into_response()
}

fn unauthorized() -> Response {
    json_error(StatusCode::UNAUTHORIZED, "log in first")
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

async fn status_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_none() {
        return redirect("/login");
    }
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(STATUS_PAGE),
    )
        .into_response()
}

async fn login_page() -> Html<&'static str> {
    Html(LOGIN_PAGE)
}

/// The login form's fields.
#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: Zeroizing<String>,
}

async fn login(
    State(state): State<WebState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return redirect("/login?failed=form");
    };
    let now = Instant::now();
    if let Err(paused) = state.sessions.may_attempt(now) {
        let mut response = redirect("/login?failed=paused");
        if let Ok(value) = HeaderValue::from_str(&paused.retry_after_s.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    let credentials = state.credentials.clone();
    let user = form.user.clone();
    let verified =
        tokio::task::spawn_blocking(move || credentials.verify(&form.user, &form.password))
            .await
            .unwrap_or(false);
    if !verified {
        state.sessions.failed(Instant::now());
        tracing::warn!(user = %user, "web login failed");
        return redirect("/login?failed=1");
    }
    let Ok(token) = state.sessions.open(&user, Instant::now()) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session",
        );
    };
    tracing::info!(user = %user, "web login");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        auth::SESSION_TTL.as_secs()
    );
    let mut response = redirect("/");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

async fn logout(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        state.sessions.close(token);
    }
    let mut response = redirect("/login");
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("hub_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

async fn status_json(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_none() {
        return unauthorized();
    }
    let status = state.status.borrow().clone();
    Json(status).into_response()
}

async fn status_stream(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_none() {
        return unauthorized();
    }
    let stream = WatchStream::new(state.status.clone()).map(|status| {
        Ok::<_, Infallible>(
            SseEvent::default()
                .event("status")
                .json_data(&*status)
                .unwrap_or_else(|_| {
                    SseEvent::default()
                        .event("error")
                        .data("status not encodable")
                }),
        )
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn action(
    State(state): State<WebState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let Some(user) = logged_in(&state, &headers) else {
        return unauthorized();
    };
    let Ok(Json(mut body)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object (Content-Type: application/json)",
        );
    };
    // The path names the action; the body holds its fields.
    let Some(fields) = body.as_object_mut() else {
        return json_error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    fields.insert("action".into(), serde_json::Value::String(name));
    let action: Action = match serde_json::from_value(body) {
        Ok(action) => action,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("bad action: {e}")),
    };
    let (reply, answer) = oneshot::channel();
    let request = ActionRequest {
        action,
        by: user,
        reply,
    };
    if state.actions.try_send(request).is_err() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is busy; try again",
        );
    }
    match tokio::time::timeout(ACTION_TIMEOUT, answer).await {
        Ok(Ok(outcome)) => Json(outcome).into_response(),
        Ok(Err(_)) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub dropped the action",
        ),
        Err(_) => json_error(StatusCode::GATEWAY_TIMEOUT, "the action timed out"),
    }
}

async fn metrics_text(State(state): State<WebState>) -> Response {
    let status = state.status.borrow().clone();
    match metrics::render(&status) {
        Ok(text) => ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "metrics not encodable"),
    }
}

#[cfg(test)]
mod tests;
