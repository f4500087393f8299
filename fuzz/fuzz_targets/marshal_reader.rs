#![no_main]
//! cargo-fuzz target `marshal_reader`: see `busbar_fuzz::marshal_reader`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| busbar_fuzz::marshal_reader(data));
