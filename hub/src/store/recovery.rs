//! Opening a database that cannot be opened: move it aside, start fresh,
//! salvage the outbox.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::outbox::{self, Salvaged};
use super::{sibling, OpenProblem, OpenReport, Result, Store, StoreConfig, StoreError, FORMAT};

/// What [`Store::open`] did with a database it could not open. The caller
/// raises an alarm event and asks the cloud for a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Why the database could not be opened (sled's error or the store's
    /// finding; never record contents).
    pub cause: String,
    /// Where the old files are now (`<path>.corrupt-<UTC time>`), kept for
    /// inspection; nothing deletes them.
    pub moved_to: PathBuf,
    /// Outbox events copied from the old database into the new one, with
    /// their sequence numbers.
    pub salvaged_events: u64,
    /// Why nothing could be salvaged (`None`: salvage worked, possibly
    /// finding no event).
    pub salvage_error: Option<String>,
    /// The outbox's numbering continues the old one (salvage worked). When
    /// false, numbering restarts at the wall clock in microseconds since
    /// 1970 (best effort: above any number the old store could have reached
    /// if the clock is right); the sync layer should also call
    /// [`Outbox::raise_next_seq`](super::Outbox::raise_next_seq) with what
    /// the cloud has seen.
    pub seq_continuity: bool,
}

/// [`Store::open`]: a plain open, or recovery when the database is broken.
pub(super) fn open_or_recover(config: StoreConfig) -> Result<(Store, OpenReport)> {
    // A process that just closed the database (or just died) may hold its
    // lock for a moment longer: sled's I/O threads finish first.
    let deadline = Instant::now() + config.lock_timeout;
    let mut first = Store::open_plain(&config);
    while matches!(first, Err(OpenProblem::Locked)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        first = Store::open_plain(&config);
    }
    match first {
        Ok(opened) => Ok(opened),
        Err(OpenProblem::Locked) => Err(StoreError::Locked { path: config.path }),
        Err(OpenProblem::Fatal(e)) => Err(e),
        Err(OpenProblem::Broken(cause)) => recover(config, cause),
    }
}

fn recover(config: StoreConfig, cause: String) -> Result<(Store, OpenReport)> {
    tracing::error!(
        path = %config.path.display(),
        %cause,
        "store: cannot open the database; moving it aside and starting a fresh one"
    );
    let moved_to = free_name(&config.path);
    std::fs::rename(&config.path, &moved_to).map_err(|e| StoreError::Unrecoverable {
        path: config.path.clone(),
        reason: format!("{cause}; moving it to {} failed: {e}", moved_to.display()),
    })?;
    let (store, mut report) = match Store::open_plain(&config) {
        Ok(opened) => opened,
        Err(OpenProblem::Locked) => return Err(StoreError::Locked { path: config.path }),
        Err(OpenProblem::Fatal(e)) => return Err(e),
        Err(OpenProblem::Broken(reason)) => {
            return Err(StoreError::Unrecoverable {
                path: config.path,
                reason: format!("a fresh store fails too: {reason}"),
            })
        }
    };
    let mut recovery = Recovery {
        cause,
        moved_to: moved_to.clone(),
        salvaged_events: 0,
        salvage_error: None,
        seq_continuity: false,
    };
    match salvage(&moved_to, &config) {
        Ok(Salvaged { events, highest }) => {
            store.outbox().restore(&events, highest)?;
            recovery.salvaged_events = events.len() as u64;
            recovery.seq_continuity = true;
        }
        Err(reason) => {
            store.outbox().raise_next_seq(clock_floor())?;
            recovery.salvage_error = Some(reason);
        }
    }
    tracing::warn!(
        moved_to = %moved_to.display(),
        salvaged_events = recovery.salvaged_events,
        salvage_error = recovery.salvage_error.as_deref().unwrap_or("none"),
        "store: fresh store opened; a full resync is needed"
    );
    report.recovery = Some(recovery);
    Ok((store, report))
}

/// Reads the outbox of the old database from a copy (the moved directory
/// stays as it was). When sled cannot open the copy, tries again without its
/// snapshot files (`snap.*`: sled then rebuilds its state from the log), and
/// then also without its `conf` file (sled writes a default one; ours is the
/// default).
fn salvage(old: &Path, config: &StoreConfig) -> Result<Salvaged, String> {
    let copy = sibling(old, ".salvage");
    let result = (|| {
        if copy.exists() {
            std::fs::remove_dir_all(&copy)
                .map_err(|e| format!("clearing {}: {e}", copy.display()))?;
        }
        copy_dir(old, &copy).map_err(|e| format!("copying the old database: {e}"))?;
        let mut failures = Vec::new();
        for repair in [Repair::None, Repair::NoSnapshot, Repair::NoConf] {
            match repair.apply(&copy) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    failures.push(format!("{}: {e}", repair.describe()));
                    break;
                }
            }
            match read_outbox(&copy, config) {
                Ok(found) => return Ok(found),
                Err(e) => failures.push(format!("{}: {e}", repair.describe())),
            }
        }
        Err(failures.join("; "))
    })();
    if copy.exists() {
        if let Err(e) = std::fs::remove_dir_all(&copy) {
            tracing::warn!(path = %copy.display(), error = %e, "store: cannot remove the salvage copy");
        }
    }
    result
}

