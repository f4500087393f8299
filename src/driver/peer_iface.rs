//! org.freedesktop.DBus.Peer, on the driver and for unaddressed calls.

use super::{Call, Reply};
use crate::broker::bus::Bus;
use crate::broker::peer::Inbound;
use crate::broker::security::Denied;
use crate::wire::marshal::Writer;

/// The machine id (32 hex digits), from /etc/machine-id or /var/lib/dbus/machine-id.
pub fn machine_id() -> Option<String> {
    for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let s = s.trim();
            if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(s.to_string());
            }
        }
    }
    None
}

pub(super) fn ping(_bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    Ok(Reply::Body("", Vec::new()))
}

pub(super) fn get_machine_id(_bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    match machine_id() {
        Some(id) => {
            let mut w = Writer::new();
            w.string(&id);
            Ok(Reply::Body("s", w.into_bytes()))
        }
        None => Err(Denied {
            name: super::errors::FAILED,
            text: "Unable to load machine ID: no valid /etc/machine-id".into(),
        }),
    }
}

/// Answers Peer.Ping/GetMachineId sent with no destination. Returns false
/// for other members.
pub fn handle(bus: &mut Bus, sid: u64, inb: &Inbound) -> bool {
    let c = Call { sid, inb };
    let r = match c.member() {
        "Ping" => ping(bus, &c),
        "GetMachineId" => get_machine_id(bus, &c),
        _ => return false,
    };
    match r {
        Ok(Reply::Body(sig, body)) => {
            if !inb.header().no_reply_expected() {
                let serial = bus.next_serial();
                let bytes = super::build::anonymous_return(serial, inb.header().serial, sig, &body);
                bus.send_from_driver(sid, bytes);
            }
        }
        Ok(Reply::Sent) => {}
        Err(d) => bus.send_error(sid, inb.header(), d.name, &d.text),
    }
    true
}
