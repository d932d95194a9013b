//! Decisions at scale: 1,000,000 credentials, 100,000 users, 10,000 accesses
//! and 1,000 access codes (`hub::access::scale`).
//!
//! - `save`: generate the data set and `site_data::save_snapshot` it into a
//!   fresh store on disk.
//! - `cold`: in a fresh process (OS page cache dropped when allowed): open
//!   the store, `site_data::load_view` (or with `VIA_DATASET=1`
//!   `site_data::load` then `View::build`), then `VmRSS` / `VmHWM`,
//!   then the decision latency over a mix of requests (monotonic clock
//!   around each `decide` call).
//!
//! Run: `cargo bench -p hub --bench decide_scale` (`DECISIONS=<n>` sets the
//! number of requests, default 500,000; `STORE_CACHE_MIB=<n>` the store's
//! cache; `VIA_DATASET=1` the former path through a `DataSet`, with
//! `KEEP_RECORDS=1` keeping its credential records). Results:
//! docs/benchmarks.md.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;
use common::{malloc_trim, mib, status_kib};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hub::access::scale::{self, Kind, Spec};
use hub::access::{decide, View};
use hub::site_data;
use hub::store::{Store, StoreConfig};

/// Counts the bytes allocated and not yet freed, to tell the View's own
/// heap from what the allocator keeps resident (`VmRSS`).
struct CountingAlloc;

static LIVE_BYTES: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            std::sync::atomic::Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Live heap bytes (allocated, not freed) in MiB.
fn live_heap() -> String {
    format!(
        "{:.1} MiB",
        LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0
    )
}

