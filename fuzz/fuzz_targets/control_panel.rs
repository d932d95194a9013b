#![no_main]
//! See `osdp_fuzz::cp_target` (fuzz/src/cp_target.rs) for the input format and the
//! properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osdp_fuzz::cp_target::run(data));
