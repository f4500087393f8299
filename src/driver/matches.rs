//! AddMatch and RemoveMatch.

use super::{bad_args, denied, errors, Call, Reply};
use crate::broker::bus::Bus;
use crate::broker::matchrule::MatchRule;
use crate::broker::security::Denied;

fn parse(text: &str) -> Result<MatchRule, Denied> {
    MatchRule::parse(text).map_err(|e| Denied {
        name: e.error_name(),
        text: e.0.clone(),
    })
}

pub(super) fn add_match(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let limit = bus.limits().max_match_rules_per_connection;
    let count = bus.matches().count_of(c.sid) as u64;
    let text = c.args().string().map_err(bad_args)?;
    let rule = if count >= limit {
        None
    } else {
        let rule = parse(text)?;
        // Eavesdropping is for the bus's own user and root (dbus-daemon 1.14).
        if rule.eavesdrop {
            super::check_privileged(bus, c)?;
            if bus.mac().active {
                bus.mac_eavesdrop(c.sid)?;
            }
        }
        Some(rule)
    };
    let Some(p) = bus.peer(c.sid) else {
        return Ok(Reply::Sent);
    };
    let Some(rule) = rule else {
        let text = format!(
            "Connection \"{}\" is not allowed to add more match rules (increase limits in configuration file if required; max_match_rules_per_connection={limit})",
            p.name()
        );
        crate::log::peer_warning(crate::log::Kind::LimitReached, &p.who(), &text);
        return Err(denied(errors::LIMITS_EXCEEDED, text));
    };
    bus.add_match(c.sid, rule);
    Ok(Reply::Body("", Vec::new()))
}

pub(super) fn remove_match(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let text = c.args().string().map_err(bad_args)?;
    let rule = parse(text)?;
    if !bus.has_peer(c.sid) {
        return Ok(Reply::Sent);
    }
    // Remove the most recently added identical rule, as dbus-daemon does.
    if bus.remove_match(c.sid, &rule) {
        Ok(Reply::Body("", Vec::new()))
    } else {
        Err(denied(
            errors::MATCH_RULE_NOT_FOUND,
            "The given match rule wasn't found and can't be removed",
        ))
    }
}
