#![no_main]
//! See `osdp_fuzz::payload_target` (fuzz/src/payload_target.rs) for the input format and the
//! properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osdp_fuzz::payload_target::run(data));
