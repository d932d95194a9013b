//! Router tests: login, sessions, status, actions and metrics over HTTP
//! requests (tower's `oneshot`), with a fake daemon answering actions.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::status::{DoorStatus, HubStatus, StatusPublisher};

/// Hashing is slow on purpose: hash the test password once.
fn credentials() -> Credentials {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| auth::hash_password("s3cret pass").unwrap());
    Credentials::new("tech", hash).unwrap()
}

struct Fixture {
    app: Router,
    publisher: StatusPublisher,
    actions: mpsc::Receiver<ActionRequest>,
}

fn fixture() -> Fixture {
    let mut status = HubStatus::default();
    status.system.version = "9.9.9".into();
    status.doors.push(DoorStatus {
        id: "front".into(),
        locked: true,
        mode: "normal".into(),
        ..DoorStatus::default()
    });
    let (publisher, watch) = StatusPublisher::new(status);
    let (tx, actions) = mpsc::channel(4);
    let app = router(WebState::new(credentials(), watch, tx));
    Fixture {
        app,
        publisher,
        actions,
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn form_login(user: &str, password: &str) -> Request<Body> {
    Request::post("/login")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("user={user}&password={password}")))
        .unwrap()
}

async fn log_in(app: &Router) -> String {
    let (status, headers, _) = send(app, form_login("tech", "s3cret+pass")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/");
    let cookie = headers[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

fn get_with(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn post_json(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn pages_and_data_need_a_login() {
    let f = fixture();
    let (status, headers, _) = send(&f.app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/login");
    let (status, _, body) = send(&f.app, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<form") && body.contains("password"));
    for path in ["/api/v1/status", "/api/v1/status/stream"] {
        let (status, _, _) = send(&f.app, get_with(path, "hub_session=forged")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _, _) = send(
        &f.app,
        post_json("/api/v1/actions/unlock", "", r#"{"door":"front"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_password_sets_no_cookie_and_repeated_failures_pause() {
    let f = fixture();
    let (status, headers, _) = send(&f.app, form_login("tech", "guess")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/login?failed=1");
    assert!(headers.get(SET_COOKIE).is_none());
    for _ in 1..auth::MAX_FAILURES {
        send(&f.app, form_login("tech", "guess")).await;
    }
    // Now even the right password is not checked for a while.
    let (_, headers, _) = send(&f.app, form_login("tech", "s3cret+pass")).await;
    assert_eq!(headers[LOCATION], "/login?failed=paused");
    assert!(headers.get(SET_COOKIE).is_none());
    assert!(headers.get(RETRY_AFTER).is_some());
    // A malformed form changes nothing either.
    let bad = Request::post("/login")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("user=tech"))
        .unwrap();
    let (_, headers, _) = send(&f.app, bad).await;
    assert_eq!(headers[LOCATION], "/login?failed=form");
}

#[tokio::test]
async fn logged_in_technician_sees_live_status_then_logs_out() {
    let f = fixture();
    let cookie = log_in(&f.app).await;
    let (status, _, body) = send(&f.app, get_with("/", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("EventSource"), "the page streams updates");

    let (status, _, body) = send(&f.app, get_with("/api/v1/status", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["system"]["version"], "9.9.9");
    assert_eq!(json["doors"][0]["id"], "front");

    // The stream's first event is the current snapshot; a publish sends
    // the next one.
    let response = f
        .app
        .clone()
        .oneshot(get_with("/api/v1/status/stream", &cookie))
        .await
        .unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("event: status\ndata: {"), "{first}");
    let mut next = HubStatus::default();
    next.sync.outbox_depth = 1234;
    f.publisher.publish(next);
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&second).contains(r#""outbox_depth":1234"#));

    let logout = Request::post("/logout")
        .header(COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&f.app, logout).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let (status, _, _) = send(&f.app, get_with("/api/v1/status", &cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn actions_reach_the_daemon_with_the_technician_name() {
    let mut f = fixture();
    let cookie = log_in(&f.app).await;
    let app = f.app.clone();
    let call = tokio::spawn(async move {
        send(
            &app,
            post_json("/api/v1/actions/unlock", &cookie, r#"{"door":"front"}"#),
        )
        .await
    });
    let request = f.actions.recv().await.unwrap();
    assert_eq!(
        request.action,
        Action::Unlock {
            door: "front".into()
        }
    );
    assert_eq!(request.by, "tech");
    request
        .reply
        .send(ActionOutcome {
            ok: true,
            message: "front unlocked for 5 s".into(),
        })
        .unwrap();
    let (status, _, body) = call.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"ok": true, "message": "front unlocked for 5 s"})
    );
}

#[tokio::test]
async fn bad_actions_are_refused_and_never_reach_the_daemon() {
    let mut f = fixture();
    let cookie = log_in(&f.app).await;
    let cases = [
        ("/api/v1/actions/unlock", "application/json", "{not json"),
        ("/api/v1/actions/unlock", "application/json", "[1,2]"),
        (
            "/api/v1/actions/unlock",
            "application/json",
            r#"{"dor":"front"}"#,
        ),
        (
            "/api/v1/actions/unlock",
            "application/json",
            r#"{"door":"front","extra":1}"#,
        ),
        (
            "/api/v1/actions/self-destruct",
            "application/json",
            r#"{"door":"front"}"#,
        ),
        // A cross-site form cannot send JSON: form bodies are refused.
        (
            "/api/v1/actions/unlock",
            "application/x-www-form-urlencoded",
            "door=front",
        ),
    ];
    for (path, content_type, body) in cases {
        let request = Request::post(path)
            .header(COOKIE, &cookie)
            .header(CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let (status, _, text) = send(&f.app, request).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {text}");
        assert!(
            text.contains("\"ok\":false") || status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{text}"
        );
    }
    let huge = format!(r#"{{"door":"{}"}}"#, "x".repeat(BODY_LIMIT));
    let (status, _, _) = send(&f.app, post_json("/api/v1/actions/unlock", &cookie, &huge)).await;
    assert!(status.is_client_error());
    assert!(f.actions.try_recv().is_err(), "nothing reached the daemon");
}

#[tokio::test]
async fn an_unanswered_action_reports_that_the_hub_dropped_it() {
    let mut f = fixture();
    let cookie = log_in(&f.app).await;
    let app = f.app.clone();
    let call = tokio::spawn(async move {
        send(
            &app,
            post_json(
                "/api/v1/actions/identify",
                &cookie,
                r#"{"reader":"front-in"}"#,
            ),
        )
        .await
    });
    drop(f.actions.recv().await.unwrap());
    let (status, _, body) = call.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("dropped"));
}

#[tokio::test]
async fn metrics_need_no_login_and_follow_the_status() {
    let f = fixture();
    let (status, headers, body) = send(
        &f.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(
        body.contains(r#"hub_door_locked{door="front"} 1"#),
        "{body}"
    );
    let mut next = HubStatus::default();
    next.counters.granted = 3;
    f.publisher.publish(next);
    let (_, _, body) = send(
        &f.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        body.contains(r#"hub_decisions_total{result="granted"} 3"#),
        "{body}"
    );
    assert!(!body.contains("front"), "the new snapshot has no doors");
}
