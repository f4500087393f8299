#![no_main]
//! cargo-fuzz target `header_parse`: see `busbar_fuzz::header_parse`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::header_parse(data));
