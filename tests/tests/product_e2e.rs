//! The product end to end: the real `hub run` with two libosdp 3.2.9
//! readers on PTY buses, a Mosquitto broker with mutual TLS and the
//! contract's per-hub ACL, the reference cloud (`hubctl`) and the
//! technician's web page, all at once.
//!
//! The hub starts with an empty store and no data-set file, so it asks the
//! cloud for a snapshot; `hubctl snapshot` sends one. Cards and a PIN at
//! the readers then open the doors (strike relay, green LED) or not (red
//! LED, no relay), and the cloud receives every decision with the hub's id,
//! its sequence number and the card masked, in order, and acknowledges it.
//! A one-time access code opens once and the cloud hears it is used up.
//! A revision removing the user is enforced at the reader. The web page,
//! behind its login, shows the decisions (masked) and the revision; once
//! the cloud has acknowledged everything the outbox is empty; SIGTERM stops
//! the hub cleanly and the cloud sees it go offline.
//!
//! Door "front": reader `front-in` (secure channel, card or PIN) on bus
//! "main". Door "back": reader `back-in` (no secure channel, cards) on bus
//! "aux". One libosdp PD per bus (see tests/peers/README.md). Needs `.venv`
//! with libosdp, mosquitto (scripts/test-env.sh).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::broker::TempDir;
use e2e::cloud::{events_of, Cloud};
use e2e::reader::{
    card, command_at_pd, is_led, is_release, ANN_CARD, ANN_PIN, DATA_SET, GREEN, OUT_OFF, RED,
};
use e2e::web::{hash_password, WebSession};
use e2e::{
    eventually, http_request, hub_daemon_ready, is, json, libosdp_pd, write_secret, JsonProc, Value,
};

const TENANT: &str = "acme";
const HUB: &str = "hub-1";
const SCBK: &str = "00112233445566778899aabbccddeeff";
const API_KEY: &str = "product-test-key";
const TECH: &str = "tech";
const TECH_PASSWORD: &str = "correct horse battery staple";
/// The courier's one-time access code at the front door (in `DATA_SET`).
const COURIER_CODE: &str = "8642";
/// A card nobody has.
const UNKNOWN_CARD: (u32, u32) = (99, 4242);
const SEC: Duration = Duration::from_secs(1);

fn write_config(dir: &Path, main_bus: &str, aux_bus: &str, cloud: &Cloud) -> std::path::PathBuf {
    write_secret(&dir.join("front.key"), SCBK);
    write_secret(&dir.join("api.key"), API_KEY);
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[site]
id = "e2e-site"
time_zone = "UTC"

[[bus]]
name = "main"
port = "{main_bus}"
offline_timeout_ms = 3000

[[bus]]
name = "aux"
port = "{aux_bus}"
offline_timeout_ms = 3000

[[reader]]
name = "front-in"
bus = "main"
address = 1
key_file = "front.key"
mode = "card_or_pin"

[[reader]]
name = "back-in"
bus = "aux"
address = 1
security = "clear"

[[door]]
id = "front"
entry_reader = "front-in"
strike = {{ reader = "front-in", output = 0 }}
pulse_s = 2

[[door]]
id = "back"
entry_reader = "back-in"
strike = {{ reader = "back-in", output = 0 }}
pulse_s = 2

[storage]
path = "store"

[api]
listen = "127.0.0.1:0"
api_key_file = "api.key"

[web]
listen = "127.0.0.1:0"
user = "{TECH}"
password_hash = "{hash}"
{mqtt}"#,
            hash = hash_password(TECH_PASSWORD),
            mqtt = cloud.mqtt_section(dir),
        ),
    )
    .unwrap();
    config
}

/// Sends `line` (a card) to the PD and waits for the hub's answer there: a strike
/// release and a green LED (`granted`), or a red LED and no release.
fn present(peer: &mut JsonProc, line: Value, granted: bool, what: &str) {
    let before = peer.seen.len();
    peer.send(line);
    if granted {
        command_at_pd(peer, &format!("{what}: strike released"), |c| {
            is_release(c, 0)
        });
        command_at_pd(peer, &format!("{what}: green LED"), |c| is_led(c, GREEN));
    } else {
        command_at_pd(peer, &format!("{what}: red LED"), |c| is_led(c, RED));
        let released: Vec<&Value> = peer.seen[before..]
            .iter()
            .filter(|v| is_release(&v["command"], 0))
            .collect();
        assert!(released.is_empty(), "{what}: released {released:#?}");
    }
}

/// Waits (up to 30 s) until the events the cloud received satisfy `done`;
/// returns them in arrival order.
fn cloud_events(tail: &mut JsonProc, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + 30 * SEC;
    loop {
        let events = events_of(&tail.seen);
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "the cloud did not receive {what}; it got {events:#?}"
        );
        tail.drain_for(Duration::from_millis(200));
    }
}

/// The first event the cloud received that matches `pred`.
fn find(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    events.iter().find(|e| pred(e))
}

fn decision(e: &Value, door: &str, granted: bool, credential: &str) -> bool {
    e["kind"] == "EVENT_KIND_ACCESS"
        && e["door"] == door
        && e["granted"] == granted
        && e["credential"] == credential
}

