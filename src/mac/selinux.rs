//! SELinux mediation with the semantics of dbus-daemon's bus/selinux.c:
//! `acquire_svc` when a connection asks for a name (checked against the
//! context `<associate>`d with the name, or the bus's own), `send_msg` for
//! every message a connection sends (against the recipient's context, or
//! the bus's for messages to the driver). Decisions come from libselinux's
//! access vector cache, which also writes the AVC records (through the log
//! callback, see [`super::audit`]); enforcing versus permissive is the
//! AVC's business, as in dbus-daemon. Policy reloads arrive on the AVC's
//! netlink socket, which the daemon's loop watches ([`Selinux::netlink_fd`]);
//! a reload re-reads the bus configuration, as dbus-daemon's SIGHUP does.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use super::dl::{load_fns, Lib};

/// libselinux's security_id_t: a pointer into its SID table, valid for the
/// life of the process (the table is never destroyed while busbar runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sid(*mut c_void);

/// struct avc_entry_ref: one pointer, a hint the AVC updates.
#[repr(C)]
struct AvcEntryRef {
    ae: *mut c_void,
}

/// union selinux_callback: every member is a function pointer, so the
/// union is passed exactly as one pointer.
#[repr(C)]
#[derive(Clone, Copy)]
union Callback {
    log: unsafe extern "C" fn(c_int, *const c_char, ...) -> c_int,
    audit: extern "C" fn(*mut c_void, u16, *mut c_char, usize) -> c_int,
    policyload: extern "C" fn(c_int) -> c_int,
}

const SELINUX_CB_LOG: c_int = 0;
const SELINUX_CB_AUDIT: c_int = 1;
const SELINUX_CB_POLICYLOAD: c_int = 4;
/// Log types libselinux passes to the log callback.
pub const SELINUX_ERROR: c_int = 0;
/// An AVC record (a decision to audit).
pub const SELINUX_AVC: c_int = 3;
/// A policy load notice.
pub const SELINUX_POLICYLOAD: c_int = 4;
/// An enforcing/permissive change notice.
pub const SELINUX_SETENFORCE: c_int = 5;

/// The functions of libselinux.so.1 busbar calls (prototypes from
/// <selinux/selinux.h> and <selinux/avc.h>).
struct Fns {
    is_selinux_enabled: unsafe extern "C" fn() -> c_int,
    avc_open: unsafe extern "C" fn(*mut c_void, c_uint) -> c_int,
    avc_netlink_acquire_fd: unsafe extern "C" fn() -> c_int,
    avc_netlink_check_nb: unsafe extern "C" fn() -> c_int,
    selinux_set_callback: unsafe extern "C" fn(c_int, Callback),
    getcon: unsafe extern "C" fn(*mut *mut c_char) -> c_int,
    freecon: unsafe extern "C" fn(*mut c_char),
    avc_context_to_sid: unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> c_int,
    avc_sid_to_context: unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> c_int,
    string_to_security_class: unsafe extern "C" fn(*const c_char) -> u16,
    string_to_av_perm: unsafe extern "C" fn(u16, *const c_char) -> u32,
    security_deny_unknown: unsafe extern "C" fn() -> c_int,
    avc_has_perm: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        u16,
        u32,
        *mut AvcEntryRef,
        *mut c_void,
    ) -> c_int,
    selinux_policy_root: unsafe extern "C" fn() -> *const c_char,
}

fn fns() -> Option<&'static Fns> {
    static FNS: std::sync::OnceLock<Option<Fns>> = std::sync::OnceLock::new();
    FNS.get_or_init(|| {
        let lib = Lib::open(c"libselinux.so.1")?;
        load_fns!(
            &lib,
            Fns {
                is_selinux_enabled: "is_selinux_enabled",
                avc_open: "avc_open",
                avc_netlink_acquire_fd: "avc_netlink_acquire_fd",
                avc_netlink_check_nb: "avc_netlink_check_nb",
                selinux_set_callback: "selinux_set_callback",
                getcon: "getcon",
                freecon: "freecon",
                avc_context_to_sid: "avc_context_to_sid",
                avc_sid_to_context: "avc_sid_to_context",
                string_to_security_class: "string_to_security_class",
                string_to_av_perm: "string_to_av_perm",
                security_deny_unknown: "security_deny_unknown",
                avc_has_perm: "avc_has_perm",
                selinux_policy_root: "selinux_policy_root",
            }
        )
    })
    .as_ref()
}

