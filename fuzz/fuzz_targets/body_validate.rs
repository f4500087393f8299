#![no_main]
//! cargo-fuzz target `body_validate`: see `busbar_fuzz::body_validate`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::body_validate(data));
