//! systemd readiness notification (sd_notify), written out: one datagram
//! to $NOTIFY_SOCKET. READY=1 after start-up, RELOADING=1/READY=1 around a
//! reload and STOPPING=1 at exit, as dbus-daemon sends them.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<SocketAddr>> = OnceLock::new();
static VAR: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();

/// $NOTIFY_SOCKET as the bus got it (it is removed from the environment so
/// activated services do not inherit it; a re-exec passes it on).
pub fn socket_var() -> Option<&'static std::ffi::OsString> {
    VAR.get().and_then(|v| v.as_ref())
}

fn target() -> Option<&'static SocketAddr> {
    TARGET
        .get_or_init(|| {
            let path = std::env::var_os("NOTIFY_SOCKET");
            let _ = VAR.set(path.clone());
            let path = path?;
            // Activated services must not inherit it.
            std::env::remove_var("NOTIFY_SOCKET");
            let bytes = path.as_encoded_bytes();
            match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok(),
                None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok(),
            }
        })
        .as_ref()
}

/// Reads $NOTIFY_SOCKET once (call early, before spawning anything).
pub fn init() {
    let _ = target();
}

/// Sends `state` (e.g. "READY=1") if systemd asked for notifications.
pub fn notify(state: &str) {
    let Some(addr) = target() else { return };
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to_addr(state.as_bytes(), addr);
    }
}
