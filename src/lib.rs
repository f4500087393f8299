//! busbar: a D-Bus message bus daemon, drop-in compatible with dbus-daemon.
//!
//! The binary lives in `main.rs`; this library exposes the layers so that
//! integration tests, benchmarks and fuzzers can reach them.

pub mod broker;
pub mod transport;
pub mod wire;
