//! A minimal syslog client over /dev/log (no libc syslog state, no unsafe).
//!
//! The socket is non-blocking: a syslog daemon that stops reading costs the
//! bus dropped lines, never a stalled loop. When the daemon restarts (or
//! journald does, for the /dev/log it serves), the old socket fails with
//! ECONNREFUSED or ENOTCONN; the client then connects again and resends the
//! line, as glibc's syslog() does.
//!
//! `BUSBAR_SYSLOG_SOCKET`, if set, names the socket instead of /dev/log. It
//! is a testing aid (the tests point it at a socket they bind), documented
//! in busbar(1).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// The test override of /dev/log.
pub const PATH_ENV: &str = "BUSBAR_SYSLOG_SOCKET";

/// A syslog connection that reconnects.
#[derive(Debug, Default)]
pub struct Syslog {
    sock: Option<UnixDatagram>,
    path: Option<PathBuf>,
}

fn default_path() -> PathBuf {
    std::env::var_os(PATH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/log"))
}

/// Errors after which a fresh connection may succeed: the daemon went away
/// (and perhaps came back with a new socket).
fn is_reconnectable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED)
            | Some(libc::ENOTCONN)
            | Some(libc::ECONNRESET)
            | Some(libc::EPIPE)
            | Some(libc::ENOENT)
            | Some(libc::EDESTADDRREQ)
    )
}

impl Syslog {
    /// A client that connects on its first line.
    pub const fn new() -> Syslog {
        Syslog {
            sock: None,
            path: None,
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        let path = self.path.get_or_insert_with(default_path).clone();
        let s = UnixDatagram::unbound()?;
        s.set_nonblocking(true)?;
        s.connect(&path)?;
        self.sock = Some(s);
        Ok(())
    }

    /// Sends one message with the given priority (facility | level).
    /// Returns whether it was handed to the syslog daemon.
    pub fn send(&mut self, priority: libc::c_int, msg: &str) -> bool {
        let pri = if priority & !7 == 0 {
            priority | libc::LOG_DAEMON
        } else {
            priority
        };
        let line = format!("<{pri}>busbar[{}]: {msg}", std::process::id());
        for attempt in 0..2 {
            if self.sock.is_none() && self.connect().is_err() {
                return false;
            }
            let Some(s) = &self.sock else { return false };
            match s.send(line.as_bytes()) {
                Ok(_) => return true,
                Err(e) if attempt == 0 && is_reconnectable(&e) => {
                    self.sock = None;
                }
                Err(e) => {
                    if is_reconnectable(&e) {
                        self.sock = None;
                    }
                    // EAGAIN: the daemon is not keeping up; drop the line.
                    return false;
                }
            }
        }
        false
    }
}
