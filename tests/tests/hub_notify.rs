//! systemd's notify protocol from a real `hub run`: with `NOTIFY_SOCKET`
//! pointing at our Unix datagram socket and `WATCHDOG_USEC` set, the hub
//! says `READY=1` once it serves, then `WATCHDOG=1` from its site loop, and
//! `STOPPING=1` on SIGTERM (what `systemd/hub.service`, `Type=notify` with
//! `WatchdogSec`, relies on).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{hub_bin, TempDir};

/// The next notification, waiting at most `within`.
fn next_message(socket: &UnixDatagram, within: Duration) -> Option<String> {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Messages until one contains `want` (at most `within` in all).
fn wait_for(socket: &UnixDatagram, want: &str, within: Duration, seen: &mut Vec<String>) -> bool {
    let end = Instant::now() + within;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match next_message(socket, left) {
            Some(m) => {
                let found = m.lines().any(|l| l == want);
                seen.push(m);
                if found {
                    return true;
                }
            }
            None => return false,
        }
    }
    false
}

#[test]
fn hub_run_notifies_ready_then_watchdog_then_stopping() {
    let dir = TempDir::new("hub-notify");
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        r#"
[site]
id = "notify-site"
time_zone = "UTC"

[storage]
path = "store"
"#,
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut hub = Command::new(hub_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        // 400 ms: the hub pings every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let mut seen = Vec::new();
    let ready = wait_for(&socket, "READY=1", Duration::from_secs(30), &mut seen);
    let watchdog = ready && wait_for(&socket, "WATCHDOG=1", Duration::from_secs(10), &mut seen);
    // Two pings: the loop keeps pinging, not just once at start.
    let again = watchdog && wait_for(&socket, "WATCHDOG=1", Duration::from_secs(10), &mut seen);
    let kill = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .unwrap();
    let stopping = wait_for(&socket, "STOPPING=1", Duration::from_secs(10), &mut seen);
    let exit = hub.wait().unwrap();

    assert!(ready, "no READY=1; got {seen:?}");
    assert!(
        watchdog && again,
        "READY=1 but no repeated WATCHDOG=1; got {seen:?}"
    );
    assert!(kill.success());
    assert!(stopping, "no STOPPING=1 after SIGTERM; got {seen:?}");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        seen.first().map(|m| m.trim()),
        Some("READY=1"),
        "READY=1 comes first"
    );
}