fn main() {
    if let Some((phase, path)) = common::phase_arg() {
        let path = path.as_path();
        match phase.as_str() {
            "save" => phase_save(path),
            "cold" => phase_cold(path),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let run = common::run_phase;
    let data = dir.path().join("store");
    run("save", &data);
    let cold = common::drop_os_caches();
    println!(
        "OS page cache before the cold start: {}",
        if cold {
            "dropped"
        } else {
            "could not be dropped (warm)"
        }
    );
    run("cold", &data);
}

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

fn phase_save(path: &Path) {
    let rss0 = status_kib("VmRSS");
    let t = Instant::now();
    let data = scale::data_set(Spec::FULL);
    let generate = t.elapsed();
    let rss_data = status_kib("VmRSS");
    let (store, _) = Store::open(config(path)).unwrap();
    let t = Instant::now();
    let info = site_data::save_snapshot(&store, &data, 1).unwrap();
    let save = t.elapsed();
    let disk = store.size_on_disk().unwrap();
    let rss_saved = status_kib("VmRSS");
    store.close().unwrap();
    println!("| phase `save` | |");
    println!("|---|---|");
    println!("| generate the data set | {} |", ms(generate));
    println!(
        "| `VmRSS` before / with the generated DataSet | {} / {} |",
        mib(rss0),
        mib(rss_data)
    );
    println!(
        "| `save_snapshot` of {} records into a fresh store | {} ({:.0} records/s) |",
        info.records,
        secs(save),
        info.records as f64 / save.as_secs_f64()
    );
    println!(
        "| `VmRSS` after the save / `VmHWM` | {} / {} |",
        mib(rss_saved),
        mib(status_kib("VmHWM"))
    );
    println!("| disk use | {:.0} MiB |", disk as f64 / 1048576.0);
    println!();
}

fn phase_cold(path: &Path) {
    let start = Instant::now();
    let rss0 = status_kib("VmRSS");
    let (store, _) = Store::open(config(path)).unwrap();
    let opened = start.elapsed();
    let rss_open = status_kib("VmRSS");
    let heap_open = live_heap();
    // Default: the View straight from the store (`site_data::load_view`).
    // VIA_DATASET=1: the former path, `site_data::load` then `View::build`
    // (then `release_credential_records` unless KEEP_RECORDS is set).
    let via_dataset = std::env::var("VIA_DATASET").is_ok();
    let (mut view, revision, loaded, rss_loaded) = if via_dataset {
        let (data, revision) = site_data::load(&store).unwrap();
        let loaded = start.elapsed();
        let rss_loaded = status_kib("VmRSS");
        (View::build(data).unwrap(), revision, loaded, rss_loaded)
    } else {
        let (view, revision) = site_data::load_view(&store).unwrap();
        (view, revision, start.elapsed(), 0)
    };
    let built = start.elapsed();
    let rss_view = status_kib("VmRSS");
    let hwm_view = status_kib("VmHWM");
    let heap_view = live_heap();
    let lean = via_dataset && std::env::var("KEEP_RECORDS").is_err();
    if lean {
        view.release_credential_records();
    }
    let rss_released = status_kib("VmRSS");
    malloc_trim();
    let rss_trimmed = status_kib("VmRSS");
    let ready = start.elapsed();
    assert_eq!(revision, 1);

    let n: usize = std::env::var("DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let requests = scale::requests(Spec::FULL, n);
    let now = scale::now();
    // The first decision, as a hub would make it right after the build.
    let t = Instant::now();
    let first = decide(&requests[0].request(), &view, now);
    let first_time = t.elapsed();
    let _ = first;

    let mut times = Vec::with_capacity(n);
    let mut by_kind: BTreeMap<Kind, (usize, usize, Vec<Duration>)> = BTreeMap::new();
    for g in &requests {
        let request = g.request();
        let t = Instant::now();
        let d = decide(&request, &view, now);
        let elapsed = t.elapsed();
        times.push(elapsed);
        let e = by_kind.entry(g.kind).or_default();
        e.0 += usize::from(d.granted);
        e.1 += 1;
        e.2.push(elapsed);
    }
    let rss_after = status_kib("VmRSS");
    let hwm_after = status_kib("VmHWM");

    println!(
        "| phase `cold` (fresh process, {}) | |",
        if via_dataset {
            "`load` + `View::build`"
        } else {
            "`load_view`"
        }
    );
    println!("|---|---|");
    println!("| `Store::open` | {} |", ms(opened));
    if via_dataset {
        println!("| + `site_data::load` | {} |", ms(loaded - opened));
        println!("| + `View::build` | {} |", ms(built - loaded));
    } else {
        println!("| + `site_data::load_view` | {} |", ms(built - opened));
    }
    println!("| **cold start to ready** | **{}** |", ms(built));
    println!(
        "| first decision after the build | {:.1} µs |",
        micros(first_time)
    );
    println!(
        "| `VmRSS`: at start / store open / DataSet loaded / View built | {} / {} / {} / {} |",
        mib(rss0),
        mib(rss_open),
        mib(rss_loaded),
        mib(rss_view)
    );
    println!("| `VmHWM` after the build | {} |", mib(hwm_view));
    println!(
        "| live heap (allocated, not freed): store open / View built | {heap_open} / {heap_view} |"
    );
    println!(
        "| `VmRSS` after `release_credential_records` ({}) / then `malloc_trim(0)` | {} / {} |",
        if lean { "done" } else { "skipped" },
        mib(rss_released),
        mib(rss_trimmed)
    );
    println!("| ready with both (total) | {} |", ms(ready));
    println!(
        "| `VmRSS` / `VmHWM` after {n} decisions | {} / {} |",
        mib(rss_after),
        mib(hwm_after)
    );
    println!();

    println!("| requests | granted | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|");
    let granted: usize = by_kind.values().map(|e| e.0).sum();
    println!(
        "| **all {}** | {} | {} |",
        times.len(),
        granted,
        percentiles(&mut times)
    );
    for (kind, (granted, count, mut times)) in by_kind {
        println!(
            "| {kind:?} {count} | {granted} | {} |",
            percentiles(&mut times)
        );
    }

    // Where the memory goes: close the store, then drop the View.
    drop(requests);
    malloc_trim();
    let rss_bench_freed = status_kib("VmRSS");
    let heap_before_close = live_heap();
    store.close().unwrap();
    malloc_trim();
    let rss_closed = status_kib("VmRSS");
    let heap_closed = live_heap();
    drop(view);
    malloc_trim();
    let rss_dropped = status_kib("VmRSS");
    println!();
    println!(
        "| `VmRSS`: requests freed / store closed / View dropped (each after `malloc_trim`) | {} / {} / {} |",
        mib(rss_bench_freed),
        mib(rss_closed),
        mib(rss_dropped)
    );
    println!(
        "| live heap: before closing the store / after / View dropped | {heap_before_close} / {heap_closed} / {} |",
        live_heap()
    );
}

fn percentiles(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "{:.2} µs | {:.2} µs | {:.2} µs | {:.1} µs",
        micros(p(0.5)),
        micros(p(0.99)),
        micros(p(0.999)),
        micros(times[times.len() - 1])
    )
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
