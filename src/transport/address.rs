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

/// Parses a semicolon-separated list of address entries.
pub fn parse_addresses(s: &str) -> Result<Vec<AddressEntry>, AddressError> {
    let mut out = Vec::new();
    for part in s.split(';') {
        if part.is_empty() {
            continue;
        }
        let (transport, rest) = part
            .split_once(':')
            .ok_or_else(|| AddressError(format!("Address does not contain a colon: \"{part}\"")))?;
        if transport.is_empty() {
            return Err(AddressError(format!(
                "Address has no transport: \"{part}\""
            )));
        }
        let mut params = Vec::new();
        for kv in rest.split(',') {
            if kv.is_empty() {
                continue;
            }
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                AddressError(format!(
                    "Address element \"{kv}\" does not contain an '=' sign"
                ))
            })?;
            if k.is_empty() {
                return Err(AddressError(format!("Address element \"{kv}\" has no key")));
            }
            params.push((k.to_string(), unescape(v)?));
        }
        out.push(AddressEntry {
            transport: transport.to_string(),
            params,
        });
    }
    if out.is_empty() {
        return Err(AddressError("Empty address".into()));
    }
    Ok(out)
}

fn unescape(v: &str) -> Result<String, AddressError> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AddressError(format!("Invalid escape in address value \"{v}\"")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AddressError(format!("Address value not UTF-8: \"{v}\"")))
}

/// Escapes an address value: bytes outside `[-0-9A-Za-z_/.\*]` become `%XX`.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for &c in v.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'/' | b'.' | b'\\' | b'*') {
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

    #[test]
    fn escapes() {
        assert_eq!(
            escape("/tmp/dbus=daemon=test.x"),
            "/tmp/dbus%3ddaemon%3dtest.x"
        );
    }
}
