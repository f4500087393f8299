//! Validation of bus names, interface names, member names, error names and
//! object paths, exactly as the D-Bus specification (and libdbus) define them.
//! Every function here is total: any byte string gives Ok or Err, never a panic.

use super::WireError;

/// Maximum length of any name (bus, interface, member, error).
pub const MAX_NAME_LEN: usize = 255;

/// A bus name: unique (`:1.42`) or well-known (`org.example.Foo`).
pub fn validate_bus_name(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}

/// A unique connection name (starts with `:`).
pub fn validate_unique_name(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}

/// A well-known name (valid bus name, not starting with `:`).
pub fn validate_well_known_name(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}

/// An interface name.
pub fn validate_interface(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}

/// An error name (same grammar as an interface name).
pub fn validate_error_name(s: &str) -> Result<(), WireError> {
    validate_interface(s)
}

/// A member (method or signal) name.
pub fn validate_member(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}

/// An object path.
pub fn validate_object_path(s: &str) -> Result<(), WireError> {
    let _ = s;
    todo!()
}
