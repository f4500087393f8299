//! AppArmor D-Bus mediation with the semantics of dbus-daemon's
//! bus/apparmor.c: `bind` (RequestName), `send` and `receive` (both sides
//! of every message, with path, interface, member and the peer's name and
//! label) and `eavesdrop` (eavesdropping match rules, BecomeMonitor),
//! answered by the kernel through libapparmor's aa_query_label. Unconfined
//! connections are not queried; complain-mode profiles are never refused;
//! the kernel's audit bit decides what is logged.
//!
//! Mediation is on only where the kernel mediates D-Bus (securityfs has
//! `features/dbus/mask`), exactly dbus-daemon's test; see [`supported`].

use std::ffi::{c_char, c_int, CStr};

use super::dl::{load_fns, Lib};

/// AA_CLASS_DBUS
pub const CLASS_DBUS: u8 = 32;
/// AA_DBUS_SEND (AA_MAY_WRITE)
pub const PERM_SEND: u32 = 1 << 1;
/// AA_DBUS_RECEIVE (AA_MAY_READ)
pub const PERM_RECEIVE: u32 = 1 << 2;
/// AA_DBUS_EAVESDROP
pub const PERM_EAVESDROP: u32 = 1 << 5;
/// AA_DBUS_BIND
pub const PERM_BIND: u32 = 1 << 6;
/// AA_QUERY_CMD_LABEL_SIZE: room libapparmor fills with the command.
const QUERY_CMD_LABEL_SIZE: usize = 6;

/// A connection's confinement: its label and mode (`unconfined`, or a
/// profile and `(enforce)` / `(complain)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Con {
    /// The label without the mode.
    pub label: String,
    /// The mode, if the context had one.
    pub mode: Option<String>,
}

impl Con {
    /// libapparmor's aa_splitcon: "label (mode)" or a bare label; a
    /// trailing newline is dropped.
    pub fn split(context: &str) -> Con {
        let c = context.strip_suffix('\n').unwrap_or(context);
        if let Some(body) = c.strip_suffix(')') {
            if let Some(i) = body.rfind(" (") {
                return Con {
                    label: body[..i].to_string(),
                    mode: Some(body[i + 2..].to_string()),
                };
            }
        }
        Con {
            label: c.to_string(),
            mode: None,
        }
    }

    /// dbus-daemon's is_unconfined.
    pub fn is_unconfined(&self) -> bool {
        match &self.mode {
            None => self.label == "unconfined",
            Some(m) => m == "unconfined",
        }
    }

    fn is_complain(&self) -> bool {
        self.mode.as_deref() == Some("complain")
    }
}

/// Asks the kernel about one query: Ok((allow, audit)) or the errno.
pub trait Oracle {
    /// aa_query_label(mask, query).
    fn query(&self, mask: u32, query: &mut Vec<u8>) -> Result<(bool, bool), i32>;
}

/// The query's common head: room for the command, the label, NUL, the
/// class, the bus type.
fn common_query(label: &str, bustype: Option<&str>) -> Vec<u8> {
    let mut q = vec![0u8; QUERY_CMD_LABEL_SIZE];
    q.extend_from_slice(label.as_bytes());
    q.push(0);
    q.push(CLASS_DBUS);
    q.extend_from_slice(bustype.unwrap_or("").as_bytes());
    q
}

fn append(q: &mut Vec<u8>, s: Option<&str>) {
    q.push(0);
    if let Some(s) = s {
        q.extend_from_slice(s.as_bytes());
    }
}

/// The bind query (dbus-daemon's build_service_query).
pub fn service_query(label: &str, bustype: Option<&str>, name: &str) -> Vec<u8> {
    let mut q = common_query(label, bustype);
    append(&mut q, Some(name));
    q
}

/// The send/receive query (build_message_query).
pub fn message_query(
    label: &str,
    bustype: Option<&str>,
    name: Option<&str>,
    peer_label: Option<&str>,
    m: &Msg<'_>,
) -> Vec<u8> {
    let mut q = common_query(label, bustype);
    append(&mut q, name);
    append(&mut q, peer_label);
    append(&mut q, m.path);
    append(&mut q, m.interface);
    append(&mut q, m.member);
    q
}

