//! Validation of bus names, interface names, member names, error names and
//! object paths, exactly as the D-Bus specification (and libdbus) define them.
//! Every function here is total: any byte string gives Ok or Err, never a panic.
//!
//! The rules follow libdbus (`dbus-marshal-validate.c`) byte for byte,
//! including its quirks: unique names are only checked for their character
//! set and for empty elements after the first, so `:` and `:1` are valid,
//! and well-known bus name elements may start with `-` (but not a digit).

use super::WireError;

/// Maximum length of any name (bus, interface, member, error).
pub const MAX_NAME_LEN: usize = 255;

/// Character classes, one bit each, looked up per byte (the header parse
/// checks every name of every message).
const NAME: u8 = 1;
const INITIAL_NAME: u8 = 2;
const BUS: u8 = 4;
const INITIAL_BUS: u8 = 8;

const fn class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic();
        let digit = b.is_ascii_digit();
        let mut k = 0;
        if alpha || digit || b == b'_' {
            k |= NAME | BUS;
        }
        if alpha || b == b'_' {
            k |= INITIAL_NAME | INITIAL_BUS;
        }
        if b == b'-' {
            k |= BUS | INITIAL_BUS;
        }
        t[c] = k;
        c += 1;
    }
    t
}

static CLASS: [u8; 256] = class_table();

fn is(c: u8, class: u8) -> bool {
    CLASS[c as usize] & class != 0
}

/// `[A-Za-z_]`: may start an interface/member element.
fn is_initial_name_char(c: u8) -> bool {
    is(c, INITIAL_NAME)
}

/// `[A-Za-z0-9_]`: may appear in an interface/member/path element.
fn is_name_char(c: u8) -> bool {
    is(c, NAME)
}

/// `[A-Za-z_-]`: may start a well-known bus name element.
fn is_initial_bus_char(c: u8) -> bool {
    is(c, INITIAL_BUS)
}

/// `[A-Za-z0-9_-]`: may appear in a bus name element.
fn is_bus_char(c: u8) -> bool {
    is(c, BUS)
}

