//! Logging to stderr, syslog and the systemd journal, as `--syslog`,
//! `--syslog-only` and `<syslog/>` select. Logging never kills and never
//! blocks the bus: every write is non-blocking and its failure ignored (see
//! [`stderr`]), and the lines that peers can trigger are rate-limited per
//! [`Kind`] (see [`ratelimit`]).
//!
//! Under systemd the lines go to the journal in its native protocol, with
//! a MESSAGE_ID per kind of event and, where a peer caused it, the peer's
//! uid, pid and unique name as fields: when stderr is the journal stream
//! systemd gave us ($JOURNAL_STREAM), and for syslog when journald is
//! running (its socket exists).

pub mod journal;
pub mod ratelimit;
pub mod stderr;

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ratelimit::{Admit, Bucket};

/// Write to stderr.
pub const TO_STDERR: u8 = 1;
/// Write to syslog.
pub const TO_SYSLOG: u8 = 2;

/// What a log line is about: each kind has its own journal MESSAGE_ID and,
/// if peers can trigger it, its own rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The bus itself: configuration warnings, reloads, start-up.
    General,
    /// Start-up failed.
    StartupFailed,
    /// A peer broke the protocol (a malformed message, a monitor that
    /// sent, too many fds) and was disconnected.
    ProtocolViolation,
    /// A connection did not authenticate (or say Hello) in time.
    AuthTimeout,
    /// A connection was refused: its user may not connect, or too many.
    ConnectionRefused,
    /// A message the policy denied (or would have) with `log="true"`.
    PolicyDenied,
    /// A peer reached a limit (pending replies, fds, names, match rules).
    LimitReached,
    /// Activation requested, succeeded or failed.
    Activation,
    /// A peer became a monitor.
    Monitor,
}

impl Kind {
    /// Every kind, in the order of their rate-limit buckets.
    pub const ALL: [Kind; 9] = [
        Kind::General,
        Kind::StartupFailed,
        Kind::ProtocolViolation,
        Kind::AuthTimeout,
        Kind::ConnectionRefused,
        Kind::PolicyDenied,
        Kind::LimitReached,
        Kind::Activation,
        Kind::Monitor,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The journal's MESSAGE_ID (128 random bits, fixed forever per kind,
    /// so `journalctl MESSAGE_ID=...` finds every event of a kind).
    pub fn message_id(self) -> &'static str {
        match self {
            Kind::General => "4bc61ca4b7a34174baeb606a050e0ec1",
            Kind::StartupFailed => "43d5ae1018f874a8f13df07e5dcc3e65",
            Kind::ProtocolViolation => "17cdd140d83178991142cc804df2c427",
            Kind::AuthTimeout => "81b092ddedd91474f72beffb4e70e48a",
            Kind::ConnectionRefused => "ad99832e7b01266d60f98691b8508a9a",
            Kind::PolicyDenied => "5c4c8bb172cf7f6d3d1e50130af1b3c4",
            Kind::LimitReached => "fc40d87de678e810d080f40c64aec708",
            Kind::Activation => "5fdf817a88d7fa1ec132f33ab570966c",
            Kind::Monitor => "8ef16f05f05ece9eee6e8d1f92cfec62",
        }
    }

    /// A short name, the journal's BUSBAR_EVENT field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::General => "general",
            Kind::StartupFailed => "startup-failed",
            Kind::ProtocolViolation => "protocol-violation",
            Kind::AuthTimeout => "auth-timeout",
            Kind::ConnectionRefused => "connection-refused",
            Kind::PolicyDenied => "policy-denied",
            Kind::LimitReached => "limit-reached",
            Kind::Activation => "activation",
            Kind::Monitor => "monitor",
        }
    }

    /// Whether peers can make the bus log this kind at will.
    pub fn rate_limited(self) -> bool {
        !matches!(self, Kind::General | Kind::StartupFailed)
    }
}

/// The peer a line is about.
#[derive(Clone, Copy, Debug, Default)]
pub struct Who<'a> {
    /// Its uid, from the socket credentials.
    pub uid: Option<u32>,
    /// Its pid, from the socket credentials.
    pub pid: Option<u32>,
    /// Its unique name, once it said Hello.
    pub name: Option<&'a str>,
}

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Informational.
    Info,
    /// A warning.
    Warning,
    /// A security-relevant event (LOG_AUTHPRIV).
    Security,
    /// An error (start-up failed).
    Error,
}

