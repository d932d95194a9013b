//! The technician's web page in a real browser: headless Chromium logs in
//! to a real `hub demo` through the login form, presents Ann's card at the
//! front door's virtual reader with the page's demo form, and the rendered
//! page shows the door and the granted event with the card masked.
//!
//! Chromium is driven by `scripts/web_page_check.py` (DevTools protocol on
//! a pipe, Python standard library only). Needs Debian's `chromium`
//! (`scripts/test-env.sh` installs it; `HUB_CHROMIUM` overrides the path).
//! The screenshot goes to the test's temporary directory; with
//! `HUB_UPDATE_SCREENSHOT=1` it also replaces `docs/web-status.png`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::time::Duration;

use e2e::{hub_bin, is, json, repo_root, JsonProc, TempDir, Value};

fn chromium() -> String {
    let path = std::env::var("HUB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run scripts/test-env.sh (installs Debian's chromium)"
    );
    path
}

#[test]
fn a_technician_logs_in_presents_a_card_and_sees_the_granted_event() {
    let chromium = chromium();
    let dir = TempDir::new("web-page");
    let mut cmd = Command::new(hub_bin());
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--card-every", "0"])
        .env("RUST_LOG", "warn");
    let mut hub = JsonProc::spawn("hub-demo", cmd);
    let banner = hub.wait_for("demo banner", Duration::from_secs(30), |v| {
        is(v, "event", json!("demo"))
    });
    let ready = hub.wait_for("ready line", Duration::from_secs(30), |v| {
        is(v, "event", json!("ready"))
    });
    let web = ready["web"].as_str().expect("the demo serves the web page");
    let user = banner["user"].as_str().unwrap();
    let password = banner["password"].as_str().unwrap();
    assert!(password.len() >= 12, "a real random password");

    let shot = dir.path().join("web-status.png");
    // Standard library only: any python3 will do (no venv needed).
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/web_page_check.py"))
        .args(["--chromium", &chromium])
        .args(["--url", &format!("http://{web}")])
        .args(["--user", user])
        .args(["--reader", "front-in", "--card", "12:34567"])
        .args(["--expect", "card ****67, reader front-in"])
        .arg("--screenshot")
        .arg(&shot)
        .env("HUB_WEB_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = page["text"].as_str().unwrap();

    assert_eq!(page["url"], json!("/"), "logged in, on the status page");
    assert!(
        text.contains("Front Door (front)"),
        "the door is listed:\n{text}"
    );
    assert!(
        page["result"]
            .as_str()
            .is_some_and(|r| r.contains("presented at front-in")),
        "the action's answer is shown: {}",
        page["result"]
    );
    // The events table: a granted row for Ann at the front door, card
    // masked.
    let granted = text.lines().find(|l| {
        let cells: Vec<&str> = l.split('\t').map(str::trim).collect();
        cells.get(2) == Some(&"granted")
            && cells.get(3) == Some(&"front")
            && l.contains("Ann Lee")
            && l.contains("card ****67")
    });
    assert!(
        granted.is_some(),
        "no granted event with the masked card:\n{text}"
    );
    assert!(
        !text.contains("34567"),
        "a card number is shown unmasked:\n{text}"
    );
    assert!(!text.contains(password), "the password is shown");

    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var_os("HUB_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(repo_root().join("docs/web-status.png"), &png).unwrap();
    }
    drop(hub);
}
