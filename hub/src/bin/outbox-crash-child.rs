//! Test helper for `hub/tests/outbox_crash.rs`, not a tool: appends outbox
//! events to the store at `PATH` until it is killed, and reports on stdout.
//!
//! `outbox-crash-child PATH RUN`
//!
//! Lines (times are nanoseconds since 1970, taken before the call):
//! - `R <next_seq>`: the store is open.
//! - `A <seq> <time> <i>`: the run's `i`-th event got `seq`; its payload is
//!   `run=<RUN> i=<i>` padded with dots to 100 bytes.
//! - `D <seq> <time>`: every event up to `seq` is on disk.
//! - `K <seq>`: about to acknowledge through `seq` (printed before the call,
//!   so the test knows every acknowledgement that may have happened).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub::store::{Store, StoreConfig};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(Ok(run))) = (args.get(1), args.get(2).map(|r| r.parse::<u64>())) else {
        eprintln!("usage: outbox-crash-child PATH RUN");
        return ExitCode::from(2);
    };
    match run_child(path, run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outbox-crash-child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_child(path: &str, run: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (store, report) = Store::open(StoreConfig::new(path))?;
    if let Some(recovery) = report.recovery {
        return Err(format!("unexpected recovery: {recovery:?}").into());
    }
    let outbox = store.outbox();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "R {}", outbox.next_seq())?;
    out.flush()?;

    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ run.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next_random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut i = 0u64;
    let mut reported_durable = 0u64;
    let mut next_ack_at = 500u64;
    loop {
        for _ in 0..1 + next_random() % 8 {
            let mut payload = format!("run={run} i={i} ").into_bytes();
            payload.resize(100, b'.');
            let t = now_ns();
            let seq = outbox.append(&payload)?.seq;
            writeln!(out, "A {seq} {t} {i}")?;
            i += 1;
            if i >= next_ack_at {
                next_ack_at += 500;
                // Keep about 2000 events: the cloud acknowledges behind us.
                let through = seq.saturating_sub(2000);
                writeln!(out, "K {through}")?;
                out.flush()?;
                outbox.ack_through(through)?;
            }
        }
        let durable = outbox.durable_through();
        if durable > reported_durable {
            reported_durable = durable;
            writeln!(out, "D {durable} {}", now_ns())?;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_micros(next_random() % 4000));
    }
}
