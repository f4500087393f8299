//! Configuration errors.

use std::fmt;

/// A configuration error. `Display` gives dbus-daemon's message text exactly
/// (what follows "Failed to start message bus: ").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The message.
    pub message: String,
    /// The file where the problem was found, when known.
    pub file: Option<std::path::PathBuf>,
    /// The line in `file` (1-based), when known.
    pub line: Option<usize>,
}

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            file: None,
            line: None,
        }
    }

    /// The message with its location: dbus-daemon's text, followed by
    /// `(FILE:LINE)` unless the text already names the position.
    pub fn located(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) if !self.message.starts_with("Error in file ") => {
                format!("{} ({}:{l})", self.message, f.display())
            }
            _ => self.message.clone(),
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
