//! org.freedesktop.DBus.Monitoring.BecomeMonitor.

use super::{bad_args, denied, errors, reply, Call, Reply};
use crate::broker::bus::Bus;
use crate::broker::matchrule::MatchRule;
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
    if bus.mac().active {
        bus.mac_eavesdrop(c.sid)?;
    }
    // Acknowledge first, then give up every name.
    reply(bus, c, "", &[]);
    bus.become_monitor(c.sid, rules);
    Ok(Reply::Sent)
}
