//! The outbox survives `kill -9`: a child process appends events
//! continuously and is killed with SIGKILL at random moments, over and over.
//! After every kill the test opens the store itself and checks:
//!
//! - every event the child appended at least 100 ms before the kill, and
//!   every event it saw reported durable, is there with its payload (unless
//!   acknowledged);
//! - events come out in sequence order, each payload once, and each run's
//!   events are contiguous (sequence numbers and the run's own counter);
//! - the next sequence number is above every number the child ever handed
//!   out (never reused), and numbering continues in the next run.
//!
//! `OUTBOX_CRASH_SEED=<n>` replays a run's kill schedule.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hub::store::{Store, StoreConfig};

const KILLS: u64 = 36;
const MARGIN: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct RunOutput {
    /// `R`: the next seq when the child opened the store.
    start_seq: Option<u64>,
    /// `A`: seq → (time ns, i).
    appended: BTreeMap<u64, (u128, u64)>,
    /// `D`: highest durable seq reported.
    durable: u64,
    /// `K`: highest acknowledgement the child may have made.
    acked: u64,
}

fn parse(reader: impl BufRead) -> RunOutput {
    let mut out = RunOutput::default();
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        let Ok(line) = String::from_utf8(line) else {
            continue;
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u128>().ok());
        // A line cut by the kill has too few fields or a short number; the
        // last field of a complete line is followed by '\n', which `split`
        // removed, so a cut line can only lose trailing fields or digits.
        // Such a line is the last one: it can only under-report.
        match (fields.first().copied(), fields.len()) {
            (Some("R"), 2) => out.start_seq = num(1).map(|v| v as u64),
            (Some("A"), 4) => {
                if let (Some(seq), Some(t), Some(i)) = (num(1), num(2), num(3)) {
                    out.appended.insert(seq as u64, (t, i as u64));
                }
            }
            (Some("D"), 3) => {
                if let Some(seq) = num(1) {
                    out.durable = out.durable.max(seq as u64);
                }
            }
            (Some("K"), 2) => {
                if let Some(seq) = num(1) {
                    out.acked = out.acked.max(seq as u64);
                }
            }
            _ => {}
        }
    }
    out
}

fn payload(run: u64, i: u64) -> Vec<u8> {
    let mut p = format!("run={run} i={i} ").into_bytes();
    p.resize(100, b'.');
    p
}

fn parse_payload(bytes: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(bytes).expect("payload is text");
    let mut parts = text.trim_end_matches('.').split_whitespace();
    let run = parts.next().and_then(|p| p.strip_prefix("run=")).unwrap();
    let i = parts.next().and_then(|p| p.strip_prefix("i=")).unwrap();
    let (run, i) = (run.parse().unwrap(), i.parse().unwrap());
    assert_eq!(bytes, payload(run, i), "payload intact");
    (run, i)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn outbox_loses_nothing_older_than_100ms_across_sigkills() {
    let started = Instant::now();
    let seed = std::env::var("OUTBOX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("OUTBOX_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store");

    // Events that must be present unless acknowledged: seq → (run, i).
    let mut must: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut ack_floor = 0u64;
    let mut highest_handed_out = 0u64;
    let mut checked = 0usize;
    let mut appended_total = 0usize;
    let mut skipped_reports = 0usize;
    let mut required_ever = HashSet::new();
    // Events appended in the last 100 ms before a kill and not reported
    // durable: found / lost.
    let (mut recent_kept, mut recent_lost) = (0usize, 0usize);
    // Age at the kill of the oldest event lost, in ns.
    let mut oldest_lost = 0u128;

    for run in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outbox-crash-child"))
            .arg(&path)
            .arg(run.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || parse(BufReader::new(stdout)));
        // Mostly while appending; every sixth kill early, while the child
        // opens the store or reserves its first numbers.
        let delay = if run % 6 == 5 {
            rng.below(40)
        } else {
            150 + rng.below(900)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let kill_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child ended by itself: {status}");
        let output = reader.join().unwrap();

        if let Some(start) = output.start_seq {
            assert!(
                start > highest_handed_out,
                "run {run} starts at {start}, {highest_handed_out} was handed out before"
            );
        }
        appended_total += output.appended.len();
        ack_floor = ack_floor.max(output.acked);
        let mut recent = Vec::new();
        for (&seq, &(t, i)) in &output.appended {
            highest_handed_out = highest_handed_out.max(seq);
            if t + MARGIN.as_nanos() <= kill_time || seq <= output.durable {
                must.insert(seq, (run, i));
                required_ever.insert(seq);
            } else if seq > ack_floor {
                recent.push((seq, kill_time.saturating_sub(t)));
            }
        }

        let (store, report) = Store::open(StoreConfig::new(&path)).expect("reopen");
        assert!(
            report.recovery.is_none(),
            "run {run}: {:?}",
            report.recovery
        );
        if report.outbox_skipped.is_some() {
            skipped_reports += 1;
        }
        let events = store.outbox().peek(0, usize::MAX).unwrap();
        assert_eq!(events.len() as u64, store.outbox().depth());

        // Order, unique payloads, contiguous runs.
        let mut seen = HashSet::new();
        let mut by_run: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        let mut present: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for window in events.windows(2) {
            assert!(window[0].0 < window[1].0, "out of order");
        }
        for (seq, bytes) in &events {
            let (r, i) = parse_payload(bytes);
            assert!(seen.insert((r, i)), "duplicate event run {r} i {i}");
            by_run.entry(r).or_default().push((*seq, i));
            present.insert(*seq, (r, i));
        }
        for (r, list) in &by_run {
            for pair in list.windows(2) {
                assert_eq!(
                    (pair[1].0 - pair[0].0, pair[1].1 - pair[0].1),
                    (1, 1),
                    "gap in run {r}: {pair:?}"
                );
            }
        }

        // Nothing required is missing.
        for (&seq, &(r, i)) in must.range(ack_floor + 1..) {
            assert_eq!(
                present.get(&seq),
                Some(&(r, i)),
                "run {run} (killed after {delay} ms, seed {seed}): seq {seq} (run {r} i {i}) lost"
            );
            checked += 1;
        }

        for (seq, age) in recent {
            if present.contains_key(&seq) {
                recent_kept += 1;
            } else {
                recent_lost += 1;
                oldest_lost = oldest_lost.max(age);
            }
        }

        // Numbers are never reused.
        let next = store.outbox().next_seq();
        assert!(
            next > highest_handed_out,
            "next seq {next} reuses a number up to {highest_handed_out}"
        );
        store.close().unwrap();
        must = must.split_off(&(ack_floor + 1));
    }

    let elapsed = started.elapsed();
    eprintln!(
        "{KILLS} kills in {elapsed:.1?}: {appended_total} events appended; \
         {} distinct events required (appended >= 100 ms before a kill or \
         reported durable), all found ({checked} checks over all reopenings); \
         events of the last 100 ms not yet reported durable: {recent_kept} \
         found, {recent_lost} lost \
         (allowed; the oldest lost was appended {:.1} ms before its kill); \
         {skipped_reports} reopenings reported skipped numbers",
        required_ever.len(),
        oldest_lost as f64 / 1e6
    );
    assert!(
        appended_total > 10 * KILLS as usize,
        "the child appended too little"
    );
    assert!(checked > 0);
}
