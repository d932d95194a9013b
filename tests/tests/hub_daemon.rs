//! The real hub daemon (`hub run --config`) against a real libosdp 3.2.9
//! reader on a PTY bus: cards and PINs open the door (strike relay, green
//! LED) or not (red LED, no relay), door position inputs raise forced-open
//! and held-open alarms, and every one of them is in the access log the hub
//! lists at `GET /api/v1/events`. A one-time access code opens the door
//! once, also across a restart.
//!
//! One PD per bus (a single libosdp Python PD does not stall; see
//! tests/peers/README.md). Needs `.venv` with libosdp (scripts/test-env.sh).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use e2e::reader::{command_at_pd, h10301, is_cmd, DATA_SET, GREEN, OUT_OFF, OUT_ON, RED};
use e2e::{hub_daemon, hub_events, is, json, libosdp_pd, write_secret, JsonProc, TempDir, Value};

const SCBK: &str = "00112233445566778899aabbccddeeff";
const API_KEY: &str = "daemon-test-key";
const SEC: Duration = Duration::from_secs(1);

struct Setup {
    peer: JsonProc,
    hub: JsonProc,
    api: String,
    _dir: TempDir,
}

/// A libosdp PD at address 1 (4 inputs, 2 outputs, secure channel) and the
/// hub daemon with one door on it: strike on output 0, position switch on
/// input 0, exit button on input 1.
fn setup(held_open_s: u32) -> Setup {
    setup_with(held_open_s, "")
}

/// [`setup`] with more config (`extra` TOML) appended.
fn setup_with(held_open_s: u32, extra: &str) -> Setup {
    let (mut peer, bus) = libosdp_pd(&[json!({"addr": 1, "scbk": SCBK, "secure": true})], false);
    let dir = TempDir::new("hub-daemon");
    let p = |name: &str| -> PathBuf { dir.path().join(name) };
    std::fs::write(p("site.json"), DATA_SET).unwrap();
    write_secret(&p("front.key"), SCBK);
    write_secret(&p("api.key"), API_KEY);
    let config = format!(
        r#"
[site]
id = "e2e-site"
time_zone = "UTC"
dataset_file = "site.json"

[[bus]]
name = "main"
port = "{bus}"
offline_timeout_ms = 3000

[[reader]]
name = "front-in"
bus = "main"
address = 1
key_file = "front.key"
mode = "card_or_pin"

[[door]]
id = "front"
entry_reader = "front-in"
strike = {{ reader = "front-in", output = 0 }}
position = {{ reader = "front-in", input = 0 }}
rex = {{ reader = "front-in", input = 1 }}
pulse_s = 3
held_open_s = {held_open_s}

[storage]
path = "store"

[api]
listen = "127.0.0.1:0"
api_key_file = "api.key"
{extra}
"#
    );
    std::fs::write(p("hub.toml"), config).unwrap();
    let (hub, api) = hub_daemon(&p("hub.toml"));
    peer.wait_for("secure channel with the hub", 20 * SEC, |v| {
        is(v, "pd", json!(1)) && is(v, "event", json!("sc")) && is(v, "active", json!(true))
    });
    Setup {
        peer,
        hub,
        api,
        _dir: dir,
    }
}

/// Waits until the hub lists an event satisfying `pred`.
fn wait_event(api: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    e2e::wait_event(api, API_KEY, what, pred)
}

