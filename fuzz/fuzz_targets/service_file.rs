#![no_main]
//! cargo-fuzz target `service_file`: see `busbar_fuzz::service_file`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::service_file(data));