/// Text of `v` without its timestamps (whose digits could contain anything).
fn text_without_times(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !matches!(k.as_str(), "time" | "clock" | "at" | "since"));
    }
    v.to_string()
}

/// Neither the full card numbers nor the PIN in `text`.
fn assert_no_secrets(text: &str, whose: &str) {
    for secret in [ANN_CARD.1.to_string(), UNKNOWN_CARD.1.to_string()] {
        assert!(
            !text.contains(&secret),
            "{whose} shows card {secret}: {text}"
        );
    }
    for pin in [ANN_PIN, COURIER_CODE] {
        assert!(!text.contains(pin), "{whose} shows a PIN: {text}");
    }
}

#[test]
fn cards_at_real_readers_reach_the_cloud_and_the_web_page() {
    let _serial = e2e::exclusive();
    let tmp = TempDir::new("product");
    let (_broker, cloud) = Cloud::start(tmp.path(), TENANT, HUB);

    // The cloud listens before the hub starts, so it hears the hub ask for
    // data (it also asks again every 30 s).
    let mut tail = cloud.tail();
    tail.wait_for("hubctl tail connected", 20 * SEC, |l| l["sent"] == "ack");

    let (mut front, main_bus) =
        libosdp_pd(&[json!({"addr": 1, "scbk": SCBK, "secure": true})], false);
    let (mut back, aux_bus) = libosdp_pd(&[json!({"addr": 1})], false);
    let config = write_config(tmp.path(), &main_bus, &aux_bus, &cloud);
    let (hub, ready) = hub_daemon_ready(&config);
    let web = ready["web"]
        .as_str()
        .expect("the web page's address")
        .to_string();
    front.wait_for("secure channel with the hub", 20 * SEC, |v| {
        is(v, "event", json!("sc")) && is(v, "active", json!(true))
    });
    back.wait_for("the hub polling the back reader", 20 * SEC, |v| {
        is(v, "event", json!("online")) && is(v, "active", json!(true))
    });

    // No data: the hub asks for a snapshot.
    let resync = tail.wait_for("a resync request", 45 * SEC, |l| l["topic"] == "resync");
    assert_eq!(resync["hub_id"], HUB, "{resync}");
    assert_eq!(resync["reason"], "no_data", "{resync}");
    assert!(
        resync["have_revision"].is_null(),
        "no revision yet: {resync}"
    );

    // The web page: nothing without a login, a wrong password refused.
    let anonymous = http_request(&web, "GET", "/api/v1/status", &[], None).unwrap();
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let page = http_request(&web, "GET", "/", &[], None).unwrap();
    assert_eq!(page.status, 303, "{page:?}");
    assert_eq!(page.header("location"), Some("/login"));
    let refused = WebSession::login(&web, TECH, "not the password").unwrap_err();
    assert_eq!(refused.status, 303, "{refused:?}");
    assert_eq!(refused.header("location"), Some("/login?failed=1"));
    let session = WebSession::login(&web, TECH, TECH_PASSWORD).expect("the technician logs in");
    let page = session.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("<title>Hub status</title>"),
        "{}",
        page.body
    );
    let status = session.status();
    assert_eq!(status["sync"]["configured"], true, "{status}");
    assert!(
        status["sync"]["revision"].is_null(),
        "no data yet: {status}"
    );

    // The cloud sends the data set; the hub reports its revision.
    let site = tmp.path().join("site.json");
    std::fs::write(&site, DATA_SET).unwrap();
    let out = cloud.run(&[
        "snapshot",
        "--file",
        site.to_str().unwrap(),
        "--revision",
        "1",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    eventually("the web page showing revision 1", 20 * SEC, || {
        session.status()["sync"]["revision"] == 1
    });
    // The page's link state is the sync driver's own.
    let sync = &session.status()["sync"];
    assert_eq!(sync["connected"], true, "{sync}");
    assert!(sync["last_contact"].is_string(), "{sync}");

    // Ann's card at the front door: released, green. An unknown card: red,
    // no release. Ann's PIN at the keypad, once the strike locked again:
    // released. Ann's card at the back door (no secure channel): released.
    present(&mut front, card(ANN_CARD), true, "Ann's card at the front");
    present(&mut front, card(UNKNOWN_CARD), false, "an unknown card");
    command_at_pd(&mut front, "the strike locked again", |c| {
        c["cmd"] == "output" && c["control_code"] == json!(OUT_OFF)
    });
    front.send(json!({"do": "keys", "addr": 1, "keys": format!("{ANN_PIN}#")}));
    command_at_pd(&mut front, "Ann's PIN: strike released", |c| {
        is_release(c, 0)
    });
    present(&mut back, card(ANN_CARD), true, "Ann's card at the back");

    // The cloud receives each decision with the hub's id and sequence
    // number, masked, in order.
    let ann_front = |e: &Value| decision(e, "front", true, "****67");
    let unknown = |e: &Value| decision(e, "front", false, "****42");
    let pin = |e: &Value| {
        decision(e, "front", true, "") && e["message"].as_str().is_some_and(|m| m.contains("PIN"))
    };
    let ann_back = |e: &Value| decision(e, "back", true, "****67");
    let events = cloud_events(&mut tail, "the four decisions", |evs| {
        [
            &ann_front as &dyn Fn(&Value) -> bool,
            &unknown,
            &pin,
            &ann_back,
        ]
        .iter()
        .all(|pred| find(evs, pred).is_some())
    });
    let ann_front = find(&events, ann_front).unwrap();
    let unknown = find(&events, unknown).unwrap();
    let pin = find(&events, pin).unwrap();
    let ann_back = find(&events, ann_back).unwrap();
    for e in [ann_front, pin, ann_back] {
        assert_eq!(e["user"], "201", "{e}");
    }
    assert_eq!(ann_front["reader"], "front-in", "{ann_front}");
    assert_eq!(ann_back["reader"], "back-in", "{ann_back}");
    assert_eq!(unknown["user"], "", "{unknown}");
    let seq = |e: &Value| e["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {e}"));
    assert!(
        seq(ann_front) < seq(unknown) && seq(unknown) < seq(pin) && seq(pin) < seq(ann_back),
        "decisions out of order: {events:#?}"
    );
    // Every event is the hub's, and the first copy of each arrives in
    // sequence order (a resend may repeat some).
    let mut first = Vec::new();
    for e in &events {
        assert_eq!(e["hub_id"], HUB, "{e}");
        assert_no_secrets(&text_without_times(e), "an event at the cloud");
        if !first.contains(&seq(e)) {
            first.push(seq(e));
        }
    }
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "out of order: {first:?}"
    );

    // The courier's one-time code at the front keypad: released once, and
    // the cloud hears the code is used up (its status goes with the
    // CodeUsed event, without a status command). Typed again: refused.
    command_at_pd(&mut front, "the strike locked again after the PIN", |c| {
        c["cmd"] == "output" && c["control_code"] == json!(OUT_OFF)
    });
    present(
        &mut front,
        json!({"do": "keys", "addr": 1, "keys": format!("{COURIER_CODE}#")}),
        true,
        "the one-time code",
    );
    tail.wait_for("the code's status: removed, used", 30 * SEC, |l| {
        l["topic"] == "status"
            && l["statuses"].as_array().is_some_and(|all| {
                all.iter().any(|s| {
                    s["key"]["id"] == "code-courier"
                        && s["kind"] == "STATUS_KIND_CODE_REMOVED"
                        && s["reason"] == "used"
                })
            })
    });
    command_at_pd(&mut front, "the strike locked again after the code", |c| {
        c["cmd"] == "output" && c["control_code"] == json!(OUT_OFF)
    });
    present(
        &mut front,
        json!({"do": "keys", "addr": 1, "keys": format!("{COURIER_CODE}#")}),
        false,
        "the one-time code again",
    );

    // A revision removes Ann; her card is now refused at the reader.
    let out = cloud.revision(1, 2, &["user:201", "credential:c-ann-pin"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    eventually("the web page showing revision 2", 20 * SEC, || {
        session.status()["sync"]["revision"] == 2
    });
    present(
        &mut front,
        card(ANN_CARD),
        false,
        "Ann's card after her removal",
    );
    let events = cloud_events(&mut tail, "the denial after the removal", |evs| {
        evs.iter()
            .any(|e| decision(e, "front", false, "****67") && seq(e) > seq(ann_back))
    });
    let removed = find(&events, |e| decision(e, "front", false, "****67")).unwrap();
    assert_eq!(removed["hub_id"], HUB, "{removed}");

    // The web page shows the decisions, masked, and the revision.
    let status = session.status();
    assert_eq!(status["sync"]["revision"], 2, "{status}");
    let lines = status["events"].as_array().expect("recent events");
    let shown = |kind: &str, door: &str, text: &str| {
        lines.iter().any(|l| {
            l["kind"] == kind && l["door"] == door && l["message"].as_str().unwrap().contains(text)
        })
    };
    assert!(shown("granted", "front", "card ****67"), "{lines:#?}");
    assert!(shown("denied", "front", "card ****42"), "{lines:#?}");
    assert!(shown("granted", "back", "card ****67"), "{lines:#?}");
    for l in lines {
        assert_no_secrets(&text_without_times(l), "the web page");
    }

    // Everything the hub logged is acknowledged by the cloud: the outbox is
    // empty on the page and in the hub's health report.
    eventually("an empty outbox on the web page", 30 * SEC, || {
        session.status()["sync"]["outbox_depth"] == 0
    });
    let out = cloud.run(&["command", "status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    tail.wait_for("a health report: revision 2, outbox empty", 20 * SEC, |l| {
        l["topic"] == "health" && l["revision"] == 2 && l["outbox_depth"] == 0
    });

    // SIGTERM: a clean stop, and the cloud sees the hub go offline.
    let exit = hub
        .terminate(20 * SEC)
        .expect("the hub exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    tail.wait_for("presence offline", 10 * SEC, |l| {
        l["topic"] == "presence" && l["state"] == "PRESENCE_STATE_OFFLINE"
    });
}
