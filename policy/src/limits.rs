//! Bus limits and the `<limit>` element.

use crate::error::{fail, LoadError};

/// Value of [`Limits::reply_timeout`] meaning "never time out" (dbus-daemon's -1).
pub const NEVER: u64 = u64::MAX;

/// dbus-daemon's default number of fds per message.
const DEFAULT_MESSAGE_UNIX_FDS: u64 = 16;
const MEGABYTE: u64 = 1024 * 1024;

/// Limits, with dbus-daemon's built-in defaults (bus/config-parser.c) unless a
/// `<limit>` overrides them. Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// max_incoming_bytes
    pub max_incoming_bytes: u64,
    /// max_incoming_unix_fds
    pub max_incoming_unix_fds: u64,
    /// max_outgoing_bytes
    pub max_outgoing_bytes: u64,
    /// max_outgoing_unix_fds
    pub max_outgoing_unix_fds: u64,
    /// max_message_size
    pub max_message_size: u64,
    /// max_message_unix_fds
    pub max_message_unix_fds: u64,
    /// service_start_timeout (ms)
    pub service_start_timeout: u64,
    /// auth_timeout (ms)
    pub auth_timeout: u64,
    /// pending_fd_timeout (ms)
    pub pending_fd_timeout: u64,
    /// max_completed_connections
    pub max_completed_connections: u64,
    /// max_incomplete_connections
    pub max_incomplete_connections: u64,
    /// max_connections_per_user
    pub max_connections_per_user: u64,
    /// max_pending_service_starts
    pub max_pending_service_starts: u64,
    /// max_names_per_connection
    pub max_names_per_connection: u64,
    /// max_match_rules_per_connection
    pub max_match_rules_per_connection: u64,
    /// max_replies_per_connection
    pub max_replies_per_connection: u64,
    /// reply_timeout (ms); [`NEVER`] (the default) means no timeout.
    pub reply_timeout: u64,
    /// max_containers
    pub max_containers: u64,
    /// max_containers_per_user
    pub max_containers_per_user: u64,
    /// max_container_metadata_bytes
    pub max_container_metadata_bytes: u64,
    /// max_connections_per_container
    pub max_connections_per_container: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_incoming_bytes: 127 * MEGABYTE,
            max_incoming_unix_fds: DEFAULT_MESSAGE_UNIX_FDS * 4,
            max_outgoing_bytes: 127 * MEGABYTE,
            max_outgoing_unix_fds: DEFAULT_MESSAGE_UNIX_FDS * 4,
            max_message_size: 32 * MEGABYTE,
            max_message_unix_fds: DEFAULT_MESSAGE_UNIX_FDS,
            service_start_timeout: 25_000,
            auth_timeout: 30_000,
            pending_fd_timeout: 150_000,
            max_completed_connections: 2048,
            max_incomplete_connections: 64,
            max_connections_per_user: 256,
            max_pending_service_starts: 512,
            max_names_per_connection: 512,
            max_match_rules_per_connection: 512,
            max_replies_per_connection: 128,
            reply_timeout: NEVER,
            max_containers: 512,
            max_containers_per_user: 16,
            max_container_metadata_bytes: 4096,
            max_connections_per_container: 8,
        }
    }
}

impl Limits {
    /// Sets the limit called `name` (as spelled in `<limit name=..>`),
    /// with dbus-daemon's checks and error texts.
    pub(crate) fn set(&mut self, name: &str, value: i64) -> Result<(), LoadError> {
        // (field, must fit in a C int)
        let (slot, must_be_int) = match name {
            "max_incoming_bytes" => (&mut self.max_incoming_bytes, false),
            "max_incoming_unix_fds" => (&mut self.max_incoming_unix_fds, false),
            "max_outgoing_bytes" => (&mut self.max_outgoing_bytes, false),
            "max_outgoing_unix_fds" => (&mut self.max_outgoing_unix_fds, false),
            "max_message_size" => (&mut self.max_message_size, false),
            "max_message_unix_fds" => (&mut self.max_message_unix_fds, false),
            "service_start_timeout" => (&mut self.service_start_timeout, true),
            "auth_timeout" => (&mut self.auth_timeout, true),
            "pending_fd_timeout" => (&mut self.pending_fd_timeout, true),
            "reply_timeout" => (&mut self.reply_timeout, true),
            "max_completed_connections" => (&mut self.max_completed_connections, true),
            "max_incomplete_connections" => (&mut self.max_incomplete_connections, true),
            "max_connections_per_user" => (&mut self.max_connections_per_user, true),
            "max_pending_service_starts" => (&mut self.max_pending_service_starts, true),
            "max_names_per_connection" => (&mut self.max_names_per_connection, true),
            "max_match_rules_per_connection" => (&mut self.max_match_rules_per_connection, true),
            "max_replies_per_connection" => (&mut self.max_replies_per_connection, true),
            "max_containers" => (&mut self.max_containers, true),
            "max_containers_per_user" => (&mut self.max_containers_per_user, true),
            "max_container_metadata_bytes" => (&mut self.max_container_metadata_bytes, true),
            "max_connections_per_container" => (&mut self.max_connections_per_container, true),
            _ => return fail(format!("There is no limit called \"{name}\"")),
        };
        if value < 0 {
            return fail(format!("<limit name=\"{name}\"> must be a positive number"));
        }
        if must_be_int && value > i64::from(i32::MAX) {
            return fail(format!("<limit name=\"{name}\"> value is too large"));
        }
        *slot = value.unsigned_abs();
        Ok(())
    }
}

/// C `strtol(s, &end, 0)` as `_dbus_string_parse_int` uses it: leading
/// white space, optional sign, decimal / `0x` hex / leading-`0` octal;
/// trailing text is ignored. None when no digits or on overflow.
pub(crate) fn parse_c_long(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut radix = 10;
    if b.get(i) == Some(&b'0') {
        if matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            radix = 16;
            i += 2;
        } else {
            radix = 8;
        }
    }
    let start = i;
    let mut v: i128 = 0;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(radix)) {
        v = v * i128::from(radix) + i128::from(d);
        if v > i128::from(i64::MAX) + 1 {
            return None;
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol() {
        assert_eq!(parse_c_long("42"), Some(42));
        assert_eq!(parse_c_long("  -7xyz"), Some(-7));
        assert_eq!(parse_c_long("0x10"), Some(16));
        assert_eq!(parse_c_long("010"), Some(8));
        assert_eq!(parse_c_long("0"), Some(0));
        assert_eq!(parse_c_long(""), None);
        assert_eq!(parse_c_long("abc"), None);
        assert_eq!(parse_c_long("99999999999999999999"), None);
        assert_eq!(parse_c_long("-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn set_limits() {
        let mut l = Limits::default();
        l.set("max_names_per_connection", 5).unwrap();
        assert_eq!(l.max_names_per_connection, 5);
        assert!(l.set("max_bees", 1).is_err());
        assert!(l.set("max_names_per_connection", -1).is_err());
        assert!(l.set("max_names_per_connection", 1 << 40).is_err());
        l.set("max_incoming_bytes", 1 << 40).unwrap();
        assert_eq!(l.reply_timeout, NEVER);
    }
}
