#![no_main]
//! cargo-fuzz target `sasl`: see `busbar_fuzz::sasl`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::sasl(data));
