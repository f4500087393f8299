//! Where the security modules' records go, as in dbus-daemon's bus/audit.c
//! and the log paths of bus/selinux.c and bus/apparmor.c: to the audit
//! subsystem (a NETLINK_AUDIT socket, opened only when the bus holds
//! CAP_AUDIT_WRITE) as USER_AVC records (and USER_MAC_POLICY_LOAD /
//! USER_MAC_STATUS for SELinux's policy and enforcing notices); without
//! audit, to syslog (facility user), which is the journal under systemd.
//!
//! The records are formatted as libaudit's audit_log_user_avc_message
//! formats them (`<text> exe="<path>" sauid=<uid> hostname=? addr=?
//! terminal=?`), so busbar's and dbus-daemon's records differ only in exe.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// AUDIT_USER_AVC
pub const USER_AVC: u16 = 1107;
/// AUDIT_USER_MAC_POLICY_LOAD
pub const USER_MAC_POLICY_LOAD: u16 = 2310;
/// AUDIT_USER_MAC_STATUS
pub const USER_MAC_STATUS: u16 = 2313;

struct Sink {
    audit: Option<OwnedFd>,
    syslog: crate::syslog::Syslog,
    seq: u32,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    audit: None,
    syslog: crate::syslog::Syslog::new(),
    seq: 0,
});

fn sink() -> std::sync::MutexGuard<'static, Sink> {
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether CAP_AUDIT_WRITE is in the effective set.
fn can_audit() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_AUDIT_WRITE,
    )
    .unwrap_or(false)
}

/// dbus-daemon's bus_audit_init: opens the audit socket when the bus may
/// write to it. A kernel without audit is silent; other failures warn.
pub fn init() {
    let mut s = sink();
    if s.audit.is_some() || !can_audit() {
        return;
    }
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT)
        ) {
            return;
        }
        drop(s);
        crate::log::warning(&format!(
            "Failed to open connection to the audit subsystem: {e}"
        ));
        return;
    }
    // SAFETY: `fd` is a freshly created socket nobody else owns.
    s.audit = Some(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// Whether records go to the audit subsystem.
pub fn active() -> bool {
    sink().audit.is_some()
}

/// libaudit's exe= field: the path quoted, or hex when it has to be.
fn exe_field() -> String {
    match std::fs::read_link("/proc/self/exe") {
        Ok(p) => {
            let b = p.as_os_str().as_encoded_bytes();
            if b.iter().any(|&c| c == b'"' || !(0x21..=0x7e).contains(&c)) {
                b.iter().map(|c| format!("{c:02X}")).collect()
            } else {
                format!("\"{}\"", String::from_utf8_lossy(b))
            }
        }
        Err(_) => "\"?\"".to_string(),
    }
}

/// The user-space audit message text, as audit_log_user_avc_message.
pub fn user_avc_text(msg: &str, exe: &str, uid: u32) -> String {
    format!("{msg} exe={exe} sauid={uid} hostname=? addr=? terminal=?")
}

/// Sends one user message of `kind`; false if it could not.
fn send_audit(s: &mut Sink, kind: u16, msg: &str) -> bool {
    let Some(fd) = &s.audit else { return false };
    let text = user_avc_text(msg, &exe_field(), nix::unistd::getuid().as_raw());
    let mut payload = text.into_bytes();
    payload.push(0);
    let len = 16 + payload.len();
    s.seq = s.seq.wrapping_add(1);
    let mut buf = Vec::with_capacity(len.next_multiple_of(4));
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    // NLM_F_REQUEST, without NLM_F_ACK: the bus never waits for the kernel.
    buf.extend_from_slice(&1u16.to_ne_bytes());
    buf.extend_from_slice(&s.seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&payload);
    buf.resize(len.next_multiple_of(4), 0);
    // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `buf` and `addr` are live for the call and their lengths are
    // passed exactly; the socket is non-blocking.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    // Drop any error replies so the socket's queue never fills.
    let mut junk = [0u8; 512];
    // SAFETY: `junk` is a writable buffer of the length passed.
    while unsafe {
        libc::recv(
            fd.as_raw_fd(),
            junk.as_mut_ptr().cast(),
            junk.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    r >= 0
}

/// A message from libselinux's log callback (dbus-daemon's log_callback):
/// AVC, policy-load and enforcing notices become audit records when audit
/// is available; everything else, and everything without audit, goes to
/// syslog at user.info.
pub fn selinux_message(kind: std::ffi::c_int, text: &str) {
    use super::selinux::{SELINUX_AVC, SELINUX_POLICYLOAD, SELINUX_SETENFORCE};
    let mut s = sink();
    let audit_type = match kind {
        SELINUX_AVC => Some(USER_AVC),
        SELINUX_POLICYLOAD => Some(USER_MAC_POLICY_LOAD),
        SELINUX_SETENFORCE => Some(USER_MAC_STATUS),
        _ => None,
    };
    if let Some(t) = audit_type {
        if s.audit.is_some() && can_audit() && send_audit(&mut s, t, text) {
            return;
        }
    }
    s.syslog
        .send(libc::LOG_USER | libc::LOG_INFO, text.trim_end_matches('\n'));
}

/// An AppArmor decision record (dbus-daemon's apparmor log_message):
/// `apparmor="ALLOWED|DENIED" operation="dbus_<op>" <fields>`.
pub fn apparmor_message(allow: bool, op: &str, fields: &str) {
    let text = format!(
        "apparmor=\"{}\" operation=\"dbus_{op}\" {fields}\n",
        if allow { "ALLOWED" } else { "DENIED" }
    );
    let mut s = sink();
    if s.audit.is_some() && send_audit(&mut s, USER_AVC, &text) {
        return;
    }
    s.syslog.send(
        libc::LOG_USER | libc::LOG_NOTICE,
        text.trim_end_matches('\n'),
    );
}

/// Runs `change_ids` (setgroups/setgid/setuid from root to the bus user)
/// keeping CAP_AUDIT_WRITE when the bus had it, as dbus-daemon's
/// _dbus_change_to_daemon_user does with libcap-ng: every other capability
/// is dropped.
pub fn change_ids_keeping_audit(
    change_ids: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let had = caps::has_cap(
        None,
        caps::CapSet::Permitted,
        caps::Capability::CAP_AUDIT_WRITE,
    )
    .unwrap_or(false);
    if !had {
        return change_ids();
    }
    caps::securebits::set_keepcaps(true)
        .map_err(|e| format!("Failed to drop capabilities: {e}\n"))?;
    let r = change_ids();
    let keep: caps::CapsHashSet = [caps::Capability::CAP_AUDIT_WRITE].into_iter().collect();
    let set = r.and_then(|()| {
        caps::set(None, caps::CapSet::Effective, &keep)
            .and_then(|()| caps::set(None, caps::CapSet::Permitted, &keep))
            .and_then(|()| caps::clear(None, caps::CapSet::Inheritable))
            .map_err(|e| format!("Failed to drop capabilities: {e}\n"))
    });
    let unset = caps::securebits::set_keepcaps(false)
        .map_err(|e| format!("Failed to unset keep-capabilities: {e}\n"));
    set.and(unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_avc_text_is_libaudits_format() {
        assert_eq!(
            user_avc_text("avc:  denied  { send_msg }", "\"/usr/bin/busbar\"", 101),
            "avc:  denied  { send_msg } exe=\"/usr/bin/busbar\" sauid=101 hostname=? addr=? terminal=?"
        );
    }
}
