//! Runs files through a harness without libFuzzer, on a normal build:
//! `cargo run --example replay -- <target> <file-or-dir>...`
//! (with no paths: the target's seeds and its regressions in
//! `osdp/testdata/fuzz-regressions/<target>-*.bin`). Every input is run,
//! failures are listed at the end and make the exit status 1.

use std::path::{Path, PathBuf};

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else {
        eprintln!(
            "usage: replay <target> [file-or-dir...]; targets: {:?}",
            osdp_fuzz::replay::TARGETS
        );
        std::process::exit(2);
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(root.join("seeds").join(&target));
        let reg = root.join("../osdp/testdata/fuzz-regressions");
        if let Ok(rd) = std::fs::read_dir(&reg) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{target}-")) {
                    paths.push(e.path());
                }
            }
        }
    }
    let mut all = Vec::new();
    for p in &paths {
        files(p, &mut all);
    }
    let mut failed = Vec::new();
    for f in &all {
        let bytes = std::fs::read(f).unwrap_or_default();
        eprintln!("{target}: {}", f.display());
        let result = std::panic::catch_unwind(|| osdp_fuzz::replay::run_target(&target, &bytes));
        if result.is_err() {
            failed.push(f.display().to_string());
        }
    }
    println!("{target}: {} inputs, {} failed", all.len(), failed.len());
    for f in &failed {
        println!("  FAILED {f}");
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
