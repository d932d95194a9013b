#![no_main]
//! See `osdp_fuzz::frame_target` (fuzz/src/frame_target.rs) for the input format and the
//! properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osdp_fuzz::frame_target::run(data));
