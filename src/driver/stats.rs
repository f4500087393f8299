//! org.freedesktop.DBus.Debug.Stats.

use super::{bad_args, denied, errors, Call, Reply};
use crate::broker::bus::{Bus, DBUS_NAME};
use crate::broker::peer::PeerState;
use crate::broker::security::Denied;
use crate::wire::marshal::Writer;

fn entry_u32(w: &mut Writer, k: &str, v: u64) {
    w.begin_struct();
    w.string(k);
    w.variant("u");
    w.u32(u32::try_from(v).unwrap_or(u32::MAX));
}

pub(super) fn get_stats(bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    let serial = bus.next_serial();
    let active = bus
        .peers()
        .filter(|p| {
            !matches!(
                p.state,
                PeerState::Authenticating(_) | PeerState::WaitingHello
            )
        })
        .count();
    let incomplete = bus.n_peers() - active;
    let mut w = Writer::new();
    let a = w.begin_array(8);
    entry_u32(&mut w, "Serial", serial.into());
    // libdbus memory-pool figures: busbar has no such pools; reported as 0
    // so that tools reading dbus-daemon's keys find them.
    entry_u32(&mut w, "ListMemPoolUsedBytes", 0);
    entry_u32(&mut w, "ListMemPoolCachedBytes", 0);
    entry_u32(&mut w, "ListMemPoolAllocatedBytes", 0);
    entry_u32(&mut w, "ActiveConnections", active as u64);
    entry_u32(&mut w, "IncompleteConnections", incomplete as u64);
    entry_u32(&mut w, "MatchRules", bus.match_rules() as u64);
    entry_u32(
        &mut w,
        "PeakMatchRules",
        bus.stats().peak_match_rules as u64,
    );
    entry_u32(
        &mut w,
        "PeakMatchRulesPerConnection",
        bus.stats().peak_match_rules_per_conn as u64,
    );
    entry_u32(
        &mut w,
        "BusNames",
        (bus.names().len() + bus.n_unique()) as u64,
    );
    entry_u32(&mut w, "PeakBusNames", bus.stats().peak_bus_names as u64);
    entry_u32(
        &mut w,
        "PeakBusNamesPerConnection",
        bus.stats().peak_bus_names_per_conn as u64,
    );
    w.end_array(a);
    Ok(Reply::Body("a{sv}", w.into_bytes()))
}

pub(super) fn get_connection_stats(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    if name == DBUS_NAME {
        return Err(denied(
            errors::INVALID_ARGS,
            format!(
                "GetConnectionStats is not meaningful for the message bus \"{DBUS_NAME}\" itself"
            ),
        ));
    }
    let Some(id) = bus.lookup(name) else {
        return Err(denied(
            errors::NAME_HAS_NO_OWNER,
            format!("Could not get statistics of name '{name}': no such name"),
        ));
    };
    let serial = bus.next_serial();
    let Some(p) = bus.peer(id) else {
        return Err(denied(errors::NAME_HAS_NO_OWNER, "no such connection"));
    };
    let mut w = Writer::new();
    let a = w.begin_array(8);
    entry_u32(&mut w, "Serial", serial.into());
    entry_u32(&mut w, "MatchRules", bus.matches().count_of(id) as u64);
    entry_u32(&mut w, "PeakMatchRules", p.stats.peak_match_rules);
    entry_u32(&mut w, "BusNames", p.names.len() as u64 + 1);
    entry_u32(&mut w, "PeakBusNames", p.stats.peak_bus_names);
    w.begin_struct();
    w.string("UniqueName");
    w.variant("s");
    w.string(p.name());
    // As libdbus reports them: what is queued now, and the peaks.
    // Incoming: the bytes and fds of this peer's messages still alive in
    // the bus (what max_incoming_bytes/_unix_fds limit), like libdbus.
    entry_u32(&mut w, "IncomingMessages", 0);
    entry_u32(&mut w, "IncomingBytes", p.live.bytes.get());
    entry_u32(&mut w, "IncomingFDs", p.live.fds.get());
    entry_u32(&mut w, "PeakIncomingBytes", p.stats.peak_in_bytes);
    entry_u32(&mut w, "PeakIncomingFDs", p.stats.peak_in_fds);
    entry_u32(&mut w, "OutgoingMessages", p.out.len() as u64);
    entry_u32(&mut w, "OutgoingBytes", p.out_bytes as u64);
    entry_u32(&mut w, "OutgoingFDs", p.out_fds as u64);
    entry_u32(&mut w, "PeakOutgoingBytes", p.stats.peak_out_bytes);
    entry_u32(&mut w, "PeakOutgoingFDs", p.stats.peak_out_fds);
    w.end_array(a);
    Ok(Reply::Body("a{sv}", w.into_bytes()))
}

pub(super) fn get_all_match_rules(bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    let mut conns: Vec<(u64, &str)> = bus.unique_names().map(|(n, id)| (id, &**n)).collect();
    conns.sort_unstable();
    let mut w = Writer::new();
    let a = w.begin_array(8);
    for (id, name) in conns {
        w.begin_struct();
        w.string(name);
        let inner = w.begin_array(4);
        for r in bus.matches().rules_of(id) {
            w.string(&r.to_string());
        }
        w.end_array(inner);
    }
    w.end_array(a);
    Ok(Reply::Body("a{sas}", w.into_bytes()))
}
