//! Store benchmarks (criterion): a 1,000,000-record snapshot loaded
//! atomically, opening a store that holds it, random lookups in it, and
//! outbox appends with each durability mode.
//!
//! Run: `cargo bench -p hub --bench store`. Memory and latency figures:
//! `cargo bench -p hub --bench store_figures`. Results: docs/benchmarks.md.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{credential, key, load, Credential, RECORDS};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hub::store::{Durability, Store, StoreConfig};

fn snapshot_1m(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().unwrap();
    let (store, _) = Store::open(StoreConfig::new(dir.path().join("s"))).unwrap();
    let mut revision = 0;
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(RECORDS));
    // Each iteration replaces the previous 1M-record generation by a new
    // one: write, flush, flip, flush, drop the old trees.
    group.bench_function("snapshot_1m_records", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                revision += 1;
                black_box(load(&store, RECORDS, revision));
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn open_and_get_1m(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("s");
    {
        let (store, _) = Store::open(StoreConfig::new(&path)).unwrap();
        load(&store, RECORDS, 1);
        store.close().unwrap();
    }
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function("open_1m_records", |b| {
        b.iter(|| {
            let (store, report) = Store::open(StoreConfig::new(&path)).unwrap();
            assert_eq!(store.revision(), Some(1));
            assert!(report.recovery.is_none());
            store.close().unwrap();
        })
    });
    group.finish();

    let (store, _) = Store::open(StoreConfig::new(&path)).unwrap();
    let mut group = c.benchmark_group("store");
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    group.bench_function("get_random_of_1m", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let cred: Credential = store.get("credentials", key(x % RECORDS)).unwrap().unwrap();
            black_box(cred)
        })
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let event = postcard::to_allocvec(&credential(42)).unwrap();
    let mut group = c.benchmark_group("outbox_append");
    group.throughput(Throughput::Elements(1));
    for (name, durability) in [
        ("group_commit", Durability::GroupCommit),
        ("flush_every_append", Durability::EveryAppend),
    ] {
        let dir = tempfile::TempDir::new().unwrap();
        let mut config = StoreConfig::new(dir.path().join("s"));
        config.durability = durability;
        let (store, _) = Store::open(config).unwrap();
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // Keep the outbox small, as the cloud would.
                    let status = store.outbox().status();
                    if status.depth > 10_000 {
                        store.outbox().ack_through(status.next_seq - 1).unwrap();
                    }
                },
                |()| black_box(store.outbox().append(&event).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot_1m, open_and_get_1m, append);
criterion_main!(benches);
