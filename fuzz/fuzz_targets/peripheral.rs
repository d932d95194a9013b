#![no_main]
//! See `osdp_fuzz::pd_target` (fuzz/src/pd_target.rs) for the input format and the
//! properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osdp_fuzz::pd_target::run(data));
