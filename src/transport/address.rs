//! D-Bus server addresses: parsing `transport:key=value,...;...` strings and
//! escaping values, as the specification's "Server Addresses" section says.

use std::fmt;

/// One parsed address entry: a transport name and its key/value pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressEntry {
    /// The transport, e.g. `unix`, `tcp`, `systemd`.
    pub transport: String,
    /// Keys and (unescaped) values in order.
    pub params: Vec<(String, String)>,
}

/// An address that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressError(pub String);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AddressEntry {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a semicolon-separated list of address entries, as libdbus's
/// dbus_parse_address does, with its error texts: an empty entry between
/// two `;` has no colon; each `key=value` element needs a key and a value;
/// a trailing `;` or `,` ends the list. An empty string is no entries.
pub fn parse_addresses(s: &str) -> Result<Vec<AddressEntry>, AddressError> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (entry, after) = rest.split_once(';').unwrap_or((rest, ""));
        rest = after;
        let (transport, mut elems) = entry
            .split_once(':')
            .ok_or_else(|| AddressError("Address does not contain a colon".into()))?;
        let mut params = Vec::new();
        while !elems.is_empty() {
            let (kv, after) = elems.split_once(',').unwrap_or((elems, ""));
            elems = after;
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    AddressError("'=' character not found or has no value following it".into())
                })?;
            params.push((k.to_string(), unescape(v)?));
        }
        out.push(AddressEntry {
            transport: transport.to_string(),
            params,
        });
    }
    Ok(out)
}

/// Bytes an address value may hold unescaped (libdbus's
/// _DBUS_ADDRESS_OPTIONALLY_ESCAPED_BYTE).
fn optionally_escaped(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'/' | b'.' | b'\\' | b'*')
}

fn unescape(v: &str) -> Result<String, AddressError> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(|| {
                AddressError(
                    "In D-Bus address, percent character was not followed by two hex digits".into(),
                )
            })?;
            let byte = std::str::from_utf8(hex)
                .ok()
                .filter(|h| h.bytes().all(|x| x.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    AddressError(
                        "In D-Bus address, percent character was followed by characters \
                         other than hex digits"
                            .into(),
                    )
                })?;
            out.push(byte);
            i += 3;
        } else if optionally_escaped(c) {
            out.push(c);
            i += 1;
        } else {
            // libdbus prints the byte as a C char: one byte, even for the
            // first byte of a UTF-8 sequence.
            return Err(AddressError(format!(
                "In D-Bus address, character '{}' should have been escaped",
                char::from(c)
            )));
        }
    }
    // libdbus keeps values as bytes; busbar's are strings.
    String::from_utf8(out).map_err(|_| AddressError(format!("Address value not UTF-8: \"{v}\"")))
}

/// Escapes an address value: bytes outside `[-0-9A-Za-z_/.\*]` become `%XX`.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for &c in v.as_bytes() {
        if optionally_escaped(c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_unescapes() {
        let a = parse_addresses("unix:path=/tmp/a%3db,guid=00;tcp:host=localhost,port=0").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].get("path"), Some("/tmp/a=b"));
        assert_eq!(a[1].transport, "tcp");
        assert!(parse_addresses("nocolon").is_err());
        assert!(parse_addresses("unix:path").is_err());
        assert!(parse_addresses("unix:path=%zz").is_err());
    }

    /// libdbus's texts, checked against dbus-daemon --address=...
    #[test]
    fn errors_are_libdbus_ones() {
        let err = |a: &str| parse_addresses(a).unwrap_err().0;
        assert_eq!(err("nocolon"), "Address does not contain a colon");
        assert_eq!(err(";"), "Address does not contain a colon");
        assert_eq!(
            err("unix:path=/tmp/q;;"),
            "Address does not contain a colon"
        );
        let eq = "'=' character not found or has no value following it";
        for a in ["unix:path", "unix:=x", "unix:path=", "unix:,path=/tmp/z"] {
            assert_eq!(err(a), eq, "{a}");
        }
        assert_eq!(
            err("unix:path=/tmp/a(b"),
            "In D-Bus address, character '(' should have been escaped"
        );
        assert_eq!(
            err("unix:path=/tmp/v=w"),
            "In D-Bus address, character '=' should have been escaped"
        );
        assert_eq!(
            err("unix:path=/tmp/a%2"),
            "In D-Bus address, percent character was not followed by two hex digits"
        );
        assert_eq!(
            err("unix:path=/tmp/a%zz"),
            "In D-Bus address, percent character was followed by characters other than hex digits"
        );
        for ok in ["unix:path=/tmp/x,", "unix:path=/tmp/q;", ":path=/x", ""] {
            assert!(parse_addresses(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse_addresses("unix:path=/tmp/x,").unwrap()[0].get("path"),
            Some("/tmp/x")
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape("/tmp/dbus=daemon=test.x"),
            "/tmp/dbus%3ddaemon%3dtest.x"
        );
    }
}
