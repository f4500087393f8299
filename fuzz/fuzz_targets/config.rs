#![no_main]
//! cargo-fuzz target `config`: see `busbar_fuzz::config`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::config(data));
