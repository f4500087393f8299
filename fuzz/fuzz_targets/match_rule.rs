#![no_main]
//! cargo-fuzz target `match_rule`: see `busbar_fuzz::match_rule`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::match_rule(data));
