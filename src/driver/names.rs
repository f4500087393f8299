//! Hello and the name methods.

use std::rc::Rc;

use super::{bad_args, denied, errors, reply, Call, Reply};
use crate::broker::bus::{Bus, DBUS_NAME};
use crate::broker::names::release_reply;
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
    if !bus.has_peer(c.sid) {
        return Ok(Reply::Sent);
    }
    let (name, events) = bus.hello(c.sid)?;
    bus.capture_hello(c.sid, c.inb);
    reply(bus, c, "s", &string_body(&name));
    bus.emit_name_events(events);
    Ok(Reply::Sent)
}

fn caller_name(bus: &Bus, sid: u64) -> String {
    bus.peer(sid)
        .map(|p| p.name().to_string())
        .unwrap_or_else(|| "(inactive)".into())
}

/// Number of names a connection is in the queue of, plus its unique name.
fn names_owned(bus: &Bus, sid: u64) -> u64 {
    bus.peer(sid).map_or(0, |p| p.names.len() as u64 + 1)
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
    if bus.mac().active {
        bus.mac_acquire(c.sid, name)?;
    }
    let allowed = bus.peer(c.sid).is_some_and(|p| p.policy.can_own(name));
    if !allowed {
        return Err(denied(
            errors::ACCESS_DENIED,
            format!(
                "Connection \"{who}\" is not allowed to own the service \"{name}\" due to security policies in the configuration file"
            ),
        ));
    }
    let limit = bus.limits().max_names_per_connection;
    if names_owned(bus, c.sid) >= limit && !bus.names().in_queue(name, c.sid) {
        let text = format!(
            "Connection \"{who}\" is not allowed to own more services (increase limits in configuration file if required; max_names_per_connection={limit})"
        );
        let who = bus.peer(c.sid).map(|p| p.who()).unwrap_or_default();
        crate::log::peer_warning(crate::log::Kind::LimitReached, &who, &text);
        return Err(denied(errors::LIMITS_EXCEEDED, text));
    }
    let code = bus.request_name(c.sid, name, flags);
    if bus.names().owner(name) == Some(c.sid) {
        crate::activation::name_acquired(bus, name);
    }
    Ok(Reply::Body("u", u32_body(code)))
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
    let code = if bus.names().owner(name).is_none() {
        release_reply::NON_EXISTENT
    } else if !bus.names().in_queue(name, c.sid) {
        release_reply::NOT_OWNER
    } else {
        bus.release_name(c.sid, name);
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
    let mut names: Vec<&str> = Vec::with_capacity(1 + bus.n_unique() + bus.names().len());
    names.push(DBUS_NAME);
    let mut uniques: Vec<(u64, &str)> = bus.unique_names().map(|(n, id)| (id, &**n)).collect();
    uniques.sort_unstable();
    names.extend(uniques.into_iter().map(|(_, n)| n));
    let mut wk: Vec<&str> = bus.names().names().map(|n| &**n).collect();
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
        bus.names()
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
