//! Writes the seed corpora: `cargo run --example gen_seeds` (from `fuzz/`).
//! Each seed is also run through its harness, so a seed that trips an
//! assertion is caught here rather than in the first second of fuzzing.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    osdp_fuzz::seeds::self_check();
    let seeds = osdp_fuzz::seeds::all();
    for (target, name, bytes) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        osdp_fuzz::replay::run_target(target, bytes);
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}
