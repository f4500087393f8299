//! Configuration errors.

use std::fmt;

/// A configuration error. `Display` gives dbus-daemon's message text exactly
/// (what follows "Failed to start message bus: ").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The message.
    pub message: String,
}

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// An error while loading, remembering whether it is dbus's
/// `FileNotFound` (which `ignore_missing` forgives).
#[derive(Clone, Debug)]
pub(crate) struct LoadError {
    pub(crate) error: ConfigError,
    pub(crate) not_found: bool,
}

impl LoadError {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        LoadError {
            error: ConfigError::new(message),
            not_found: false,
        }
    }
}

impl From<LoadError> for ConfigError {
    fn from(e: LoadError) -> Self {
        e.error
    }
}

/// Shorthand for a failed load with `message`.
pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError::msg(message))
}