#[test]
fn cards_and_pins_at_a_real_reader_drive_strike_and_leds_and_are_logged() {
    let _serial = e2e::exclusive();
    let Setup {
        mut peer,
        hub: _hub,
        api,
        _dir,
    } = setup(30);

    // Ann's card: the strike relay is released and the LED turns green.
    peer.send(json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(12, 34567)}));
    let out = command_at_pd(&mut peer, "strike release", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_ON)
    });
    assert_eq!(out["output_no"], json!(0));
    command_at_pd(&mut peer, "green LED", |c| {
        is_cmd(c, "led") && c["on_color"] == json!(GREEN)
    });
    let granted = wait_event(&api, "granted card decision", |e| {
        is(e, "kind", json!("decision")) && is(e, "method", json!("card"))
    });
    assert_eq!(granted["granted"], json!(true), "{granted}");
    assert_eq!(granted["door"], json!("front"));
    assert_eq!(granted["reader"], json!("front-in"));
    assert_eq!(granted["user"], json!("201"));
    assert_eq!(granted["reason"], json!("membership"));
    let shown = granted["credential"].as_str().unwrap();
    assert!(
        shown.starts_with("****") && !shown.contains("34567"),
        "{shown}"
    );

    // An unknown card: red LED, and no release reaches the PD before it.
    let before = peer.seen.len();
    peer.send(json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(99, 4242)}));
    command_at_pd(&mut peer, "red LED", |c| {
        is_cmd(c, "led") && c["on_color"] == json!(RED)
    });
    let released = peer.seen[before..]
        .iter()
        .filter(|v| {
            is_cmd(&v["command"], "output") && v["command"]["control_code"] == json!(OUT_ON)
        })
        .count();
    assert_eq!(released, 0, "{:#?}", &peer.seen[before..]);
    let denied = wait_event(&api, "denied card decision", |e| {
        is(e, "kind", json!("decision")) && is(e, "granted", json!(false))
    });
    assert_eq!(denied["reason"], json!("unknown_card"), "{denied}");
    assert_eq!(denied["door"], json!("front"));
    assert!(!denied["credential"].as_str().unwrap().contains("4242"));
    assert!(!denied["message"].as_str().unwrap().contains("4242"));

    // A PIN typed at the keypad and '#': released and green again (once
    // the strike locked again after Ann's card, so the release is new).
    command_at_pd(&mut peer, "strike locked again", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_OFF)
    });
    peer.send(json!({"do": "keys", "addr": 1, "keys": "4321#"}));
    let pin = wait_event(&api, "PIN decision", |e| {
        is(e, "kind", json!("decision")) && is(e, "method", json!("PIN"))
    });
    assert_eq!(pin["granted"], json!(true), "{pin}");
    assert_eq!(pin["user"], json!("201"));
    assert!(pin["credential"].is_null());
    let out = command_at_pd(&mut peer, "strike release after the PIN", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_ON)
    });
    assert_eq!(out["output_no"], json!(0));
    command_at_pd(&mut peer, "green LED after the PIN", |c| {
        is_cmd(c, "led") && c["on_color"] == json!(GREEN)
    });

    // The PIN never appears in the log.
    let all = serde_json::to_string(&hub_events(&api, API_KEY)).unwrap();
    assert!(!all.contains("4321"), "{all}");
}

#[test]
fn door_position_inputs_raise_forced_and_held_open_alarms() {
    let _serial = e2e::exclusive();
    let Setup {
        mut peer,
        hub: _hub,
        api,
        _dir,
    } = setup(2);
    let inputs = |peer: &mut JsonProc, open: u8| {
        peer.send(json!({"do": "input", "addr": 1, "inputs": [open, 0, 0, 0]}));
        peer.wait_for("input ack", 5 * SEC, |v| is(v, "ok", json!("input")));
    };
    let alarm = |kind: &str, reason: &str| {
        wait_event(&api, &format!("{kind} {reason}"), |e| {
            is(e, "kind", json!(kind)) && is(e, "reason", json!(reason))
        })
    };

    // Closed, then opened with no grant: forced open; closed: cleared.
    inputs(&mut peer, 0);
    inputs(&mut peer, 1);
    let forced = alarm("alarm_raised", "forced_open");
    assert_eq!(forced["door"], json!("front"));
    inputs(&mut peer, 0);
    alarm("alarm_cleared", "forced_open");

    // Granted, opened and left open past held_open_s (2 s): held open.
    peer.send(json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(12, 34567)}));
    command_at_pd(&mut peer, "strike release", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_ON)
    });
    inputs(&mut peer, 1);
    let held = alarm("alarm_raised", "held_open");
    assert_eq!(held["door"], json!("front"));
    inputs(&mut peer, 0);
    alarm("alarm_cleared", "held_open");
    // The authorised opening was not a forced one.
    let forced_count = hub_events(&api, API_KEY)
        .iter()
        .filter(|e| is(e, "kind", json!("alarm_raised")) && is(e, "reason", json!("forced_open")))
        .count();
    assert_eq!(forced_count, 1);
}

