//! Logging to stderr and/or syslog, as `--syslog`, `--syslog-only` and
//! `<syslog/>` select.

use std::sync::atomic::{AtomicU8, Ordering};

/// Write to stderr.
pub const TO_STDERR: u8 = 1;
/// Write to syslog.
pub const TO_SYSLOG: u8 = 2;

static TARGETS: AtomicU8 = AtomicU8::new(TO_STDERR);

/// Chooses where log lines go.
pub fn set_targets(t: u8) {
    TARGETS.store(t, Ordering::Relaxed);
}

fn emit(level: libc::c_int, prefix: &str, msg: &str) {
    let t = TARGETS.load(Ordering::Relaxed);
    if t & TO_STDERR != 0 {
        eprintln!("busbar[{}]: {prefix}{msg}", std::process::id());
    }
    if t & TO_SYSLOG != 0 {
        crate::syslog::send(level, msg);
    }
}

/// An informational line.
pub fn info(msg: &str) {
    emit(libc::LOG_INFO, "", msg);
}

/// A warning.
pub fn warning(msg: &str) {
    emit(libc::LOG_WARNING, "Warning: ", msg);
}

/// A security-relevant event (policy denials with log="true").
pub fn security(msg: &str) {
    emit(libc::LOG_AUTHPRIV | libc::LOG_NOTICE, "", msg);
}
