//! The hub's data-set state with the cloud sync attached, at scale
//! (`hub::access::scale`: by default 1,000,000 credentials, 100,000 users,
//! 10,000 accesses, 1,000 access codes).
//!
//! Phases, each in a fresh process (the bench runs itself again):
//!
//! - `save`: generate the data set, `site_data::save_snapshot` it into a
//!   fresh store, and write the same data set as encoded snapshot chunks of
//!   1,000 entities to a file (for `snapshot`).
//! - `attached`: open the store, `site_data::load_view` once and hand the
//!   same `Arc<View>` to a `CloudState` (as `hub run` does with `[mqtt]`);
//!   memory; decisions on that view; then one-credential revisions through
//!   `CloudState::apply_revision` (build the view from the store with the
//!   change laid over it, apply, install), timed one by one.
//! - `snapshot`: open the store with its view and `CloudState`, then feed
//!   the whole data set again as a snapshot (chunks read one at a time from
//!   the file) and commit; time and peak memory.
//!
//! Run: `cargo bench -p hub --bench cloud_scale`. Environment: `CREDENTIALS`,
//! `USERS`, `ACCESSES`, `CODES` (the data set's size), `DECISIONS` (default
//! 200,000), `REVISIONS` (default 20), `STORE_CACHE_MIB` (the store's cache).
//! Results: docs/benchmarks.md.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;
use common::{malloc_trim, mib, status_kib};

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::access::scale::{self, Spec};
use hub::access::{decide, Credential, Secret, View};
use hub::cloud::convert::{self, Record};
use hub::cloud::{CloudState, Hooks};
use hub::site_data;
use hub::store::{Store, StoreConfig};
use hub_proto::v1 as pb;
use hub_proto::v1::Message;
use hub_sync::LocalState;