fn pair(out: &mut String, k: &str, v: &str) {
    out.push(' ');
    out.push_str(k);
    out.push_str("=\"");
    out.push_str(v);
    out.push('"');
}

fn pair_uint(out: &mut String, k: &str, v: u32) {
    out.push_str(&format!(" {k}={v}"));
}

fn strerror(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    // std appends " (os error N)"; strerror does not.
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The D-Bus error for a failed query (dbus-daemon's
/// set_error_from_query_errno with _dbus_error_from_errno).
fn query_error(e: i32) -> (&'static str, String) {
    let name = match e {
        libc::ENOMEM => "org.freedesktop.DBus.Error.NoMemory",
        libc::EACCES | libc::EPERM => "org.freedesktop.DBus.Error.AccessDenied",
        libc::ENOENT => "org.freedesktop.DBus.Error.FileNotFound",
        libc::EEXIST => "org.freedesktop.DBus.Error.FileExists",
        _ => "org.freedesktop.DBus.Error.Failed",
    };
    (
        name,
        format!("Failed to query AppArmor policy: {}", strerror(e)),
    )
}

const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// A refusal: D-Bus error name and text.
pub type Refusal = (&'static str, String);

/// One party of a check.
#[derive(Clone, Copy, Debug)]
pub struct Party<'a> {
    /// Its confinement (None: unknown, treated as confined).
    pub con: Option<&'a Con>,
    /// Its pid, if known.
    pub pid: Option<u32>,
}

/// What the send/receive checks look at in a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Msg<'a> {
    /// D-Bus message type.
    pub msg_type: u8,
    /// Path.
    pub path: Option<&'a str>,
    /// Interface.
    pub interface: Option<&'a str>,
    /// Member.
    pub member: Option<&'a str>,
    /// Error name.
    pub error_name: Option<&'a str>,
}

/// A record to log: allowed?, operation, fields.
pub type Record = (bool, String, String);

/// dbus-daemon's bus_apparmor_allows_acquire_service. `who` is the
/// connection's unique name or "(inactive)". Records go to `log`.
pub fn allows_bind(
    o: &dyn Oracle,
    p: Party<'_>,
    bustype: Option<&str>,
    name: &str,
    who: &str,
    log: &mut Vec<Record>,
) -> Result<(), Refusal> {
    let unconfined = Con {
        label: String::new(),
        mode: None,
    };
    let con = p.con.unwrap_or(&unconfined);
    if p.con.is_some() && con.is_unconfined() {
        return Ok(());
    }
    let mut q = service_query(&con.label, bustype, name);
    let mut err = None;
    let (allow, audit) = match o.query(PERM_BIND, &mut q) {
        Ok((a, au)) => (a || con.is_complain(), au),
        Err(e) => {
            err = Some(e);
            (false, true)
        }
    };
    let res = match err {
        Some(e) => Err(query_error(e)),
        None if !allow => Err((
            ACCESS_DENIED,
            format!("Connection \"{who}\" is not allowed to own the service \"{name}\" due to AppArmor policy"),
        )),
        None => Ok(()),
    };
    if audit {
        let mut f = String::new();
        pair(&mut f, "bus", bustype.unwrap_or("unknown"));
        pair(&mut f, "name", name);
        if let Some(e) = err {
            pair(&mut f, "info", &strerror(e));
        }
        pair(&mut f, "mask", "bind");
        if let Some(pid) = p.pid {
            pair_uint(&mut f, "pid", pid);
        }
        if p.con.is_some() {
            pair(&mut f, "label", &con.label);
        }
        log.push((allow, "bind".into(), f.trim_start().to_string()));
    }
    res
}

/// dbus-daemon's bus_apparmor_allows_eavesdropping.
pub fn allows_eavesdrop(
    o: &dyn Oracle,
    p: Party<'_>,
    bustype: Option<&str>,
    who: &str,
    log: &mut Vec<Record>,
) -> Result<(), Refusal> {
    let empty = Con {
        label: String::new(),
        mode: None,
    };
    let con = p.con.unwrap_or(&empty);
    if p.con.is_some() && con.is_unconfined() {
        return Ok(());
    }
    let mut q = common_query(&con.label, bustype);
    let mut err = None;
    let (allow, audit) = match o.query(PERM_EAVESDROP, &mut q) {
        Ok((a, au)) => (a || con.is_complain(), au),
        Err(e) => {
            err = Some(e);
            (false, true)
        }
    };
    let res = match err {
        Some(e) => Err(query_error(e)),
        None if !allow => Err((
            ACCESS_DENIED,
            format!("Connection \"{who}\" is not allowed to eavesdrop due to AppArmor policy"),
        )),
        None => Ok(()),
    };
    if audit {
        let mut f = String::new();
        pair(&mut f, "bus", bustype.unwrap_or("unknown"));
        if let Some(e) = err {
            pair(&mut f, "info", &strerror(e));
        }
        pair(&mut f, "mask", "eavesdrop");
        if let Some(pid) = p.pid {
            pair_uint(&mut f, "pid", pid);
        }
        if p.con.is_some() {
            pair(&mut f, "label", &con.label);
        }
        log.push((allow, "eavesdrop".into(), f.trim_start().to_string()));
    }
    res
}

/// Everything the send check needs besides the oracle.
#[derive(Clone, Copy)]
pub struct Send<'a> {
    /// The sender.
    pub src: Party<'a>,
    /// The recipient (None: the bus driver, whose confinement is `bus`).
    pub dst: Option<Party<'a>>,
    /// The bus's own confinement.
    pub bus: &'a Con,
    /// The recipient is being activated (its label is not known).
    pub activation: bool,
    /// A reply the recipient asked for.
    pub requested_reply: bool,
    /// `<type>` of the bus.
    pub bustype: Option<&'a str>,
    /// The message.
    pub msg: Msg<'a>,
    /// DESTINATION, or org.freedesktop.DBus.
    pub destination: &'a str,
    /// The sender's unique name, or org.freedesktop.DBus.
    pub source: &'a str,
    /// dbus-daemon's text for the refusal (the complaint's fields), made
    /// only when refusing.
    pub refusal_text: &'a dyn Fn() -> String,
}

