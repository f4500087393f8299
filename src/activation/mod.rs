//! Service activation. This first slice knows no service files yet: every
//! activation attempt fails with ServiceUnknown, and the activation
//! environment is recorded for later.

use std::rc::Rc;

use crate::broker::bus::Bus;
use crate::broker::peer::Inbound;
use crate::broker::security::Denied;
use crate::driver::{errors, Reply};

/// Tries to activate `name` for a message from `sid` (auto-start). Returns
/// true if activation started (the message is held), false if `name` is
/// not activatable.
pub fn try_activate(bus: &mut Bus, sid: u64, name: &str, msg: Option<Rc<Inbound>>) -> bool {
    let _ = (bus, sid, name, msg);
    false
}

/// StartServiceByName for a name nobody owns.
pub fn start_service_by_name(bus: &mut Bus, sid: u64, name: &str, inb: &Inbound) -> Result<Reply, Denied> {
    let _ = (bus, sid, inb);
    Err(Denied {
        name: errors::SERVICE_UNKNOWN,
        text: format!("The name {name} was not provided by any .service files"),
    })
}

/// A name got a new primary owner: release messages held for it.
pub fn name_acquired(bus: &mut Bus, name: &str) {
    let _ = (bus, name);
}

/// org.freedesktop.systemd1.Activator.ActivationFailure from `sid`.
pub fn systemd_failure(bus: &mut Bus, sid: u64, inb: &Inbound) {
    let _ = (bus, sid, inb);
}

/// Names that have a service file.
pub fn activatable_names(bus: &Bus) -> Vec<String> {
    let _ = bus;
    Vec::new()
}

/// UpdateActivationEnvironment.
pub fn update_environment(bus: &mut Bus, vars: Vec<(String, String)>) {
    for (k, v) in vars {
        if let Some(e) = bus.activation_env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            bus.activation_env.push((k, v));
        }
    }
}

/// The configuration was reloaded: re-read service directories.
pub fn reload(bus: &mut Bus) {
    let _ = bus;
}

/// Connection `id` went away: forget activations it was waiting for.
pub fn peer_gone(bus: &mut Bus, id: u64) {
    let _ = (bus, id);
}

/// Called once at start-up: index service directories.
pub fn startup(bus: &mut Bus) {
    let _ = bus;
}

/// SIGCHLD: reap activated services that exited.
pub fn reap_children(bus: &mut Bus) {
    let _ = bus;
    while let Ok(s) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if matches!(s, nix::sys::wait::WaitStatus::StillAlive) {
            break;
        }
    }
}

/// The earliest activation timeout.
pub fn next_deadline(bus: &Bus) -> Option<std::time::Instant> {
    let _ = bus;
    None
}

/// Fires activation timeouts.
pub fn timers(bus: &mut Bus, now: std::time::Instant) {
    let _ = (bus, now);
}
