//! Polls per second of `hub osdp` against real libosdp 3.2.9 PDs on a PTY.
//!
//! A PTY has no baud rate, so the limit here is how fast the peers answer:
//! libosdp's Python devices run their state machine every 20 ms. Counted on
//! the harness's wire trace (osdp_POLL frames sent, answers received).
//!
//! Run: `cargo bench -p e2e --bench libosdp_pty` (needs scripts/test-env.sh).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use e2e::{hub, is, json, libosdp_pd};

const KEYS: [&str; 4] = [
    "00112233445566778899aabbccddeeff",
    "0f0e0d0c0b0a09080706050403020100",
    "a5a5a5a55a5a5a5a0123456789abcdef",
    "deadbeefdeadbeefdeadbeefdeadbeef",
];

fn run(pds: usize, secure: bool, secs: u64) -> (f64, f64) {
    let specs: Vec<_> = (0..pds)
        .map(|i| {
            let key = secure.then_some(KEYS[i]);
            json!({"addr": i + 1, "scbk": key, "secure": secure})
        })
        .collect();
    let (mut peer, bus) = libosdp_pd(&specs, true);
    let mut args = vec![
        "osdp".to_string(),
        "--port".into(),
        bus,
        "--poll-interval-ms".into(),
        "0".into(),
    ];
    for (i, key) in KEYS.iter().enumerate().take(pds) {
        args.push("--pd".into());
        args.push(if secure {
            format!("{}:{key}", i + 1)
        } else {
            format!("{}", i + 1)
        });
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut h = hub(&argv);
    for pd in 1..=pds {
        h.wait_for("online", Duration::from_secs(20), |v| {
            is(v, "pd", json!(pd)) && is(v, "event", json!("online"))
        });
    }
    let from = peer.drain_for(Duration::from_millis(500)).len();
    let t0 = Instant::now();
    peer.drain_for(Duration::from_secs(secs));
    let elapsed = t0.elapsed().as_secs_f64();
    let window = &peer.seen[from..];
    let polls = window
        .iter()
        .filter(|v| v["wire"] == json!("cp") && v["code"] == json!(0x60))
        .count();
    let answers = window.iter().filter(|v| v["wire"] == json!("pd")).count();
    (polls as f64 / elapsed, answers as f64 / elapsed)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 3 } else { 10 };
    println!("| libosdp PDs | SC | polls/s sent | replies/s | per PD polls/s |");
    println!("|---|---|---|---|---|");
    for pds in [1usize, 4] {
        for secure in [false, true] {
            let _serial = e2e::exclusive();
            let (polls, replies) = run(pds, secure, secs);
            println!(
                "| {pds} | {} | {polls:.1} | {replies:.1} | {:.1} |",
                if secure { "on" } else { "off" },
                polls / pds as f64
            );
        }
    }
}
