//! busbar's configuration crate: busconfig XML (with includes) -> typed
//! [`Config`] -> compiled [`Policy`]; and `.service` file parsing.
//!
//! Pure: no sockets, no unsafe. Behaviour follows dbus-daemon 1.14
//! (bus/config-parser.c, bus/policy.c, bus/desktop-file.c).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;

mod config;
mod error;
mod limits;
mod loader;
mod policy;
pub mod rules;
pub mod service;
mod shell;
mod sys;
mod xml;

pub use config::Config;
pub use error::ConfigError;
pub use limits::{Limits, NEVER};
pub use policy::{ConnectionPolicy, Policy, PolicyRules};
pub use service::{load_service_file, parse_service_file, ServiceError, ServiceFile};
pub use shell::{split_exec, ShellError};
pub use sys::{process_uid, set_selinux, standard_system_servicedirs, LoadOptions, NameResolver};

/// Our default session bus configuration (the equivalent of dbus-daemon's
/// stock session.conf). Load it with [`load_str`] and a path such as
/// "/usr/share/dbus-1/session.conf" so its relative includes resolve there.
pub const SESSION_CONF: &str = include_str!("../conf/session.conf");

/// Our default system bus configuration (the equivalent of dbus-daemon's
/// stock system.conf); load it like [`SESSION_CONF`] with a path such as
/// "/usr/share/dbus-1/system.conf".
pub const SYSTEM_CONF: &str = include_str!("../conf/system.conf");

/// Loads a configuration file and everything it includes.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    load_file_with(path, &LoadOptions::from_env())
}

/// Loads a configuration from text; `path` names it (for relative includes and errors).
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    load_str_with(text, path, &LoadOptions::from_env())
}

/// [`load_file`] with explicit environment and name resolution.
pub fn load_file_with(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    loader::Loader::new(opts).load_top_file(path)
}

/// [`load_str`] with explicit environment and name resolution.
pub fn load_str_with(text: &str, path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    loader::Loader::new(opts).load_top_str(text, path)
}

/// Message type codes as on the wire.
pub mod msg_type {
    /// method call
    pub const METHOD_CALL: u8 = 1;
    /// method return
    pub const METHOD_RETURN: u8 = 2;
    /// error
    pub const ERROR: u8 = 3;
    /// signal
    pub const SIGNAL: u8 = 4;
}

/// The facts about a message that policy rules look at.
/// Messages with a reply serial (and method returns and errors, which always
/// have one) are treated as replies.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageFacts<'a> {
    /// wire type code, see [`msg_type`]
    pub msg_type: u8,
    /// PATH
    pub path: Option<&'a str>,
    /// INTERFACE
    pub interface: Option<&'a str>,
    /// MEMBER
    pub member: Option<&'a str>,
    /// ERROR_NAME
    pub error_name: Option<&'a str>,
    /// DESTINATION header (None: a broadcast signal)
    pub destination: Option<&'a str>,
    /// number of unix fds attached
    pub unix_fds: u32,
    /// REPLY_SERIAL header. dbus-daemon applies the requested_reply
    /// semantics to any message carrying one, whatever its type (a signal
    /// or method call with a reply serial counts as an unrequested reply).
    pub reply_serial: Option<u32>,
}

/// The outcome of a send/receive check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the message may pass.
    pub allowed: bool,
    /// How many rules matched (for dbus-daemon's AccessDenied text).
    pub matched_rules: u32,
    /// The deciding rule had `log="true"`.
    pub log: bool,
}