fn check_len(s: &[u8]) -> Result<(), WireError> {
    if s.is_empty() {
        return Err(WireError("empty name"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(WireError("name longer than 255 bytes"));
    }
    Ok(())
}

/// Checks a dotted name: elements separated by single dots, each starting
/// with a byte accepted by `initial` and continuing with bytes accepted by
/// `rest`. Returns whether at least one dot was seen.
fn dotted(
    s: &[u8],
    initial: impl Fn(u8) -> bool,
    rest: impl Fn(u8) -> bool,
) -> Result<bool, WireError> {
    let mut saw_dot = false;
    let mut at_start = true;
    for &c in s {
        if c == b'.' {
            if at_start {
                return Err(WireError("empty element in name"));
            }
            saw_dot = true;
            at_start = true;
        } else if at_start {
            if !initial(c) {
                return Err(WireError("invalid first character in name element"));
            }
            at_start = false;
        } else if !rest(c) {
            return Err(WireError("invalid character in name"));
        }
    }
    if at_start {
        // Empty input (checked by callers) or a trailing dot.
        return Err(WireError("empty element in name"));
    }
    Ok(saw_dot)
}

/// Checks the part of a unique name after the `:`, as libdbus does: only
/// bus-name characters, and every dot must be followed by one (so no empty
/// element after the first and no trailing dot). The part may be empty.
fn unique_tail(s: &[u8]) -> Result<(), WireError> {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'.' {
            match s.get(i + 1) {
                Some(&n) if is_bus_char(n) => i += 1,
                _ => return Err(WireError("empty element in unique name")),
            }
        } else if !is_bus_char(c) {
            return Err(WireError("invalid character in unique name"));
        }
        i += 1;
    }
    Ok(())
}

fn bus_name_full(s: &[u8], is_namespace: bool) -> Result<(), WireError> {
    check_len(s)?;
    if let Some(tail) = s.strip_prefix(b":") {
        return unique_tail(tail);
    }
    let saw_dot = dotted(s, is_initial_bus_char, is_bus_char)?;
    if !saw_dot && !is_namespace {
        return Err(WireError("bus name needs at least two elements"));
    }
    Ok(())
}

/// A bus name: unique (`:1.42`) or well-known (`org.example.Foo`).
pub fn validate_bus_name(s: &str) -> Result<(), WireError> {
    bus_name_bytes(s.as_bytes())
}

/// [`validate_bus_name`] on bytes. Every name grammar here accepts ASCII
/// only, so bytes these `*_bytes` checks accept are valid UTF-8 as well:
/// the header parse needs no separate UTF-8 check for the fields they
/// cover.
pub fn bus_name_bytes(s: &[u8]) -> Result<(), WireError> {
    bus_name_full(s, false)
}

/// A bus name namespace as used by `arg0namespace` in match rules: like a
/// bus name, but a single element (`org`) is also accepted.
pub fn validate_bus_namespace(s: &str) -> Result<(), WireError> {
    bus_name_full(s.as_bytes(), true)
}

/// A unique connection name (starts with `:`).
pub fn validate_unique_name(s: &str) -> Result<(), WireError> {
    if !s.starts_with(':') {
        return Err(WireError("unique name must start with ':'"));
    }
    validate_bus_name(s)
}

/// A well-known name (valid bus name, not starting with `:`).
pub fn validate_well_known_name(s: &str) -> Result<(), WireError> {
    if s.starts_with(':') {
        return Err(WireError("well-known name must not start with ':'"));
    }
    validate_bus_name(s)
}

/// An interface name.
pub fn validate_interface(s: &str) -> Result<(), WireError> {
    interface_bytes(s.as_bytes())
}

/// [`validate_interface`] on bytes (ASCII only, see [`bus_name_bytes`]).
pub fn interface_bytes(b: &[u8]) -> Result<(), WireError> {
    check_len(b)?;
    if !dotted(b, is_initial_name_char, is_name_char)? {
        return Err(WireError("interface name needs at least two elements"));
    }
    Ok(())
}

/// An error name (same grammar as an interface name).
pub fn validate_error_name(s: &str) -> Result<(), WireError> {
    validate_interface(s)
}

/// A member (method or signal) name.
pub fn validate_member(s: &str) -> Result<(), WireError> {
    member_bytes(s.as_bytes())
}

/// [`validate_member`] on bytes (ASCII only, see [`bus_name_bytes`]).
pub fn member_bytes(b: &[u8]) -> Result<(), WireError> {
    check_len(b)?;
    if !is_initial_name_char(b[0]) {
        return Err(WireError("invalid first character in member name"));
    }
    if !b[1..].iter().all(|&c| is_name_char(c)) {
        return Err(WireError("invalid character in member name"));
    }
    Ok(())
}

/// An object path: `/`, or `/`-separated non-empty elements of
/// `[A-Za-z0-9_]` with a leading `/` and no trailing `/`. There is no length
/// limit beyond the message size (as in libdbus).
pub fn validate_object_path(s: &str) -> Result<(), WireError> {
    object_path_bytes(s.as_bytes())
}

/// [`validate_object_path`] on bytes (ASCII only, see [`bus_name_bytes`]).
pub fn object_path_bytes(b: &[u8]) -> Result<(), WireError> {
    let Some(rest) = b.strip_prefix(b"/") else {
        return Err(WireError("object path must start with '/'"));
    };
    if rest.is_empty() {
        return Ok(());
    }
    for elem in rest.split(|&c| c == b'/') {
        if elem.is_empty() {
            return Err(WireError("empty element in object path"));
        }
        if !elem.iter().all(|&c| is_name_char(c)) {
            return Err(WireError("invalid character in object path"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup table agrees with the classes' definitions.
    #[test]
    fn class_table_matches_the_grammar() {
        for b in 0..=255u8 {
            let alnum = b.is_ascii_alphanumeric();
            assert_eq!(is_name_char(b), alnum || b == b'_', "{b:#x}");
            assert_eq!(
                is_initial_name_char(b),
                b.is_ascii_alphabetic() || b == b'_'
            );
            assert_eq!(is_bus_char(b), alnum || b == b'_' || b == b'-');
            assert_eq!(
                is_initial_bus_char(b),
                b.is_ascii_alphabetic() || b == b'_' || b == b'-'
            );
        }
    }

    /// The header parse relies on this for skipping its UTF-8 check
    /// (src/wire/parsed.rs): no grammar accepts a byte from 0x80, wherever
    /// it stands in an otherwise valid name.
    #[test]
    fn no_grammar_admits_non_ascii() {
        type Check = fn(&[u8]) -> Result<(), WireError>;
        let cases: [(Check, &str); 5] = [
            (object_path_bytes, "/ab/cd"),
            (interface_bytes, "ab.cd"),
            (member_bytes, "abcd"),
            (bus_name_bytes, "ab.cd"),
            (bus_name_bytes, ":1.23"),
        ];
        for (check, valid) in cases {
            assert!(check(valid.as_bytes()).is_ok(), "{valid}");
            for i in 0..=valid.len() {
                for b in 0x80..=0xffu8 {
                    // In place of byte i, and inserted before it.
                    let mut replaced = valid.as_bytes().to_vec();
                    if i < replaced.len() {
                        replaced[i] = b;
                        assert!(check(&replaced).is_err(), "{valid} with {b:#x} at {i}");
                    }
                    let mut inserted = valid.as_bytes().to_vec();
                    inserted.insert(i, b);
                    assert!(check(&inserted).is_err(), "{valid} with {b:#x} before {i}");
                }
            }
        }
    }

    // Vectors from libdbus test/internals/dbus-marshal-validate-util.c plus our own.
    #[test]
    fn paths() {
        for p in ["/", "/foo/bar", "/foo", "/foo/bar/baz", "/_0/a_9/Z"] {
            assert!(validate_object_path(p).is_ok(), "{p}");
        }
        for p in [
            "bar",
            "bar/baz",
            "/foo/bar/",
            "/foo/",
            "foo/",
            "boo//blah",
            "//",
            "///",
            "foo///blah/",
            "Hello World",
            "",
            "   ",
            "foo bar",
            "/foo-bar",
            "/a.b",
            "/é",
            "/a\0b",
        ] {
            assert!(validate_object_path(p).is_err(), "{p:?}");
        }
        let long = "/a".repeat(1000);
        assert!(validate_object_path(&long).is_ok());
    }

    #[test]
    fn interfaces() {
        for i in [
            "org.freedesktop.Foo",
            "Bar.Baz",
            "Blah.Blah.Blah.Blah.Blah",
            "a.b",
            "a.b.c.d.e.f.g",
            "a0.b1.c2.d3.e4.f5.g6",
            "abc123.foo27",
            "_a._b",
        ] {
            assert!(validate_interface(i).is_ok(), "{i}");
            assert!(validate_error_name(i).is_ok(), "{i}");
        }
        for i in [
            ".",
            "",
            "..",
            ".Foo.Bar",
            "..Foo.Bar",
            "Foo.Bar.",
            "Foo.Bar..",
            "Foo",
            "9foo.bar.baz",
            "foo.bar..baz",
            "foo.bar...baz",
            "foo.bar.b..blah",
            ":",
            ":0-1",
            "10",
            ":11.34324",
            "0.0.0",
            "0..0",
            "foo.Bar.%",
            "foo.Bar!!",
            "!Foo.bar.bz",
            "foo.$.blah",
            "   ",
            "foo bar",
            "foo.bar-baz",
            "foo.9bar",
            "foo.-bar",
            "fö.bar",
        ] {
            assert!(validate_interface(i).is_err(), "{i:?}");
            assert!(validate_error_name(i).is_err(), "{i:?}");
        }
    }

    #[test]
    fn name_length_limit() {
        let ok = format!("a.{}", "b".repeat(253));
        assert_eq!(ok.len(), 255);
        assert!(validate_interface(&ok).is_ok());
        assert!(validate_bus_name(&ok).is_ok());
        let bad = format!("a.{}", "b".repeat(254));
        assert!(validate_interface(&bad).is_err());
        assert!(validate_bus_name(&bad).is_err());
        assert!(validate_member(&"m".repeat(255)).is_ok());
        assert!(validate_member(&"m".repeat(256)).is_err());
        let uniq = format!(":1.{}", "2".repeat(253));
        assert!(validate_unique_name(&uniq).is_err());
        assert!(validate_unique_name(&uniq[..255]).is_ok());
    }

    #[test]
    fn unique_names() {
        for n in [
            ":0",
            ":a",
            ":",
            ":.a",
            ":.1",
            ":0.1",
            ":000.2222",
            ":.blah",
            ":abce.freedesktop.blah",
            ":1.42",
            ":-",
            ":0-10",
        ] {
            assert!(validate_unique_name(n).is_ok(), "{n}");
            assert!(validate_bus_name(n).is_ok(), "{n}");
            assert!(validate_well_known_name(n).is_err(), "{n}");
        }
        for n in [
            ":!",
            ":blah.",
            ":blah..org",
            ":blah.org..",
            ":..blah.org",
            "",
            "   ",
            "foo bar",
            "::1",
            ":1.2 ",
            "org.foo",
        ] {
            assert!(validate_unique_name(n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn well_known_names() {
        for n in [
            "org.freedesktop.DBus",
            "a.b",
            "com.example.foo-bar",
            "-a.-b",
            "_a.b9",
            "org.x_y-z.Q",
        ] {
            assert!(validate_well_known_name(n).is_ok(), "{n}");
            assert!(validate_bus_name(n).is_ok(), "{n}");
            assert!(validate_unique_name(n).is_err(), "{n}");
        }
        for n in [
            "org", "", ".org.foo", "org.foo.", "org..foo", "org.9foo", "9org.foo", "org.foo!",
            "org.fo o", "org.föo", ".",
        ] {
            assert!(validate_well_known_name(n).is_err(), "{n:?}");
            assert!(validate_bus_name(n).is_err(), "{n:?}");
        }
        assert!(validate_bus_namespace("org").is_ok());
        assert!(validate_bus_namespace("org.freedesktop").is_ok());
        assert!(validate_bus_namespace("org.").is_err());
        assert!(validate_bus_namespace("").is_err());
    }

    #[test]
    fn members() {
        for m in ["Hello", "Bar", "foobar", "_foobar", "foo89", "_", "a"] {
            assert!(validate_member(m).is_ok(), "{m}");
        }
        for m in [
            "9Hello", "10", "1", "foo-bar", "blah.org", ".blah", "blah.", "Hello.", "!foo", "",
            "   ", "foo bar", "fé",
        ] {
            assert!(validate_member(m).is_err(), "{m:?}");
        }
    }
}
