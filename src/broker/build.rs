//! Marshalling of the messages the bus itself sends: method returns,
//! errors and signals, always little-endian, always NO_REPLY_EXPECTED.

use crate::wire::header::{field, flags, msg_type, HeaderBuilder};
use crate::wire::Endian;

use super::bus::DBUS_NAME;

/// A little-endian, NO_REPLY_EXPECTED header of type `t`.
fn start(t: u8, body: &[u8], serial: u32) -> HeaderBuilder {
    HeaderBuilder::new(
        Endian::Little,
        t,
        flags::NO_REPLY_EXPECTED,
        body.len() as u32,
        serial,
    )
}

fn finish(mut hb: HeaderBuilder, dest: Option<&str>, sig: &str, body: &[u8]) -> Vec<u8> {
    if let Some(d) = dest {
        hb.string(field::DESTINATION, d);
    }
    hb.string(field::SENDER, DBUS_NAME);
    if !sig.is_empty() {
        hb.signature(sig);
    }
    let mut out = hb.finish();
    out.extend_from_slice(body);
    out
}

/// A method return from the driver.
pub fn method_return(
    serial: u32,
    reply_serial: u32,
    dest: Option<&str>,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut hb = start(msg_type::METHOD_RETURN, body, serial);
    hb.u32(field::REPLY_SERIAL, reply_serial);
    finish(hb, dest, sig, body)
}

/// A method return with neither SENDER nor DESTINATION: what dbus-daemon's
/// own connection sends when it answers a Peer method that had no
/// destination.
pub fn anonymous_return(serial: u32, reply_serial: u32, sig: &str, body: &[u8]) -> Vec<u8> {
    let mut hb = start(msg_type::METHOD_RETURN, body, serial);
    hb.u32(field::REPLY_SERIAL, reply_serial);
    if !sig.is_empty() {
        hb.signature(sig);
    }
    let mut out = hb.finish();
    out.extend_from_slice(body);
    out
}

/// An error from the driver with a single string argument.
pub fn error(
    serial: u32,
    reply_serial: u32,
    dest: Option<&str>,
    name: &str,
    text: &str,
) -> Vec<u8> {
    let mut w = crate::wire::marshal::Writer::new();
    w.string(text);
    let body = w.into_bytes();
    let mut hb = start(msg_type::ERROR, &body, serial);
    hb.string(field::ERROR_NAME, name);
    hb.u32(field::REPLY_SERIAL, reply_serial);
    finish(hb, dest, "s", &body)
}

/// A signal or method call from the bus, addressed by path/interface/member.
#[allow(clippy::too_many_arguments)]
fn addressed(
    t: u8,
    serial: u32,
    dest: Option<&str>,
    path: &str,
    iface: &str,
    member: &str,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut hb = start(t, body, serial);
    hb.string(field::PATH, path);
    hb.string(field::INTERFACE, iface);
    hb.string(field::MEMBER, member);
    finish(hb, dest, sig, body)
}

/// A signal from the driver (unicast when `dest` is given).
pub fn signal(
    serial: u32,
    dest: Option<&str>,
    path: &str,
    iface: &str,
    member: &str,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    addressed(
        msg_type::SIGNAL,
        serial,
        dest,
        path,
        iface,
        member,
        sig,
        body,
    )
}

/// A method call from the bus (used to forward environment updates to systemd).
pub fn method_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    addressed(
        msg_type::METHOD_CALL,
        serial,
        Some(dest),
        path,
        iface,
        member,
        sig,
        body,
    )
}
