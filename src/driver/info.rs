//! Connection information, GetId, ReloadConfig and UpdateActivationEnvironment.

use super::{bad_args, denied, errors, Call, Reply};
use crate::broker::bus::{Bus, DBUS_NAME};
use crate::broker::security::Denied;
use crate::wire::marshal::Writer;

/// uid, pid and groups of a name's owner (the bus itself for DBUS_NAME).
struct Creds {
    uid: Option<u32>,
    pid: Option<u32>,
    gids: Vec<u32>,
    /// SO_PEERSEC (LinuxSecurityLabel).
    label: Option<Vec<u8>>,
}

fn creds_of(bus: &Bus, name: &str, what: &str) -> Result<Creds, Denied> {
    if name == DBUS_NAME {
        return Ok(Creds {
            uid: Some(nix::unistd::geteuid().as_raw()),
            pid: Some(std::process::id()),
            // dbus-daemon reports only its uid and pid for itself.
            gids: Vec::new(),
            label: None,
        });
    }
    let Some(p) = bus.lookup(name).and_then(|id| bus.peer(id)) else {
        return Err(denied(
            errors::NAME_HAS_NO_OWNER,
            format!("Could not get {what} of name '{name}': no such name"),
        ));
    };
    Ok(Creds {
        uid: p.creds.uid,
        pid: p.creds.pid,
        gids: p.gids().to_vec(),
        label: p
            .mac
            .as_ref()
            .and_then(|m| m.label.as_ref())
            .map(|l| l.to_vec()),
    })
}

fn u32_reply(v: u32) -> Reply {
    let mut w = Writer::new();
    w.u32(v);
    Reply::Body("u", w.into_bytes())
}

pub(super) fn get_unix_user(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    let creds = creds_of(bus, name, "UID")?;
    match creds.uid {
        Some(u) => Ok(u32_reply(u)),
        None => Err(denied(
            errors::FAILED,
            format!("Could not determine UID for '{name}'"),
        )),
    }
}

pub(super) fn get_unix_pid(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    let creds = creds_of(bus, name, "PID")?;
    match creds.pid {
        Some(p) => Ok(u32_reply(p)),
        None => Err(denied(
            errors::UNIX_PROCESS_ID_UNKNOWN,
            format!("Could not determine PID for '{name}'"),
        )),
    }
}

pub(super) fn get_connection_credentials(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    let creds = creds_of(bus, name, "credentials")?;
    let mut w = Writer::new();
    let a = w.begin_array(8);
    if let Some(uid) = creds.uid {
        w.begin_struct();
        w.string("UnixUserID");
        w.variant("u");
        w.u32(uid);
        if !creds.gids.is_empty() {
            w.begin_struct();
            w.string("UnixGroupIDs");
            w.variant("au");
            let g = w.begin_array(4);
            for gid in &creds.gids {
                w.u32(*gid);
            }
            w.end_array(g);
        }
    }
    if let Some(pid) = creds.pid {
        w.begin_struct();
        w.string("ProcessID");
        w.variant("u");
        w.u32(pid);
    }
    if let Some(label) = &creds.label {
        // As dbus-daemon: a bytestring with its trailing NUL (GVariant's
        // convention for strings of unknown encoding).
        w.begin_struct();
        w.string("LinuxSecurityLabel");
        w.variant("ay");
        let l = w.begin_array(1);
        for b in label.iter().chain(&[0]) {
            w.u8(*b);
        }
        w.end_array(l);
    }
    w.end_array(a);
    Ok(Reply::Body("a{sv}", w.into_bytes()))
}

pub(super) fn get_adt_audit_session_data(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    creds_of(bus, name, "audit session data")?;
    Err(denied(
        errors::ADT_AUDIT_DATA_UNKNOWN,
        format!("Could not determine audit session data for '{name}'"),
    ))
}

pub(super) fn get_selinux_context(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let name = c.args().string().map_err(bad_args)?;
    creds_of(bus, name, "security context")?;
    let who = if name == DBUS_NAME {
        None
    } else {
        let id = bus.lookup(name);
        Some(
            id.and_then(|id| bus.peer(id))
                .and_then(|p| p.mac.as_deref()),
        )
    };
    if let Some(context) = bus.mac().selinux_context(who) {
        let mut w = Writer::new();
        let a = w.begin_array(1);
        for b in context {
            w.u8(b);
        }
        w.end_array(a);
        return Ok(Reply::Body("ay", w.into_bytes()));
    }
    Err(denied(
        errors::SELINUX_CONTEXT_UNKNOWN,
        format!("Could not determine security context for '{name}'"),
    ))
}

pub(super) fn get_id(bus: &mut Bus, _c: &Call<'_>) -> Result<Reply, Denied> {
    let mut w = Writer::new();
    w.string(bus.bus_id());
    Ok(Reply::Body("s", w.into_bytes()))
}

pub(super) fn reload_config(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    match bus.upcalls().reload(bus) {
        Ok(()) => {
            // Unlike the other empty replies, dbus-daemon sends this one
            // even with NO_REPLY_EXPECTED.
            super::reply_always(bus, c);
            Ok(Reply::Sent)
        }
        Err(e) => {
            let _ = c;
            Err(denied(errors::FAILED, e))
        }
    }
}

pub(super) fn update_activation_environment(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let end = r.begin_array(8).map_err(bad_args)?;
    let mut vars = Vec::new();
    while r.pos() < end {
        r.align(8).map_err(bad_args)?;
        let k = r.string().map_err(bad_args)?;
        let v = r.string().map_err(bad_args)?;
        vars.push((k.to_string(), v.to_string()));
    }
    crate::activation::update_environment(bus, vars)?;
    Ok(Reply::Body("", Vec::new()))
}