fn main() {
    if let Some((phase, path)) = common::phase_arg() {
        let path = path.as_path();
        match phase.as_str() {
            "save" => phase_save(path),
            "attached" => phase_attached(path),
            "snapshot" => phase_snapshot(path),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("store");
    let spec = spec();
    println!(
        "data set: {} credentials, {} users, {} accesses, {} access codes",
        spec.credentials, spec.users, spec.accesses, spec.codes
    );
    common::run_phase("save", &data);
    for phase in ["attached", "snapshot"] {
        let cold = common::drop_os_caches();
        println!(
            "OS page cache before `{phase}`: {}",
            if cold { "dropped" } else { "warm" }
        );
        common::run_phase(phase, &data);
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec() -> Spec {
    Spec {
        credentials: env("CREDENTIALS", Spec::FULL.credentials),
        users: env("USERS", Spec::FULL.users),
        accesses: env("ACCESSES", Spec::FULL.accesses),
        codes: env("CODES", Spec::FULL.codes),
    }
}

fn config(path: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(path);
    if let Ok(mib) = std::env::var("STORE_CACHE_MIB") {
        config.cache_capacity = mib.parse::<u64>().unwrap() * 1024 * 1024;
    }
    config
}

fn chunks_file(path: &Path) -> PathBuf {
    path.with_extension("chunks")
}

fn phase_save(path: &Path) {
    let data = scale::data_set(spec());
    let (store, _) = Store::open(config(path)).unwrap();
    let t = Instant::now();
    let info = site_data::save_snapshot(&store, &data, 1).unwrap();
    println!(
        "save_snapshot: {} records in {:.2} s",
        info.records,
        t.elapsed().as_secs_f64()
    );
    store.close().unwrap();
    // The same data set as the cloud would send it, 1,000 entities a chunk.
    let mut out = BufWriter::new(std::fs::File::create(chunks_file(path)).unwrap());
    let records = convert::records(&data);
    drop(data);
    for group in records.chunks(1000) {
        let chunk = pb::SnapshotChunk {
            entities: group.iter().map(convert::to_proto).collect(),
            ..pb::SnapshotChunk::default()
        };
        let bytes = chunk.encode_to_vec();
        out.write_all(&(bytes.len() as u32).to_le_bytes()).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.flush().unwrap();
}

/// The daemon's view and the sync's state on it, as `hub run` starts them.
fn start(path: &Path) -> (Arc<Store>, Arc<View>, CloudState, Duration) {
    let t = Instant::now();
    let (store, _) = Store::open(config(path)).unwrap();
    let store = Arc::new(store);
    let (view, revision) = site_data::load_view(&store).unwrap();
    let view = Arc::new(view);
    let state = CloudState::with_view(
        Arc::clone(&store),
        Hooks {
            clock: Box::new(scale::now),
            ..Hooks::default()
        },
        Some((Arc::clone(&view), revision)),
    );
    (store, view, state, t.elapsed())
}

fn phase_attached(path: &Path) {
    let (store, view, mut state, ready) = start(path);
    let rss_ready = status_kib("VmRSS");
    let hwm_ready = status_kib("VmHWM");
    malloc_trim();
    let rss_trimmed = status_kib("VmRSS");
    println!("| phase `attached` (fresh process) | |");
    println!("|---|---|");
    println!(
        "| `Store::open` + `load_view` + `CloudState::with_view` | {:.0} ms |",
        ms(ready)
    );
    println!(
        "| `VmRSS` / `VmHWM` when ready | {} / {} |",
        mib(rss_ready),
        mib(hwm_ready)
    );
    println!("| `VmRSS` after `malloc_trim(0)` | {} |", mib(rss_trimmed));

    let n = env("DECISIONS", 200_000) as usize;
    let requests = scale::requests(spec(), n);
    let now = scale::now();
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    let mut granted = 0usize;
    for g in &requests {
        let request = g.request();
        let t = Instant::now();
        let d = decide(&request, &view, now);
        times.push(t.elapsed());
        granted += usize::from(d.granted);
    }
    drop(requests);
    times.sort_unstable();
    println!(
        "| decisions on the shared view: {n} ({granted} granted) p50 / p99 | {:.2} µs / {:.2} µs |",
        pct(&times, 0.5).as_secs_f64() * 1e6,
        pct(&times, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "| `VmRSS` / `VmHWM` after the decisions | {} / {} |",
        mib(status_kib("VmRSS")),
        mib(status_kib("VmHWM"))
    );
    drop(view);

    // One new card credential per revision, for an existing user.
    let template: Credential = store
        .view()
        .iter::<Vec<Credential>>(site_data::CREDENTIAL_CHUNKS)
        .next()
        .unwrap()
        .unwrap()
        .1
        .swap_remove(0);
    let revisions = env("REVISIONS", 20);
    let mut times = Vec::new();
    for i in 0..revisions {
        let mut c = template.clone();
        c.id = format!("bench-{i}").into();
        c.code = Some(Secret::new(format!("251:{}", 90_000_000 + i)));
        let r = pb::Revision {
            base_revision: 1 + i,
            revision: 2 + i,
            changes: vec![pb::Change {
                op: Some(pb::change::Op::Upsert(convert::to_proto(
                    &Record::Credential(c),
                ))),
            }],
        };
        let t = Instant::now();
        state.apply_revision(&r).unwrap();
        times.push(t.elapsed());
    }
    assert_eq!(store.revision(), Some(1 + revisions));
    let counts = state.view().unwrap().counts();
    assert_eq!(counts.credentials as u64, spec().credentials + revisions);
    let mut sorted = times.clone();
    sorted.sort_unstable();
    println!(
        "| one-credential revision ({revisions}): min / median / max | {:.1} / {:.1} / {:.1} ms |",
        ms(sorted[0]),
        ms(pct(&sorted, 0.5)),
        ms(sorted[sorted.len() - 1])
    );
    println!(
        "| `VmRSS` / `VmHWM` after the revisions | {} / {} |",
        mib(status_kib("VmRSS")),
        mib(status_kib("VmHWM"))
    );
    println!();
}

fn phase_snapshot(path: &Path) {
    let (store, view, mut state, _) = start(path);
    drop(view);
    malloc_trim();
    let rss_before = status_kib("VmRSS");
    let hwm_before = status_kib("VmHWM");
    let mut input = BufReader::new(std::fs::File::open(chunks_file(path)).unwrap());
    let t = Instant::now();
    state.snapshot_begin(2).unwrap();
    let mut chunks = 0;
    let mut len = [0u8; 4];
    while input.read_exact(&mut len).is_ok() {
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        input.read_exact(&mut bytes).unwrap();
        let chunk = pb::SnapshotChunk::decode(&bytes[..]).unwrap();
        state.snapshot_chunk(chunk.entities).unwrap();
        chunks += 1;
    }
    let staged = t.elapsed();
    state.snapshot_commit().unwrap();
    let done = t.elapsed();
    assert_eq!(store.revision(), Some(2));
    println!("| phase `snapshot` (fresh process, after `attached`'s start) | |");
    println!("|---|---|");
    println!(
        "| `VmRSS` / `VmHWM` before the snapshot | {} / {} |",
        mib(rss_before),
        mib(hwm_before)
    );
    println!(
        "| {chunks} chunks staged / view built and committed | {:.2} s / {:.2} s |",
        staged.as_secs_f64(),
        done.as_secs_f64()
    );
    println!(
        "| `VmRSS` / `VmHWM` after the commit | {} / {} |",
        mib(status_kib("VmRSS")),
        mib(status_kib("VmHWM"))
    );
    malloc_trim();
    println!(
        "| `VmRSS` after `malloc_trim(0)` | {} |",
        mib(status_kib("VmRSS"))
    );
    println!();
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
