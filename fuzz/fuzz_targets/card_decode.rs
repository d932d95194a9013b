#![no_main]
//! See `osdp_fuzz::card_target` (fuzz/src/card_target.rs) for the input format and the
//! properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osdp_fuzz::card_target::run(data));
