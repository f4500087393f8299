//! The calls the broker makes upwards, into the driver and activation (and,
//! for ReloadConfig and re-exec, the daemon). The broker names only this
//! trait; the daemon implements it and hands it to the bus at start-up, so
//! no import in src/broker points to a layer above it.

use super::bus::Bus;
use super::peer::{Inbound, OutMsg, Shared};
use super::security::Denied;

/// What the broker asks of the layers above it.
pub trait Upcalls: std::fmt::Debug {
    /// A message addressed to org.freedesktop.DBus: the driver handles it.
    /// Returns whether it accepted it (eavesdroppers then see it too).
    fn driver(&self, bus: &mut Bus, sid: u64, inb: &Inbound) -> bool;
    /// A method call without a destination: the driver answers
    /// org.freedesktop.DBus.Peer methods. Returns whether it did.
    fn peer_method(&self, bus: &mut Bus, sid: u64, inb: &Inbound) -> bool;
    /// A method call from `sid` to the unowned `name` that may auto-start
    /// it. Err is the error to send back.
    fn auto_start(
        &self,
        bus: &mut Bus,
        sid: u64,
        name: &str,
        inb: Shared,
        out: OutMsg,
    ) -> Result<(), Denied>;
    /// ReloadConfig (and SIGHUP): reload the configuration from disk.
    fn reload(&self, bus: &mut Bus) -> Result<(), String>;
    /// org.busbar.Daemon1.Reexec from `sid` (call serial `serial`): the
    /// daemon decides, and answers the caller.
    fn reexec(&self, bus: &mut Bus, sid: u64, serial: u32);
}

/// The upcalls of a bus nobody wired: no driver, no activation. Only for
/// a bus that is being set up (and for tests of the broker alone).
#[derive(Debug, Default)]
pub struct Unwired;

impl Upcalls for Unwired {
    fn driver(&self, _: &mut Bus, _: u64, _: &Inbound) -> bool {
        false
    }
    fn peer_method(&self, _: &mut Bus, _: u64, _: &Inbound) -> bool {
        false
    }
    fn auto_start(
        &self,
        _: &mut Bus,
        _: u64,
        name: &str,
        _: Shared,
        _: OutMsg,
    ) -> Result<(), Denied> {
        Err(Denied {
            name: super::errors::SERVICE_UNKNOWN,
            text: format!("The name {name} was not provided by any .service files"),
        })
    }
    fn reload(&self, _: &mut Bus) -> Result<(), String> {
        Ok(())
    }
    fn reexec(&self, bus: &mut Bus, sid: u64, serial: u32) {
        bus.send_error_serial(
            sid,
            serial,
            super::errors::FAILED,
            "Re-exec is not available",
        );
    }
}
