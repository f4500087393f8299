//! org.freedesktop.DBus.Monitoring.BecomeMonitor.

use super::{bad_args, denied, errors, reply, Call, Reply};
use crate::broker::bus::Bus;
use crate::broker::matchrule::MatchRule;
use crate::broker::names::NameEvent;
use crate::broker::peer::PeerState;
use crate::broker::security::Denied;

pub(super) fn become_monitor(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let end = r.begin_array(4).map_err(bad_args)?;
    let mut texts = Vec::new();
    while r.pos() < end {
        texts.push(r.string().map_err(bad_args)?);
    }
    let flags = r.u32().map_err(bad_args)?;
    if flags != 0 {
        return Err(denied(
            errors::INVALID_ARGS,
            "BecomeMonitor does not support any flags yet",
        ));
    }
    if texts.is_empty() {
        texts.push("");
    }
    let mut rules = Vec::with_capacity(texts.len());
    for t in texts {
        let mut rule = MatchRule::parse(t).map_err(|e| Denied {
            name: e.error_name(),
            text: e.0.clone(),
        })?;
        // Monitors always eavesdrop.
        rule.eavesdrop = true;
        rules.push(rule);
    }
    if bus.mac.active {
        bus.mac_eavesdrop(c.sid)?;
    }
    // Acknowledge first, then give up every name.
    reply(bus, c, "", &[]);
    let sid = c.sid;
    let mut events = Vec::new();
    if let Some(u) = bus.unique_name(sid) {
        bus.unique.remove(&u);
        events.push(NameEvent::Lost {
            peer: sid,
            name: u.clone(),
        });
        events.push(NameEvent::OwnerChanged {
            name: u,
            old: Some(sid),
            new: None,
        });
    }
    let names: Vec<_> = bus
        .peers
        .get(&sid)
        .map(|p| p.names.clone())
        .unwrap_or_default();
    for n in &names {
        bus.names.remove(n, sid, &mut events);
    }
    if let Some(p) = bus.peers.get_mut(&sid) {
        p.names.clear();
    }
    let dropped = bus.matches.remove_peer(sid);
    bus.match_rules -= dropped;
    bus.emit_name_events(events);
    if let Some(p) = bus.peers.get_mut(&sid) {
        p.state = PeerState::Monitor;
        crate::log::event(
            crate::log::Kind::Monitor,
            crate::log::Level::Info,
            Some(&p.who()),
            &format!(
                "Connection {} ({}) became a monitor.",
                p.name(),
                p.loginfo()
            ),
        );
    }
    bus.monitors.push(sid);
    bus.monitor_rules.insert(sid, rules);
    Ok(Reply::Sent)
}