/// dbus-daemon's bus_apparmor_allows_send.
pub fn allows_send(o: &dyn Oracle, s: &Send<'_>, log: &mut Vec<Record>) -> Result<(), Refusal> {
    use policy::msg_type::{ERROR, METHOD_RETURN};
    if s.requested_reply {
        // Replies follow the mapping of the call they answer.
        return Ok(());
    }
    let none = Con {
        label: String::new(),
        mode: None,
    };
    let src_con = s.src.con.unwrap_or(&none);
    let src_label = s.src.con.map(|c| c.label.as_str());
    let dst_con: Option<&Con> = if s.activation {
        None
    } else {
        match s.dst {
            Some(d) => d.con,
            None => Some(s.bus),
        }
    };
    let dst_label = dst_con.map(|c| c.label.as_str());
    let dst_mode = dst_con.and_then(|c| c.mode.as_deref());
    let (mut src_allow, mut src_audit, mut src_err) = (true, false, None);
    if s.src.con.is_none() || !src_con.is_unconfined() {
        let mut q = message_query(
            &src_con.label,
            s.bustype,
            Some(s.destination),
            dst_label,
            &s.msg,
        );
        match o.query(PERM_SEND, &mut q) {
            Ok((a, au)) => (src_allow, src_audit) = (a, au),
            Err(e) => (src_allow, src_audit, src_err) = (false, true, Some(e)),
        }
    }
    let (mut dst_allow, mut dst_audit, mut dst_err) = (true, false, None);
    let dst_unconfined = match dst_con {
        Some(c) => c.is_unconfined(),
        // A NULL label with no mode: treated as confined by dbus-daemon.
        None => false,
    };
    if src_err.is_none() && !s.activation && !dst_unconfined {
        let mut q = message_query(
            dst_label.unwrap_or(""),
            s.bustype,
            Some(s.source),
            src_label,
            &s.msg,
        );
        match o.query(PERM_RECEIVE, &mut q) {
            Ok((a, au)) => (dst_allow, dst_audit) = (a, au),
            Err(e) => (dst_allow, dst_audit, dst_err) = (false, true, Some(e)),
        }
    } else if src_err.is_some() {
        // dbus-daemon stops at the first failed query and logs both sides
        // (their audit flags still have their initial TRUE); the receive
        // side is not allowed.
        (dst_allow, dst_audit) = (false, true);
    }
    let err = src_err.or(dst_err);
    if err.is_none() {
        if src_con.is_complain() {
            src_allow = true;
        }
        if dst_mode == Some("complain") {
            dst_allow = true;
        }
    }
    let result = match err {
        Some(e) => Err(query_error(e)),
        None if !src_allow || !dst_allow => Err((ACCESS_DENIED, (s.refusal_text)())),
        None => Ok(()),
    };
    let skip = err.is_none()
        && ((!src_audit && !dst_audit)
            || s.msg.msg_type == METHOD_RETURN
            || s.msg.msg_type == ERROR);
    if skip {
        return result;
    }
    let op = super::type_name(s.msg.msg_type);
    let mut head = String::new();
    pair(&mut head, "bus", s.bustype.unwrap_or("unknown"));
    for (k, v) in [
        ("path", s.msg.path),
        ("interface", s.msg.interface),
        ("member", s.msg.member),
        ("error_name", s.msg.error_name),
    ] {
        if let Some(v) = v {
            pair(&mut head, k, v);
        }
    }
    let dst_pid = s.dst.and_then(|d| d.pid);
    if src_audit {
        let mut f = head.clone();
        pair(&mut f, "mask", "send");
        pair(&mut f, "name", s.destination);
        if let Some(pid) = s.src.pid {
            pair_uint(&mut f, "pid", pid);
        }
        if let Some(l) = src_label {
            pair(&mut f, "label", l);
        }
        if let Some(pid) = dst_pid {
            pair_uint(&mut f, "peer_pid", pid);
        }
        if let Some(l) = dst_label {
            pair(&mut f, "peer_label", l);
        }
        if let Some(e) = src_err {
            pair(&mut f, "info", &strerror(e));
        }
        if let Some(e) = dst_err {
            pair(&mut f, "peer_info", &strerror(e));
        }
        log.push((src_allow, op.to_string(), f.trim_start().to_string()));
    }
    if dst_audit {
        let mut f = head;
        pair(&mut f, "name", s.source);
        pair(&mut f, "mask", "receive");
        if let Some(pid) = dst_pid {
            pair_uint(&mut f, "pid", pid);
        }
        if let Some(l) = dst_label {
            pair(&mut f, "label", l);
        }
        if let Some(pid) = s.src.pid {
            pair_uint(&mut f, "peer_pid", pid);
        }
        if let Some(l) = src_label {
            pair(&mut f, "peer_label", l);
        }
        if let Some(e) = dst_err {
            pair(&mut f, "info", &strerror(e));
        }
        if let Some(e) = src_err {
            pair(&mut f, "peer_info", &strerror(e));
        }
        log.push((dst_allow, op.to_string(), f.trim_start().to_string()));
    }
    result
}

