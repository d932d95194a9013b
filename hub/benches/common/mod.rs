// Each bench uses a part of this module.
#![allow(dead_code)]

//! What the store benchmarks share: a credential-like record of about 100
//! bytes and a loader.

use hub::store::{SnapshotInfo, Store};
use serde::{Deserialize, Serialize};

/// Records in the big data set.
pub const RECORDS: u64 = 1_000_000;

/// A credential-like record: postcard makes it about 100 bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub card: u64,
    pub facility: u16,
    pub holder: u64,
    pub pin_hash: [u8; 32],
    pub valid_from: u64,
    pub valid_until: u64,
    pub doors: Vec<u16>,
    pub flags: u8,
    pub name: String,
}

pub fn credential(i: u64) -> Credential {
    Credential {
        card: 0x1000_0000 + i * 7,
        facility: (i % 500) as u16,
        holder: i,
        pin_hash: [(i % 251) as u8; 32],
        valid_from: 1_700_000_000 + i,
        valid_until: 1_900_000_000 + i,
        doors: (0..8).map(|d| (d * 3 + i % 5) as u16).collect(),
        flags: (i % 4) as u8,
        name: format!("holder-{i:012}-{:019}", i * 31),
    }
}

/// The record's key: its card number, big-endian.
pub fn key(i: u64) -> [u8; 8] {
    (0x1000_0000 + i * 7).to_be_bytes()
}

/// Loads `n` credentials as one snapshot at `revision`.
pub fn load(store: &Store, n: u64, revision: u64) -> SnapshotInfo {
    let mut w = store.begin_snapshot(revision).unwrap();
    for i in 0..n {
        w.put("credentials", key(i), &credential(i)).unwrap();
    }
    w.commit().unwrap()
}

/// Resident memory of this process in KiB (`VmRSS`), 0 when unknown.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), 0 when unknown.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// KiB as MiB for a report.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Returns the free heap to the OS (glibc).
#[allow(unsafe_code)]
pub fn malloc_trim() {
    // SAFETY: malloc_trim only releases free heap memory; no pointer is
    // involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A benchmark that runs its phases in fresh processes (cold starts, RSS)
/// re-executes itself as `<exe> phase NAME PATH`. Returns `(NAME, PATH)` when
/// this process is such a phase.
pub fn phase_arg() -> Option<(String, std::path::PathBuf)> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "phase")?;
    Some((args.get(i + 1)?.clone(), args.get(i + 2)?.into()))
}

/// Runs phase `name` on `path` in a fresh process and waits for it.
pub fn run_phase(name: &str, path: &std::path::Path) {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(&exe)
        .args(["phase", name])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "phase {name}: {status}");
}

/// Drops the OS page cache (needs root) so the next phase starts cold.
pub fn drop_os_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}