impl Level {
    fn syslog_priority(self) -> libc::c_int {
        match self {
            Level::Info => libc::LOG_INFO,
            Level::Warning => libc::LOG_WARNING,
            Level::Security => libc::LOG_AUTHPRIV | libc::LOG_NOTICE,
            Level::Error => libc::LOG_ERR,
        }
    }

    fn stderr_prefix(self) -> &'static str {
        match self {
            Level::Warning => "Warning: ",
            _ => "",
        }
    }
}

struct State {
    targets: u8,
    /// Lines for stderr go to the journal instead ($JOURNAL_STREAM).
    stderr_journal: bool,
    /// Lines for syslog go to the journal instead (journald is running).
    syslog_journal: bool,
    stderr: stderr::Stderr,
    syslog: crate::syslog::Syslog,
    journal: journal::Journal,
    buckets: [Bucket; Kind::ALL.len()],
    /// dbus-daemon's per-bus prefix of every line: `[system] ` or
    /// `[session uid=U pid=P] `, empty for other bus types.
    prefix: String,
}

static STATE: Mutex<State> = Mutex::new(State {
    targets: TO_STDERR,
    stderr_journal: false,
    syslog_journal: false,
    stderr: stderr::Stderr::new(),
    syslog: crate::syslog::Syslog::new(),
    journal: journal::Journal::new(),
    buckets: [Bucket::new(); Kind::ALL.len()],
    prefix: String::new(),
});

fn state() -> MutexGuard<'static, State> {
    // A panic while logging must not stop all later logging.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn detect_journal(&mut self) {
        self.stderr_journal = journal::stderr_is_journal(stderr::Stderr::dev_ino());
        self.syslog_journal = journal::present();
    }
}

/// Chooses where log lines go (and looks for the journal).
pub fn set_targets(t: u8) {
    let mut s = state();
    s.targets = t;
    s.detect_journal();
}

/// The prefix dbus-daemon puts before every line of a bus of this type
/// (the configuration's `<type>`): `[system] ` for the system bus,
/// `[session uid=U pid=P] ` for a session bus, nothing for any other type
/// or none.
pub fn bus_prefix(bus_type: Option<&str>, uid: u32, pid: u32) -> String {
    match bus_type {
        Some("system") => "[system] ".to_string(),
        Some("session") => format!("[session uid={uid} pid={pid}] "),
        _ => String::new(),
    }
}

/// Sets the prefix of every later line (see [`bus_prefix`]).
pub fn set_prefix(prefix: String) {
    state().prefix = prefix;
}

/// fd 2 was replaced (by /dev/null after daemonizing): look at it again.
pub fn stderr_replaced() {
    let mut s = state();
    s.stderr.reset();
    s.detect_journal();
}

fn journal_entry(kind: Kind, level: Level, who: Option<&Who<'_>>, msg: &str) -> Vec<u8> {
    let pri = level.syslog_priority();
    let mut e = Vec::with_capacity(msg.len() + 256);
    journal::put_field(&mut e, "MESSAGE", msg.as_bytes());
    journal::put_field(&mut e, "PRIORITY", (pri & 7).to_string().as_bytes());
    let facility = if pri & !7 == 0 {
        libc::LOG_DAEMON
    } else {
        pri & !7
    };
    journal::put_field(
        &mut e,
        "SYSLOG_FACILITY",
        (facility >> 3).to_string().as_bytes(),
    );
    journal::put_field(&mut e, "SYSLOG_IDENTIFIER", b"busbar");
    journal::put_field(
        &mut e,
        "SYSLOG_PID",
        std::process::id().to_string().as_bytes(),
    );
    journal::put_field(&mut e, "MESSAGE_ID", kind.message_id().as_bytes());
    journal::put_field(&mut e, "BUSBAR_EVENT", kind.name().as_bytes());
    if let Some(w) = who {
        if let Some(uid) = w.uid {
            journal::put_field(&mut e, "BUSBAR_PEER_UID", uid.to_string().as_bytes());
        }
        if let Some(pid) = w.pid {
            journal::put_field(&mut e, "BUSBAR_PEER_PID", pid.to_string().as_bytes());
            // journald adds the peer's _UID, _COMM, ... as OBJECT_* fields
            // (it trusts this field from root only).
            journal::put_field(&mut e, "OBJECT_PID", pid.to_string().as_bytes());
        }
        if let Some(name) = w.name {
            journal::put_field(&mut e, "BUSBAR_PEER_UNIQUE_NAME", name.as_bytes());
        }
    }
    e
}

