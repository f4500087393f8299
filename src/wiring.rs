//! The daemon's side of [`crate::broker::upcalls::Upcalls`]: what the
//! broker's calls upwards reach (the driver, activation, reloading and
//! re-exec). Wired into the bus once at start-up.

use crate::broker::bus::Bus;
use crate::broker::peer::{Inbound, OutMsg};
use crate::broker::security::Denied;
use crate::broker::upcalls::Upcalls;
use crate::cli::ConfigChoice;

/// The layers above the broker, as the daemon puts them together.
#[derive(Debug)]
pub struct Wiring {
    /// Where the configuration comes from (for reloads).
    pub config_source: ConfigChoice,
    /// Reexec calls waiting for the loop to act on them: (caller, serial).
    pub reexec_requests: std::cell::RefCell<Vec<(u64, u32)>>,
}

impl Upcalls for Wiring {
    fn driver(&self, bus: &mut Bus, sid: u64, inb: &Inbound) -> bool {
        crate::driver::handle(bus, sid, inb)
    }

    fn peer_method(&self, bus: &mut Bus, sid: u64, inb: &Inbound) -> bool {
        crate::driver::peer_iface::handle(bus, sid, inb)
    }

    fn auto_start(
        &self,
        bus: &mut Bus,
        sid: u64,
        name: &str,
        inb: crate::broker::peer::Shared,
        out: OutMsg,
    ) -> Result<(), Denied> {
        crate::activation::auto_start(bus, sid, name, inb, out)
    }

    fn reload(&self, bus: &mut Bus) -> Result<(), String> {
        crate::reload::reload(bus, &self.config_source)
    }

    fn reexec(&self, _bus: &mut Bus, sid: u64, serial: u32) {
        // The loop re-executes between rounds, when no message is half
        // dispatched; the caller is answered then.
        self.reexec_requests.borrow_mut().push((sid, serial));
    }
}