/// libapparmor.so.1's functions (prototypes from <sys/apparmor.h>).
struct Fns {
    aa_is_enabled: unsafe extern "C" fn() -> c_int,
    aa_find_mountpoint: unsafe extern "C" fn(*mut *mut c_char) -> c_int,
    aa_getcon: unsafe extern "C" fn(*mut *mut c_char, *mut *mut c_char) -> c_int,
    aa_query_label: unsafe extern "C" fn(u32, *mut c_char, usize, *mut c_int, *mut c_int) -> c_int,
}

impl std::fmt::Debug for Fns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("libapparmor")
    }
}

fn fns() -> Option<&'static Fns> {
    static FNS: std::sync::OnceLock<Option<Fns>> = std::sync::OnceLock::new();
    FNS.get_or_init(|| {
        let lib = Lib::open(c"libapparmor.so.1")?;
        load_fns!(
            &lib,
            Fns {
                aa_is_enabled: "aa_is_enabled",
                aa_find_mountpoint: "aa_find_mountpoint",
                aa_getcon: "aa_getcon",
                aa_query_label: "aa_query_label",
            }
        )
    })
    .as_ref()
}

/// dbus-daemon's bus_apparmor_pre_init and its dbus-support test:
/// AppArmor is enabled and `<securityfs>/features/dbus/mask` can be
/// opened. False without libapparmor (a dbus-daemon built without it).
pub fn supported() -> bool {
    let Some(f) = fns() else { return false };
    // SAFETY: no arguments; reads /sys only.
    if unsafe { (f.aa_is_enabled)() } == 0 {
        return false;
    }
    let mut mnt: *mut c_char = std::ptr::null_mut();
    // SAFETY: `mnt` is a valid out-pointer; on success it holds a malloc'd
    // NUL-terminated path, freed below.
    if unsafe { (f.aa_find_mountpoint)(&mut mnt) } != 0 || mnt.is_null() {
        return false;
    }
    // SAFETY: non-NULL, NUL-terminated (libapparmor's contract).
    let path = unsafe { CStr::from_ptr(mnt) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: `mnt` was malloc'd by libapparmor and is freed once.
    unsafe { libc::free(mnt.cast()) };
    // Opened, not just stat()ed, as dbus-daemon does.
    std::fs::File::open(format!("{path}/features/dbus/mask")).is_ok()
}

/// The kernel, through aa_query_label.
#[derive(Debug)]
pub struct Kernel {
    f: &'static Fns,
}

impl Oracle for Kernel {
    fn query(&self, mask: u32, query: &mut Vec<u8>) -> Result<(bool, bool), i32> {
        let (mut allow, mut audit): (c_int, c_int) = (0, 1);
        // SAFETY: `query` is a live, writable buffer of the length passed,
        // starting with QUERY_CMD_LABEL_SIZE bytes libapparmor overwrites
        // with its command; `allow` and `audit` are valid out-pointers.
        let r = unsafe {
            (self.f.aa_query_label)(
                mask,
                query.as_mut_ptr().cast(),
                query.len(),
                &mut allow,
                &mut audit,
            )
        };
        if r == -1 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        Ok((allow != 0, audit != 0))
    }
}

/// Mediation, started (bus_apparmor_full_init with mediation on).
#[derive(Debug)]
pub struct AppArmor {
    /// The kernel oracle.
    pub kernel: Kernel,
    /// The bus's own confinement.
    pub bus_con: Con,
}

impl AppArmor {
    /// Reads the bus's own confinement.
    pub fn start() -> Result<AppArmor, String> {
        let f = fns().ok_or("libapparmor is not available")?;
        let (mut label, mut mode): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid out-pointers; on success `label` is a malloc'd
        // NUL-terminated string (and `mode` points into it), freed below.
        if unsafe { (f.aa_getcon)(&mut label, &mut mode) } == -1 {
            return Err(format!(
                "Error getting AppArmor context of bus: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: on success both are NULL or NUL-terminated strings in
        // the allocation `label` owns, copied before it is freed.
        let con = unsafe {
            Con {
                label: if label.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(label).to_string_lossy().into_owned()
                },
                mode: (!mode.is_null())
                    .then(|| CStr::from_ptr(mode).to_string_lossy().into_owned()),
            }
        };
        // SAFETY: `label` came from aa_getcon (malloc) and is freed once.
        unsafe { libc::free(label.cast()) };
        Ok(AppArmor {
            kernel: Kernel { f },
            bus_con: con,
        })
    }
}

#[cfg(test)]
mod tests;