fn write_out(s: &mut State, kind: Kind, level: Level, who: Option<&Who<'_>>, msg: &str) {
    let prefixed;
    // dbus-daemon reports a failed start-up from main(), without the bus's
    // prefix.
    let msg = if s.prefix.is_empty() || kind == Kind::StartupFailed {
        msg
    } else {
        prefixed = format!("{}{msg}", s.prefix);
        prefixed.as_str()
    };
    let mut journal_done = false;
    let mut entry: Option<Vec<u8>> = None;
    let mut to_journal = |s: &mut State| -> bool {
        if journal_done {
            return true;
        }
        let e = entry.get_or_insert_with(|| journal_entry(kind, level, who, msg));
        journal_done = s.journal.send(e);
        journal_done
    };
    if s.targets & TO_STDERR != 0 {
        let sent = s.stderr_journal && to_journal(s);
        if !sent {
            s.stderr.write_line(&format!(
                "busbar[{}]: {}{msg}",
                std::process::id(),
                level.stderr_prefix()
            ));
        }
    }
    if s.targets & TO_SYSLOG != 0 {
        let sent = s.syslog_journal && to_journal(s);
        if !sent {
            s.syslog.send(level.syslog_priority(), msg);
        }
    }
}

/// Logs one line about `kind`, perhaps concerning peer `who`. Lines of a
/// kind that peers can trigger are dropped past the rate limit; the next
/// one that goes out is preceded by a count of those dropped.
pub fn event(kind: Kind, level: Level, who: Option<&Who<'_>>, msg: &str) {
    let mut s = state();
    if kind.rate_limited() {
        match s.buckets[kind.index()].admit(Instant::now()) {
            Admit::Drop => return,
            Admit::Pass(0) => {}
            Admit::Pass(n) => {
                let note = format!(
                    "{n} log messages of kind \"{}\" were suppressed (more than {} in a burst, \
                     or {} a second)",
                    kind.name(),
                    ratelimit::BURST,
                    1000 / ratelimit::REFILL.as_millis().max(1)
                );
                write_out(&mut s, kind, Level::Warning, None, &note);
            }
        }
    }
    write_out(&mut s, kind, level, who, msg);
}

/// A warning about peer `who`.
pub fn peer_warning(kind: Kind, who: &Who<'_>, msg: &str) {
    event(kind, Level::Warning, Some(who), msg);
}

/// An informational line.
pub fn info(msg: &str) {
    event(Kind::General, Level::Info, None, msg);
}

/// A warning.
pub fn warning(msg: &str) {
    event(Kind::General, Level::Warning, None, msg);
}

/// A security-relevant event (policy denials with log="true").
pub fn security(msg: &str) {
    event(Kind::PolicyDenied, Level::Security, None, msg);
}

/// Start-up failed: `msg` says why.
pub fn startup_failed(msg: &str) {
    event(
        Kind::StartupFailed,
        Level::Error,
        None,
        &format!("Failed to start message bus: {msg}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_prefixes_are_dbus_daemons() {
        assert_eq!(bus_prefix(Some("system"), 0, 1), "[system] ");
        assert_eq!(
            bus_prefix(Some("session"), 1000, 42),
            "[session uid=1000 pid=42] "
        );
        assert_eq!(bus_prefix(Some("foo"), 0, 1), "");
        assert_eq!(bus_prefix(None, 0, 1), "");
    }

    #[test]
    fn kinds_are_indexed_in_order_and_ids_are_distinct() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(k.message_id().len(), 32);
        }
        let mut ids: Vec<_> = Kind::ALL.iter().map(|k| k.message_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Kind::ALL.len());
    }

    #[test]
    fn journal_entries_carry_the_peer() {
        let who = Who {
            uid: Some(1000),
            pid: Some(42),
            name: Some(":1.7"),
        };
        let e = journal_entry(Kind::ProtocolViolation, Level::Warning, Some(&who), "bad");
        let text = String::from_utf8(e).unwrap();
        for f in [
            "MESSAGE=bad\n",
            "PRIORITY=4\n",
            "SYSLOG_FACILITY=3\n",
            "MESSAGE_ID=17cdd140d83178991142cc804df2c427\n",
            "BUSBAR_PEER_UID=1000\n",
            "BUSBAR_PEER_PID=42\n",
            "BUSBAR_PEER_UNIQUE_NAME=:1.7\n",
        ] {
            assert!(text.contains(f), "{f} missing in {text}");
        }
        let e = journal_entry(Kind::PolicyDenied, Level::Security, None, "x");
        let text = String::from_utf8(e).unwrap();
        assert!(text.contains("PRIORITY=5\n") && text.contains("SYSLOG_FACILITY=10\n"));
    }
}
