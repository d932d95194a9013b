//! `kill -9` of the real hub daemon while it records entries: no entry
//! whose answer the client had 100 ms before the kill is lost, none is
//! duplicated, and no sequence number is ever handed out twice.
//!
//! Each round starts `hub run` (no buses, the HTTP check), hammers
//! `POST /api/v1/access/check` (recording entries, not `check_only`) from
//! two client threads, noting each answer's `entry_seq`, its user and when
//! it arrived, then SIGKILLs the hub at a random moment. The next start
//! reopens the store; the test reads every event back through
//! `GET /api/v1/events` and checks all answers so far. The answer is sent
//! only after the outbox append, and the store's group commit makes it
//! durable within its flush interval (25 ms): the 100 ms margin covers that.
//!
//! `HUB_KILL_SEED=<n>` replays a run's kill schedule.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{http, hub_daemon, hub_events, json, write_secret, TempDir, Value};

const ROUNDS: usize = 20;
const MARGIN: Duration = Duration::from_millis(100);
const USERS: u64 = 20;
const API_KEY: &str = "kill-test-key";

/// One answered entry.
#[derive(Debug, Clone)]
struct Answer {
    user: String,
    arrived: Instant,
    round: usize,
}

fn data_set() -> Value {
    let users: Vec<Value> = (1..=USERS)
        .map(|i| {
            json!({"id": format!("u{i}"), "first_name": "User", "last_name": format!("{i}"),
                   "memberships": [{"id": i, "type_id": 1, "type_name": "Monthly",
                                    "expires": "2099-01-01T00:00:00Z", "door_ids": ["front"]}]})
        })
        .collect();
    json!({
        "site": {"id": "kill-site", "name": "Kill", "time_zone": "UTC"},
        "doors": [{"id": "front", "name": "Front", "membership_type_ids": [1]}],
        "users": users,
    })
}

/// xorshift64: a reproducible kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks every answer against the hub's event list; returns the number of
/// answered entries that had to be present.
fn verify(events: &[Value], answers: &BTreeMap<u64, Answer>, kills: &[Instant]) -> usize {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events out of order or duplicated: {seqs:?}"
    );
    let decisions: HashMap<u64, &Value> = events
        .iter()
        .filter(|e| e["kind"] == json!("decision"))
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect();
    let mut required = 0;
    for (seq, a) in answers {
        let kill = kills[a.round];
        let must = a.arrived + MARGIN <= kill;
        match decisions.get(seq) {
            Some(e) => {
                // The event under this number is this answer's entry.
                assert_eq!(e["user"], json!(a.user), "seq {seq}: {e}");
                assert_eq!(e["door"], json!("front"));
                assert_eq!(e["granted"], json!(true));
            }
            None => assert!(
                !must,
                "entry {seq} (user {}, round {}) answered {:?} before the kill is lost",
                a.user,
                a.round,
                kill - a.arrived
            ),
        }
        required += usize::from(must);
    }
    required
}

#[test]
fn entries_answered_before_a_kill_9_survive_it() {
    let seed = std::env::var("HUB_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("HUB_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = TempDir::new("hub-kill");
    std::fs::write(dir.path().join("site.json"), data_set().to_string()).unwrap();
    write_secret(&dir.path().join("api.key"), API_KEY);
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        r#"
[site]
id = "kill-site"
time_zone = "UTC"
dataset_file = "site.json"

[storage]
path = "store"

[api]
listen = "127.0.0.1:0"
api_key_file = "api.key"
"#,
    )
    .unwrap();

    let answers: Arc<Mutex<BTreeMap<u64, Answer>>> = Arc::default();
    let mut kills: Vec<Instant> = Vec::new();
    let mut required_total = 0;
    let started = Instant::now();
    for round in 0..=ROUNDS {
        let (hub, api) = hub_daemon(&config);
        // Everything answered in the earlier rounds is checked after the
        // restart.
        let events = hub_events(&api, API_KEY);
        required_total = verify(&events, &answers.lock().unwrap(), &kills);
        if round == ROUNDS {
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..2u64)
            .map(|t| {
                let (api, stop, answers) = (api.clone(), stop.clone(), answers.clone());
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let user = format!("u{}", i % USERS + 1);
                        i += 2;
                        let body = json!({"door_id": "front", "id": user});
                        let Ok((200, answer)) =
                            http(&api, "POST", "/api/v1/access/check", API_KEY, Some(&body))
                        else {
                            // The hub is gone (killed mid-request).
                            continue;
                        };
                        let arrived = Instant::now();
                        let seq = answer["entry_seq"].as_u64().expect("entry_seq");
                        let before = answers.lock().unwrap().insert(
                            seq,
                            Answer {
                                user,
                                arrived,
                                round,
                            },
                        );
                        assert!(before.is_none(), "sequence number {seq} handed out twice");
                    }
                })
            })
            .collect();
        let run_for = Duration::from_millis(200 + rng.next() % 700);
        std::thread::sleep(run_for);
        let kill_at = Instant::now();
        drop(hub); // SIGKILL, then reap
        kills.push(kill_at);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
    }
    let answered = answers.lock().unwrap().len();
    eprintln!(
        "{ROUNDS} kills in {:?}: {answered} entries answered, {required_total} had to survive",
        started.elapsed()
    );
    // The test checked something: most answers came well before a kill.
    assert!(required_total > ROUNDS * 10, "{required_total}");
}
