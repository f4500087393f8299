//! Private name validators with exactly the acceptance rules dbus-daemon
//! applies to match-rule values (dbus/dbus-marshal-validate.c in libdbus).
//!
//! These are deliberately byte-based: libdbus validates byte strings and only
//! ASCII characters are ever acceptable in names.

/// DBUS_MAXIMUM_NAME_LENGTH: bus, interface and member names.
const MAX_NAME_LENGTH: usize = 255;

/// `[A-Za-z_]`
fn is_initial_name_char(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

/// `[A-Za-z0-9_]`
fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `[A-Za-z_-]`
fn is_initial_bus_name_char(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'-'
}

/// `[A-Za-z0-9_-]`
fn is_bus_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// An object path: `/`, or `/`-separated non-empty `[A-Za-z0-9_]` elements
/// with no trailing slash. No length limit (as in libdbus).
pub(super) fn is_object_path(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    if b.len() == 1 {
        return true;
    }
    b[1..]
        .split(|&c| c == b'/')
        .all(|elem| !elem.is_empty() && elem.iter().all(|&c| is_name_char(c)))
}

/// An interface name: at least two `.`-separated elements, each
/// `[A-Za-z_][A-Za-z0-9_]*`, at most 255 bytes.
pub(super) fn is_interface(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LENGTH {
        return false;
    }
    let mut elements = 0usize;
    for elem in b.split(|&c| c == b'.') {
        match elem.split_first() {
            Some((&first, rest)) if is_initial_name_char(first) => {
                if !rest.iter().all(|&c| is_name_char(c)) {
                    return false;
                }
            }
            _ => return false,
        }
        elements += 1;
    }
    elements >= 2
}

/// A member name: `[A-Za-z_][A-Za-z0-9_]*`, at most 255 bytes.
pub(super) fn is_member(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > MAX_NAME_LENGTH {
        return false;
    }
    match b.split_first() {
        Some((&first, rest)) => {
            is_initial_name_char(first) && rest.iter().all(|&c| is_name_char(c))
        }
        None => false,
    }
}

/// The common bus-name check. `namespace` relaxes the "at least two
/// elements" requirement for well-known names (arg0namespace values).
fn is_bus_name_full(s: &str, namespace: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LENGTH {
        return false;
    }
    if let Some(rest) = b.strip_prefix(b":") {
        // Unique name. libdbus accepts any run of bus-name characters in which
        // every '.' is followed by a bus-name character (so ":" alone, ":1"
        // and ":.1" are all accepted; "::" and ":1." are not).
        let mut i = 0;
        while i < rest.len() {
            let c = rest[i];
            if c == b'.' {
                match rest.get(i + 1) {
                    Some(&n) if is_bus_name_char(n) => i += 1,
                    _ => return false,
                }
            } else if !is_bus_name_char(c) {
                return false;
            }
            i += 1;
        }
        return true;
    }
    let mut elements = 0usize;
    for elem in b.split(|&c| c == b'.') {
        match elem.split_first() {
            Some((&first, rest)) if is_initial_bus_name_char(first) => {
                if !rest.iter().all(|&c| is_bus_name_char(c)) {
                    return false;
                }
            }
            _ => return false,
        }
        elements += 1;
    }
    namespace || elements >= 2
}

/// A unique (`:...`) or well-known (`a.b`) bus name, as `_dbus_validate_bus_name`.
pub(super) fn is_bus_name(s: &str) -> bool {
    is_bus_name_full(s, false)
}

/// A bus-name namespace: like a well-known bus name but a single element is
/// allowed (`_dbus_validate_bus_namespace`).
pub(super) fn is_bus_namespace(s: &str) -> bool {
    is_bus_name_full(s, true)
}