/// Whether the kernel has SELinux enabled (dbus-daemon's
/// bus_selinux_pre_init). False without libselinux, as for a dbus-daemon
/// built without SELinux.
pub fn enabled() -> Result<bool, String> {
    let Some(f) = fns() else { return Ok(false) };
    // SAFETY: is_selinux_enabled takes no arguments and only reads
    // selinuxfs and /proc.
    let r = unsafe { (f.is_selinux_enabled)() };
    if r < 0 {
        return Err(format!(
            "Could not tell if SELinux is enabled: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(r != 0)
}

/// selinux_policy_root(), for `<include selinux_root_relative="yes">`.
pub fn policy_root() -> Option<std::path::PathBuf> {
    let f = fns()?;
    // SAFETY: selinux_policy_root takes no arguments and returns NULL or a
    // NUL-terminated string owned by libselinux that stays valid until the
    // next call that re-reads /etc/selinux/config; it is copied at once.
    let p = unsafe { (f.selinux_policy_root)() };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is non-NULL and NUL-terminated (above).
    let s = unsafe { CStr::from_ptr(p) };
    Some(std::path::PathBuf::from(
        std::ffi::OsStr::new(&*s.to_string_lossy()).to_owned(),
    ))
}

extern "C" {
    /// The variadic log callback, in src/mac/selinux_log.c.
    fn busbar_mac_selinux_log_cb(t: c_int, fmt: *const c_char, ...) -> c_int;
}

/// Called by the C shim with a formatted libselinux message.
#[no_mangle]
extern "C" fn busbar_mac_selinux_log(t: c_int, msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    // SAFETY: the shim passes its own NUL-terminated buffer (vsnprintf
    // always terminates it), valid for the duration of this call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    super::audit::selinux_message(t, &text);
}

/// SELINUX_CB_AUDIT: copies the supplementary audit text (the `auditdata`
/// busbar passed to avc_has_perm) into libselinux's buffer.
extern "C" fn audit_callback(
    data: *mut c_void,
    _class: u16,
    buf: *mut c_char,
    left: usize,
) -> c_int {
    if data.is_null() || buf.is_null() || left == 0 {
        return 0;
    }
    // SAFETY: `data` is the pointer busbar passed to avc_has_perm: a
    // CString alive for the whole call, of which this is a part.
    let aux = unsafe { CStr::from_ptr(data as *const c_char) }.to_bytes();
    let text: &[u8] = if left > aux.len() {
        aux
    } else {
        b"Buffer too small for audit message"
    };
    if left > text.len() {
        // SAFETY: `buf` has `left` writable bytes (libselinux's contract)
        // and `left > text.len()`, so the text and its NUL fit; the
        // regions cannot overlap (ours is a separate allocation or static).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
    }
    0
}

/// SELINUX_CB_POLICYLOAD: as dbus-daemon, a policy load re-reads the
/// configuration (SIGHUP, which the loop takes from its signalfd).
extern "C" fn policyload_callback(_seqno: c_int) -> c_int {
    // SAFETY: raise has no preconditions; SIGHUP is blocked and read by
    // the loop's signalfd, so no handler runs here.
    unsafe { libc::raise(libc::SIGHUP) }
}

/// The AVC, started (dbus-daemon's bus_selinux_full_init).
#[derive(Debug)]
pub struct Selinux {
    f: &'static Fns,
    bus_sid: Sid,
    netlink_fd: c_int,
    aeref: Cell<*mut c_void>,
}

impl std::fmt::Debug for Fns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("libselinux")
    }
}

fn errno_text() -> String {
    std::io::Error::last_os_error().to_string()
}

impl Selinux {
    /// Opens the AVC, takes its netlink socket, installs the callbacks and
    /// finds the bus's own SID. Call only when [`enabled`] said so.
    pub fn start() -> Result<Selinux, String> {
        let f = fns().ok_or("libselinux is not available")?;
        let g = f;
        // SAFETY: avc_open(NULL, 0) is documented to take no options.
        if unsafe { (g.avc_open)(std::ptr::null_mut(), 0) } < 0 {
            return Err(format!(
                "Failed to start Access Vector Cache (AVC): {}",
                errno_text()
            ));
        }
        // SAFETY: no arguments; the AVC is open.
        let fd = unsafe { (g.avc_netlink_acquire_fd)() };
        if fd < 0 {
            return Err(format!("Cannot acquire AVC netlink fd: {}", errno_text()));
        }
        // SAFETY: `fd` is the AVC's open netlink socket; setting FD_CLOEXEC
        // on it changes nothing else.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // SAFETY: each callback has exactly the C signature of the union
        // member it is stored in, and lives for the whole process.
        unsafe {
            (g.selinux_set_callback)(
                SELINUX_CB_POLICYLOAD,
                Callback {
                    policyload: policyload_callback,
                },
            );
            (g.selinux_set_callback)(
                SELINUX_CB_AUDIT,
                Callback {
                    audit: audit_callback,
                },
            );
            (g.selinux_set_callback)(
                SELINUX_CB_LOG,
                Callback {
                    log: busbar_mac_selinux_log_cb,
                },
            );
        }
        let mut con: *mut c_char = std::ptr::null_mut();
        // SAFETY: `con` is a valid out-pointer; on success it receives a
        // string we free with freecon below.
        if unsafe { (g.getcon)(&mut con) } < 0 {
            return Err(format!("Error getting context of bus: {}", errno_text()));
        }
        let mut sid: *mut c_void = std::ptr::null_mut();
        // SAFETY: `con` is the NUL-terminated context getcon returned;
        // `sid` is a valid out-pointer.
        let r = unsafe { (g.avc_context_to_sid)(con, &mut sid) };
        let e = errno_text();
        // SAFETY: `con` came from getcon and is freed once.
        unsafe { (g.freecon)(con) };
        if r < 0 {
            return Err(format!("Error getting SID from bus context: {e}"));
        }
        Ok(Selinux {
            f,
            bus_sid: Sid(sid),
            netlink_fd: fd,
            aeref: Cell::new(std::ptr::null_mut()),
        })
    }

    /// The AVC's netlink socket, to watch for readability.
    pub fn netlink_fd(&self) -> c_int {
        self.netlink_fd
    }

    /// The netlink socket is readable: let the AVC process the notices
    /// (policy loads, enforcing changes), as dbus-daemon's watch does.
    pub fn netlink_ready(&self) {
        // SAFETY: no arguments; the AVC is open.
        if unsafe { (self.f.avc_netlink_check_nb)() } < 0 {
            crate::log::warning(&format!(
                "Failed to check the netlink socket for pending messages and process them: {}",
                errno_text()
            ));
        }
    }

    /// The SID of a context, or the error text dbus-daemon prints.
    pub fn sid_of(&self, context: &[u8]) -> Result<Sid, String> {
        let c = CString::new(context.split(|&b| b == 0).next().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let mut sid: *mut c_void = std::ptr::null_mut();
        // SAFETY: `c` is NUL-terminated and outlives the call; `sid` is a
        // valid out-pointer.
        if unsafe { (self.f.avc_context_to_sid)(c.as_ptr(), &mut sid) } < 0 {
            return Err(format!(
                "Error getting SID from context \"{}\": {}",
                c.to_string_lossy(),
                errno_text()
            ));
        }
        Ok(Sid(sid))
    }

    /// The context of a SID (GetConnectionSELinuxSecurityContext).
    pub fn context_of(&self, sid: Sid) -> Result<Vec<u8>, String> {
        let mut con: *mut c_char = std::ptr::null_mut();
        // SAFETY: `sid.0` came from avc_context_to_sid and stays valid;
        // `con` is a valid out-pointer, freed with freecon below.
        if unsafe { (self.f.avc_sid_to_context)(sid.0, &mut con) } < 0 {
            return Err(format!(
                "Error getting context from SID: {}\n",
                errno_text()
            ));
        }
        // SAFETY: on success `con` is a NUL-terminated string.
        let v = unsafe { CStr::from_ptr(con) }.to_bytes().to_vec();
        // SAFETY: `con` came from avc_sid_to_context and is freed once.
        unsafe { (self.f.freecon)(con) };
        Ok(v)
    }

    /// The bus's own SID.
    pub fn bus_sid(&self) -> Sid {
        self.bus_sid
    }

    /// dbus-daemon's bus_selinux_check: whether `ssid` has `perm` of class
    /// "dbus" on `tsid` (None: the bus's own context); `aux` goes into the
    /// AVC record.
    pub fn check(&self, ssid: Sid, tsid: Option<Sid>, perm: &CStr, aux: &str) -> bool {
        let g = self.f;
        let class_name = c"dbus";
        // SAFETY: NUL-terminated argument; the result is a plain number.
        let class = unsafe { (g.string_to_security_class)(class_name.as_ptr()) };
        // SAFETY: no arguments.
        let deny_unknown = || unsafe { (g.security_deny_unknown)() } != 0;
        if class == 0 {
            super::audit::selinux_message(SELINUX_ERROR, "Unknown class dbus");
            return !deny_unknown();
        }
        // SAFETY: `class` is a valid class value; `perm` is NUL-terminated.
        let av = unsafe { (g.string_to_av_perm)(class, perm.as_ptr()) };
        if av == 0 {
            super::audit::selinux_message(
                SELINUX_ERROR,
                &format!(
                    "Unknown permission {} for class dbus",
                    perm.to_string_lossy()
                ),
            );
            return !deny_unknown();
        }
        let aux = CString::new(aux.replace('\0', "")).unwrap_or_default();
        let mut aeref = AvcEntryRef {
            ae: self.aeref.get(),
        };
        // SAFETY: the SIDs come from avc_context_to_sid (valid for the
        // process); `aeref` is a live, initialised entry reference; `aux`
        // is the NUL-terminated string audit_callback reads, alive until
        // avc_has_perm returns. The AVC is single-threaded here (no AVC
        // threads were started) and only this thread calls it.
        let r = unsafe {
            (g.avc_has_perm)(
                ssid.0,
                tsid.unwrap_or(self.bus_sid).0,
                class,
                av,
                &mut aeref,
                aux.as_ptr() as *mut c_void,
            )
        };
        self.aeref.set(aeref.ae);
        r >= 0
    }
}
