//! Hello and the name methods.

use std::rc::Rc;

use super::{bad_args, denied, errors, reply, Call, Reply};
use crate::broker::bus::{Bus, DBUS_NAME};
use crate::broker::names::{release_reply, NameEvent};
use crate::broker::peer::PeerState;
use crate::broker::security::Denied;
use crate::wire::marshal::Writer;
use crate::wire::names::validate_bus_name;

fn string_body(s: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(s);
    w.into_bytes()
}

fn u32_body(v: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(v);
    w.into_bytes()
}

fn strings_body<'a>(items: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut w = Writer::new();
    let a = w.begin_array(4);
    for s in items {
        w.string(s);
    }
    w.end_array(a);
    w.into_bytes()
}

pub(super) fn hello(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let Some(p) = bus.peers.get(&c.sid) else {
        return Ok(Reply::Sent);
    };
    let p_uid = p.auth_uid;
    if p.unique_name.is_some() {
        return Err(denied(errors::FAILED, "Already handled an Hello message"));
    }
    if bus.completed >= bus.config.limits.max_completed_connections {
        return Err(denied(
            errors::LIMITS_EXCEEDED,
            "The maximum number of active connections has been reached",
        ));
    }
    if let Some(uid) = p_uid {
        let limit = bus.config.limits.max_connections_per_user;
        if bus.users.active(uid) >= limit {
            let who = bus.peers.get(&c.sid).map(|p| p.who()).unwrap_or_default();
            crate::log::peer_warning(
                crate::log::Kind::ConnectionRefused,
                &who,
                &format!(
                    "The maximum number of active connections for UID {uid} has been reached (max_connections_per_user={limit})"
                ),
            );
            return Err(denied(
                errors::LIMITS_EXCEEDED,
                format!("The maximum number of active connections for UID {uid} has been reached"),
            ));
        }
    }
    let name: Rc<str> = Rc::from(format!(":1.{}", bus.next_unique));
    bus.next_unique += 1;
    if let Some(p) = bus.peers.get_mut(&c.sid) {
        p.unique_name = Some(name.clone());
        p.state = PeerState::Active;
    }
    bus.disarm_auth_deadline(c.sid);
    bus.incomplete = bus.incomplete.saturating_sub(1);
    bus.completed += 1;
    if let Some(uid) = p_uid {
        bus.users.add_active(uid);
    }
    bus.unique.insert(name.clone(), c.sid);
    bus.capture_hello(c.sid, c.inb);
    reply(bus, c, "s", &string_body(&name));
    bus.emit_name_events(vec![
        NameEvent::OwnerChanged {
            name: name.clone(),
            old: None,
            new: Some(c.sid),
        },
        NameEvent::Acquired { peer: c.sid, name },
    ]);
    Ok(Reply::Sent)
}

fn caller_name(bus: &Bus, sid: u64) -> String {
    bus.peers
        .get(&sid)
        .map(|p| p.name().to_string())
        .unwrap_or_else(|| "(inactive)".into())
}

/// Number of names a connection is in the queue of, plus its unique name.
fn names_owned(bus: &Bus, sid: u64) -> u64 {
    bus.peers.get(&sid).map_or(0, |p| p.names.len() as u64 + 1)
}

pub(super) fn request_name(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let name = r.string().map_err(bad_args)?;
    let flags = r.u32().map_err(bad_args)?;
    if validate_bus_name(name).is_err() {
        return Err(denied(
            errors::INVALID_ARGS,
            format!("Requested bus name \"{name}\" is not valid"),
        ));
    }
    if name.starts_with(':') {
        return Err(denied(
            errors::INVALID_ARGS,
            format!("Cannot acquire a service starting with ':' such as \"{name}\""),
        ));
    }
    let who = caller_name(bus, c.sid);
    if name == DBUS_NAME {
        return Err(denied(
            errors::INVALID_ARGS,
            format!(
                "Connection \"{who}\" is not allowed to own the service \"{DBUS_NAME}\"because it is reserved for D-Bus' use only"
            ),
        ));
    }
    if bus.mac.active {
        bus.mac_acquire(c.sid, name)?;
    }
    let allowed = bus
        .peers
        .get(&c.sid)
        .is_some_and(|p| p.policy.can_own(name));
    if !allowed {
        return Err(denied(
            errors::ACCESS_DENIED,
            format!(
                "Connection \"{who}\" is not allowed to own the service \"{name}\" due to security policies in the configuration file"
            ),
        ));
    }
    let limit = bus.config.limits.max_names_per_connection;
    if names_owned(bus, c.sid) >= limit && !bus.names.in_queue(name, c.sid) {
        let text = format!(
            "Connection \"{who}\" is not allowed to own more services (increase limits in configuration file if required; max_names_per_connection={limit})"
        );
        let who = bus.peers.get(&c.sid).map(|p| p.who()).unwrap_or_default();
        crate::log::peer_warning(crate::log::Kind::LimitReached, &who, &text);
        return Err(denied(errors::LIMITS_EXCEEDED, text));
    }
    let mut events = Vec::new();
    let code = bus.names.request(name, c.sid, flags, &mut events);
    sync_peer_names(bus, c.sid, name);
    bus.emit_name_events(events);
    if bus.names.owner(name) == Some(c.sid) {
        crate::activation::name_acquired(bus, name);
    }
    let per_conn = names_owned(bus, c.sid) as usize;
    bus.stats.peak_bus_names = bus.stats.peak_bus_names.max(bus.names.len());
    bus.stats.peak_bus_names_per_conn = bus.stats.peak_bus_names_per_conn.max(per_conn);
    Ok(Reply::Body("u", u32_body(code)))
}