#[test]
fn a_one_time_code_opens_the_door_once_even_across_a_restart() {
    let _serial = e2e::exclusive();
    let Setup {
        mut peer,
        hub,
        api,
        _dir,
    } = setup(30);
    let pin_decision =
        |e: &Value| is(e, "kind", json!("decision")) && is(e, "method", json!("PIN"));

    // First use: released, and the use is logged.
    peer.send(json!({"do": "keys", "addr": 1, "keys": "8642#"}));
    let first = wait_event(&api, "first use of the code", pin_decision);
    assert_eq!(first["granted"], json!(true), "{first}");
    command_at_pd(&mut peer, "strike release for the code", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_ON)
    });
    wait_event(&api, "code_used event", |e| {
        is(e, "kind", json!("code_used"))
    });
    command_at_pd(&mut peer, "strike locked again", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_OFF)
    });

    // Second use: refused at once (no new data set came).
    let refused = |e: &Value, after: &Value| {
        assert_eq!(e["granted"], json!(false), "{e}");
        assert!(e["seq"].as_u64() > after["seq"].as_u64(), "{e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains("one-time access code Courier already used"),
            "{message}"
        );
    };
    peer.send(json!({"do": "keys", "addr": 1, "keys": "8642#"}));
    let second = wait_event(&api, "second use of the code", |e| {
        pin_decision(e) && e["seq"].as_u64() > first["seq"].as_u64()
    });
    refused(&second, &first);
    command_at_pd(&mut peer, "red LED for the second use", |c| {
        is_cmd(c, "led") && c["on_color"] == json!(RED)
    });

    // After a restart (the data set file still has the code unused).
    let exit = hub
        .terminate(10 * SEC)
        .expect("the hub exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let (_hub, api) = hub_daemon(&_dir.path().join("hub.toml"));
    peer.wait_for("secure channel again", 20 * SEC, |v| {
        is(v, "pd", json!(1)) && is(v, "event", json!("sc")) && is(v, "active", json!(true))
    });
    peer.send(json!({"do": "keys", "addr": 1, "keys": "8642#"}));
    let third = wait_event(&api, "use after the restart", |e| {
        pin_decision(e) && e["seq"].as_u64() > second["seq"].as_u64()
    });
    refused(&third, &second);
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_the_log_survives_a_restart() {
    let _serial = e2e::exclusive();
    let Setup {
        mut peer,
        hub,
        api,
        _dir,
    } = setup(30);
    peer.send(json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(12, 34567)}));
    let granted = wait_event(&api, "granted decision", |e| {
        is(e, "kind", json!("decision")) && is(e, "granted", json!(true))
    });
    // SIGTERM: exit 0, with a hub_stopped event last.
    let exit = hub
        .terminate(10 * SEC)
        .expect("the hub exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let (_hub, api) = hub_daemon(&_dir.path().join("hub.toml"));
    let events = hub_events(&api, API_KEY);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(events
        .iter()
        .any(|e| e["seq"] == granted["seq"] && is(e, "granted", json!(true))));
    let stopped = events
        .iter()
        .position(|e| is(e, "kind", json!("hub_stopped")))
        .expect("hub_stopped logged");
    assert!(is(&events[stopped + 1], "kind", json!("hub_started")));
}

#[test]
fn a_bus_whose_port_is_missing_does_not_stop_the_hub() {
    let _serial = e2e::exclusive();
    // A second bus on an adapter that is not plugged in.
    let Setup {
        mut peer,
        hub: _hub,
        api,
        _dir,
    } = setup_with(
        30,
        r#"
[[bus]]
name = "annex"
port = "/dev/ttyOSDP-not-plugged-in"

[[reader]]
name = "annex-in"
bus = "annex"
address = 1
security = "clear"
"#,
    );
    // The missing port is logged, naming the reader it takes offline.
    let lost = wait_event(&api, "port_lost event", |e| {
        is(e, "reason", json!("port_lost"))
    });
    let message = lost["message"].as_str().unwrap();
    assert!(message.contains("/dev/ttyOSDP-not-plugged-in"), "{lost}");
    assert!(message.contains("offline: annex-in"), "{lost}");
    // Everything else runs: the real reader opens the door.
    peer.send(json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(12, 34567)}));
    command_at_pd(&mut peer, "strike released", |c| {
        is_cmd(c, "output") && c["control_code"] == json!(OUT_ON)
    });
    wait_event(&api, "granted decision", |e| {
        is(e, "kind", json!("decision")) && is(e, "granted", json!(true))
    });
}
