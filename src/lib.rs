//! busbar: a D-Bus message bus daemon, drop-in compatible with dbus-daemon.
//!
//! The binary lives in `main.rs`; this library exposes the layers so that
//! integration tests, benchmarks and fuzzers can reach them.

pub mod activation;
pub mod broker;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod driver;
pub mod errtext;
pub mod guid;
pub mod log;
pub mod mac;
pub mod notify;
pub mod pidfile;
pub mod printfd;
pub mod ready;
pub mod reexec;
pub mod reload;
pub mod statefile;
pub mod syslog;
pub mod transport;
pub mod userdb;
pub mod wire;
pub mod wiring;