/// Keeps a connection's list of names in step with the registry.
fn sync_peer_names(bus: &mut Bus, sid: u64, name: &str) {
    let queued = bus.names.in_queue(name, sid);
    let key = bus.names.key(name);
    if let Some(p) = bus.peers.get_mut(&sid) {
        let pos = p.names.iter().position(|n| &**n == name);
        match (queued, pos, key) {
            (true, None, Some(k)) => p.names.push(k),
            (false, Some(i), _) => {
                p.names.remove(i);
            }
            _ => {}
        }
    }
}

pub(super) fn release_name(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    if validate_bus_name(name).is_err() {
        return Err(denied(
            errors::INVALID_ARGS,
            format!("Given bus name \"{name}\" is not valid"),
        ));
    }
    if name.starts_with(':') {
        return Err(denied(
            errors::INVALID_ARGS,
            format!("Cannot release a service starting with ':' such as \"{name}\""),
        ));
    }
    if name == DBUS_NAME {
        return Err(denied(
            errors::INVALID_ARGS,
            format!("Cannot release the {DBUS_NAME} service because it is owned by the bus"),
        ));
    }
    let code = if bus.names.owner(name).is_none() {
        release_reply::NON_EXISTENT
    } else if !bus.names.in_queue(name, c.sid) {
        release_reply::NOT_OWNER
    } else {
        let mut events = Vec::new();
        bus.names.remove(name, c.sid, &mut events);
        sync_peer_names(bus, c.sid, name);
        bus.emit_name_events(events);
        release_reply::RELEASED
    };
    Ok(Reply::Body("u", u32_body(code)))
}

pub(super) fn start_service_by_name(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let name = r.string().map_err(bad_args)?;
    let _flags = r.u32().map_err(bad_args)?;
    crate::activation::start_service_by_name(bus, c.sid, name, c.inb)
}

pub(super) fn name_has_owner(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    let has = name == DBUS_NAME || bus.lookup(name).is_some();
    let mut w = Writer::new();
    w.bool(has);
    Ok(Reply::Body("b", w.into_bytes()))
}

pub(super) fn list_names(bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    let mut names: Vec<&str> = Vec::with_capacity(1 + bus.unique.len() + bus.names.len());
    names.push(DBUS_NAME);
    let mut uniques: Vec<(u64, &str)> = bus.unique.iter().map(|(n, id)| (*id, &**n)).collect();
    uniques.sort_unstable();
    names.extend(uniques.into_iter().map(|(_, n)| n));
    let mut wk: Vec<&str> = bus.names.names().map(|n| &**n).collect();
    wk.sort_unstable();
    names.extend(wk);
    Ok(Reply::Body("as", strings_body(names.into_iter())))
}

pub(super) fn list_activatable_names(bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    let mut names = vec![DBUS_NAME.to_string()];
    names.extend(crate::activation::activatable_names(bus));
    Ok(Reply::Body(
        "as",
        strings_body(names.iter().map(|s| s.as_str())),
    ))
}

pub(super) fn get_name_owner(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    if name == DBUS_NAME {
        return Ok(Reply::Body("s", string_body(DBUS_NAME)));
    }
    match bus.lookup(name).and_then(|id| bus.unique_name(id)) {
        Some(owner) => Ok(Reply::Body("s", string_body(&owner))),
        None => Err(denied(
            errors::NAME_HAS_NO_OWNER,
            format!("Could not get owner of name '{name}': no such name"),
        )),
    }
}

pub(super) fn list_queued_owners(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    if name == DBUS_NAME {
        return Ok(Reply::Body("as", strings_body(std::iter::once(DBUS_NAME))));
    }
    let owners: Vec<Rc<str>> = if name.starts_with(':') {
        bus.lookup(name)
            .and_then(|id| bus.unique_name(id))
            .into_iter()
            .collect()
    } else {
        bus.names
            .queue(name)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| bus.unique_name(id))
            .collect()
    };
    if owners.is_empty() {
        return Err(denied(
            errors::NAME_HAS_NO_OWNER,
            format!("Could not get owners of name '{name}': no such name"),
        ));
    }
    Ok(Reply::Body("as", strings_body(owners.iter().map(|s| &**s))))
}
