#![no_main]
//! cargo-fuzz target `exec_split`: see `busbar_fuzz::exec_split`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::exec_split(data));
