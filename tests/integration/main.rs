//! busbar's integration tests, one module per subject, all in one test
//! binary. Each of the 34 files used to be a test binary of its own, each
//! linked (with the release profile's thin LTO) against the whole library,
//! which made linking most of the test stage's time. `tests/alloc_steady.rs`
//! stays a binary of its own: its counting global allocator must see only
//! its own test.
//!
//! Run one file's tests with `cargo test --release --test integration
//! splice::` (the module name is the old file name).

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod activation;
mod address_errors;
mod cookie_keyring;
mod dependencies;
mod driver;
mod hostile_messages;
mod io_backend;
mod issue8;
mod launch_helper;
mod limits;
mod log_lines;
mod logging;
mod mac_startup;
mod malformed_input;
mod man_options;
mod peer_groups;
mod policy_differential;
mod readme_commands;
mod reexec;
mod reexec_heldout;
mod reload;
mod replies;
mod responsive;
mod sasl_differential;
mod sasl_scripts;
mod splice;
mod startup;
mod state_format;
mod stats;
mod transport;
mod user_database;
mod user_quota;
mod wire_vectors;
mod zbus_client;