/// What salvage changes in the copy before opening it again.
#[derive(Debug, Clone, Copy)]
enum Repair {
    None,
    NoSnapshot,
    NoConf,
}

impl Repair {
    fn describe(self) -> &'static str {
        match self {
            Repair::None => "as it was",
            Repair::NoSnapshot => "without snapshot files",
            Repair::NoConf => "without snapshot and conf files",
        }
    }

    /// Applies the repair; false when there was nothing to change.
    fn apply(self, dir: &Path) -> std::io::Result<bool> {
        let prefix = match self {
            Repair::None => return Ok(true),
            Repair::NoSnapshot => "snap.",
            Repair::NoConf => "conf",
        };
        let mut removed = false;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                std::fs::remove_file(entry.path())?;
                removed = true;
            }
        }
        Ok(removed)
    }
}

fn read_outbox(path: &Path, config: &StoreConfig) -> Result<Salvaged, String> {
    let mut config = config.clone();
    config.path = path.to_owned();
    let db = match open_sled(&config) {
        Ok(db) => db,
        Err(OpenProblem::Broken(e)) => return Err(e),
        Err(OpenProblem::Locked) => return Err("locked".into()),
        Err(OpenProblem::Fatal(e)) => return Err(e.to_string()),
    };
    let read = || -> Result<Salvaged, String> {
        let meta = db.open_tree(super::META_TREE).map_err(|e| e.to_string())?;
        // sled opens a garbled log as an empty database: without the store's
        // header there is nothing to trust.
        match meta.get(super::KEY_FORMAT).map_err(|e| e.to_string())? {
            Some(format) if super::be_u32(&format) == Some(FORMAT) => {}
            Some(_) => {
                return Err("store format unknown to this build; its outbox layout is too".into())
            }
            None => return Err("the old database has no store header".into()),
        }
        if !db
            .tree_names()
            .iter()
            .any(|n| n == super::OUTBOX_TREE.as_bytes())
        {
            return Ok(Salvaged {
                events: Vec::new(),
                highest: 0,
            });
        }
        let tree = db
            .open_tree(super::OUTBOX_TREE)
            .map_err(|e| e.to_string())?;
        outbox::read_all(&tree).map_err(|e| e.to_string())
    };
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "sled panicked while reading: {}",
            panic_text(&*panic)
        )),
    }
}

/// Opens sled, turning a panic on damaged files into an error.
pub(super) fn open_sled(config: &StoreConfig) -> Result<sled::Db, OpenProblem> {
    match catch_unwind(AssertUnwindSafe(|| config.sled_config().open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(e)),
        Err(panic) => Err(OpenProblem::Broken(format!(
            "sled panicked while opening: {}",
            panic_text(&*panic)
        ))),
    }
}

/// Sorts a sled error met while opening: locked, not worth moving the files
/// for, or a broken database.
pub(super) fn classify(e: sled::Error) -> OpenProblem {
    if let sled::Error::Io(io) = &e {
        // sled reports a held lock as an `Other` error with this text.
        if io.to_string().contains("could not acquire lock") {
            return OpenProblem::Locked;
        }
        if matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::ReadOnlyFilesystem
                | std::io::ErrorKind::OutOfMemory
        ) {
            return OpenProblem::Fatal(StoreError::Sled(e));
        }
    }
    OpenProblem::Broken(e.to_string())
}

/// Whether a directory holds a database already (sled writes `conf` and `db`
/// on creation).
pub(super) fn looks_like_database(path: &Path) -> bool {
    path.join("conf").exists() || path.join("db").exists()
}

/// `<path>.corrupt-<UTC time>`, with `-N` added if taken.
fn free_name(path: &Path) -> PathBuf {
    let base = sibling(path, &format!(".corrupt-{}", utc_stamp(SystemTime::now())));
    let mut candidate = base.clone();
    let mut n = 1;
    while candidate.exists() {
        candidate = sibling(&base, &format!("-{n}"));
        n += 1;
    }
    candidate
}

/// `YYYYMMDDTHHMMSSZ`.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Microseconds since 1970: where numbering restarts when the old outbox
/// is lost.
fn clock_floor() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
        .max(1)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let t = |s| UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(utc_stamp(t(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(t(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(t(1_795_000_000)), "20261118T110640Z");
    }
}
