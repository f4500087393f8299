//! The systemd journal's native protocol, written out: one datagram of
//! `FIELD=value` lines (or `FIELD\n<u64 le length><bytes>\n` for a value
//! with a newline) to /run/systemd/journal/socket.
//!
//! Written by hand rather than with a crate: libsystemd, systemd-journal-
//! logger and tracing-journald all send on a blocking socket (a journald
//! that stops reading would freeze the bus's one thread) to a path that
//! cannot be changed (so no test can check the fields without replacing
//! the real journal). The protocol is a few lines.
//!
//! `BUSBAR_JOURNAL_SOCKET`, if set, names the socket instead; it is a
//! testing aid, documented in busbar(1).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The test override of the journal socket.
pub const PATH_ENV: &str = "BUSBAR_JOURNAL_SOCKET";

/// journald's native socket.
pub const DEFAULT_PATH: &str = "/run/systemd/journal/socket";

/// Where the journal listens: the override, or journald's socket.
pub fn socket_path() -> PathBuf {
    std::env::var_os(PATH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Whether a journal is listening there (a socket exists at the path).
pub fn present() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(socket_path()).is_ok_and(|m| m.file_type().is_socket())
}

/// Whether stderr is a stream that systemd connected to the journal: as
/// sd_journal's automatic protocol upgrade, $JOURNAL_STREAM holds the
/// `device:inode` of that stream, and it must still be fd 2.
pub fn stderr_is_journal(stderr_dev_ino: Option<(u64, u64)>) -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((d, i)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match (d.parse::<u64>(), i.parse::<u64>(), stderr_dev_ino) {
        (Ok(d), Ok(i), Some(got)) => got == (d, i),
        _ => false,
    }
}

/// Appends one field to a journal datagram.
pub fn put_field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// A non-blocking client of the journal socket.
#[derive(Debug, Default)]
pub struct Journal {
    sock: Option<UnixDatagram>,
    path: Option<PathBuf>,
}

impl Journal {
    /// A client that opens its socket on the first entry.
    pub const fn new() -> Journal {
        Journal {
            sock: None,
            path: None,
        }
    }

    /// Sends one entry (built with [`put_field`]). Returns whether journald
    /// took it; an entry that would block is dropped, not waited for.
    pub fn send(&mut self, entry: &[u8]) -> bool {
        if self.sock.is_none() {
            let s = UnixDatagram::unbound().and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match s {
                Ok(s) => self.sock = Some(s),
                Err(_) => return false,
            }
        }
        let path = self.path.get_or_insert_with(socket_path);
        let Some(s) = &self.sock else { return false };
        // Unconnected: every datagram finds the socket that is at the path
        // now, so a restarted journald is picked up with no reconnect.
        let r: io::Result<usize> = s.send_to(entry, &*path);
        r.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::put_field;

    #[test]
    fn fields_use_the_binary_form_only_for_newlines() {
        let mut b = Vec::new();
        put_field(&mut b, "MESSAGE", b"hi");
        put_field(&mut b, "X", b"a\nb");
        let mut want = b"MESSAGE=hi\nX\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(b, want);
    }
}
