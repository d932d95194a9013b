//! Store figures that criterion does not give: resident memory after loading
//! and after opening 1,000,000 records, cold-start open time, disk use, and
//! outbox durability latencies (per-append flush, group commit).
//!
//! Run: `cargo bench -p hub --bench store_figures` (`STORE_CACHE_MIB=<n>`
//! sets another cache size for the load and open phases). Each phase runs in a
//! fresh child process (this binary again) so that its `VmRSS` is its own.
//! Results: docs/benchmarks.md.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{credential, key, load, rss_kib, Credential, RECORDS};
use hub::store::{Durability, Store, StoreConfig};

fn main() {
    if let Some((phase, path)) = common::phase_arg() {
        let path = path.as_path();
        match phase.as_str() {
            "load" => phase_load(path),
            "open" => phase_open(path),
            "durability" => phase_durability(path),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let run = common::run_phase;
    let data = dir.path().join("data");
    run("load", &data);
    let cold = common::drop_os_caches();
    println!(
        "OS page cache before the open phase: {}",
        if cold {
            "dropped (cold start)"
        } else {
            "could not be dropped (warm)"
        }
    );
    run("open", &data);
    run("durability", &dir.path().join("outbox"));
}

/// The store's configuration; `STORE_CACHE_MIB` overrides the cache size.
fn config(path: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(path);
    if let Some(mib) = std::env::var("STORE_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.cache_capacity = mib * 1024 * 1024;
    }
    config
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn random_gets(store: &Store, n: u64) -> Duration {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let start = Instant::now();
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cred: Credential = store.get("credentials", key(x % RECORDS)).unwrap().unwrap();
        std::hint::black_box(cred);
    }
    start.elapsed()
}

fn phase_load(path: &Path) {
    let record = postcard::to_allocvec(&credential(RECORDS / 2)).unwrap();
    println!(
        "record size: {} bytes (postcard), key 8 bytes",
        record.len()
    );
    let before = rss_kib();
    let config = config(path);
    println!("cache_capacity: {} MiB", config.cache_capacity / 1048576);
    let (store, _) = Store::open(config).unwrap();
    let opened = rss_kib();
    let start = Instant::now();
    let info = load(&store, RECORDS, 1);
    let took = start.elapsed();
    println!(
        "load {} records as one snapshot: {:.2} s ({:.0} records/s)",
        info.records,
        took.as_secs_f64(),
        info.records as f64 / took.as_secs_f64()
    );
    println!(
        "VmRSS: before open {}, after open (empty) {}, after the load {}",
        mib(before),
        mib(opened),
        mib(rss_kib())
    );
    let gets = random_gets(&store, 100_000);
    println!(
        "100k random gets after the load: {:.2} us each; VmRSS {}",
        gets.as_secs_f64() * 10.0,
        mib(rss_kib())
    );
    println!(
        "size on disk (sled): {:.0} MiB",
        store.size_on_disk().unwrap() as f64 / 1048576.0
    );
    store.close().unwrap();
    println!(
        "directory size: {:.0} MiB",
        dir_size(path) as f64 / 1048576.0
    );
}

fn phase_open(path: &Path) {
    let before = rss_kib();
    let start = Instant::now();
    let (store, report) = Store::open(config(path)).unwrap();
    let took = start.elapsed();
    assert!(report.recovery.is_none());
    assert_eq!(store.revision(), Some(1));
    println!(
        "open a store of {RECORDS} records: {:.0} ms; VmRSS before {}, after {}",
        took.as_secs_f64() * 1000.0,
        mib(before),
        mib(rss_kib())
    );
    let start = Instant::now();
    let first: Option<Credential> = store.get("credentials", key(RECORDS / 3)).unwrap();
    assert!(first.is_some());
    println!(
        "first get after open: {:.2} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let gets = random_gets(&store, 100_000);
    println!(
        "100k random gets after open: {:.2} us each; VmRSS {}",
        gets.as_secs_f64() * 10.0,
        mib(rss_kib())
    );
    let start = Instant::now();
    let n = store.view().iter::<Credential>("credentials").count();
    println!(
        "full scan of {n} records: {:.2} s; VmRSS {}",
        start.elapsed().as_secs_f64(),
        mib(rss_kib())
    );
    store.close().unwrap();
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    )
}

fn phase_durability(path: &Path) {
    let event = postcard::to_allocvec(&credential(7)).unwrap();
    for (name, durability) in [
        ("flush on every append", Durability::EveryAppend),
        ("group commit (25 ms)", Durability::GroupCommit),
    ] {
        let _ = std::fs::remove_dir_all(path);
        let mut config = StoreConfig::new(path);
        config.durability = durability;
        let (store, _) = Store::open(config).unwrap();
        let outbox = store.outbox();
        // Warm up: the first append reserves numbers.
        outbox.append(&event).unwrap();

        // Back-to-back throughput.
        let n = 5_000u64;
        let start = Instant::now();
        for _ in 0..n {
            outbox.append(&event).unwrap();
        }
        let took = start.elapsed();
        println!(
            "{name}: {n} appends back to back: {:.1} us each ({:.0}/s)",
            took.as_secs_f64() * 1e6 / n as f64,
            n as f64 / took.as_secs_f64()
        );

        // Latency of one append, and from append to on disk, with events
        // spaced like card swipes in a busy lobby (every 7 ms).
        let mut call = Vec::new();
        let mut durable = Vec::new();
        for _ in 0..500 {
            let start = Instant::now();
            let seq = outbox.append(&event).unwrap().seq;
            call.push(start.elapsed());
            assert!(outbox.wait_durable(seq, Duration::from_secs(5)));
            durable.push(start.elapsed());
            std::thread::sleep(Duration::from_millis(7));
        }
        println!("{name}: append call {}", percentiles(call));
        println!("{name}: append to on disk {}", percentiles(durable));
        store.close().unwrap();
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
